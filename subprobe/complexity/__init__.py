"""Probe complexity beyond parameter counts: minimum description length (:mod:`.mdl`)."""
