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


class WriteError(DataError):
    """A file could not be written (full disk, file-size limit, no permission); the previous file is kept."""

    def __init__(self, path: str, reason: str, kept: bool = False, fix: str = "") -> None:
        kept_text = "the previous file is kept; " if kept else "nothing was written there; "
        fix = kept_text + (fix or "free disk space or fix permissions, then run the command again")
        super().__init__(path, None, f"cannot write file: {reason}", fix)
        self.reason = reason
        self.kept = kept


class DamagedFileError(SubprobeError, ValueError):
    """A file that subprobe wrote cannot be read back (truncated, corrupted, or not subprobe's): one line
    naming it. Also a ValueError, so callers that treat an unreadable optional file as absent still do."""

    DEFAULT_FIX = "the file is damaged (truncated or corrupted): restore it from a copy, or train the run again"

    def __init__(self, path: str, reason: str, fix: str | None = None) -> None:
        super().__init__(f"{path}: cannot be read ({reason}); {fix or self.DEFAULT_FIX}")
        self.path = path
        self.reason = reason


def did_you_mean(value: object, known, prefix_matches: bool = False) -> str:
    """`` (did you mean X?)`` for the closest of ``known`` to ``value`` (difflib), "" when none is close.
    ``prefix_matches``: names that start with ``value`` come first (``--lambda``: ``--lambda-max``, ...)."""
    import difflib

    text, names = str(value), [str(k) for k in known]
    close = [n for n in names if prefix_matches and n.startswith(text) and n != text][:3]
    if not close:
        close = difflib.get_close_matches(text, names, n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(close)}?)"
