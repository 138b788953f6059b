"""User-facing errors: raised for bad input, reported by the CLI as one line without a traceback."""

from __future__ import annotations


class SubprobeError(Exception):
    """An error caused by the user's input (files, flags, models), not by a bug.

    The message must say what is wrong, where (file:line or flag) and what to do.
    """


class DataError(SubprobeError):
    """A malformed or inconsistent dataset file."""

    def __init__(self, path: str, line: int | None, problem: str, fix: str = "") -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        message = f"{where}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)
        self.path = path
        self.line = line


class ConfigError(SubprobeError):
    """A bad flag or configuration value."""
