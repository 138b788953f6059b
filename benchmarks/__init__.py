"""Benchmarks of subprobe (run as scripts; importable for the smoke tests)."""
