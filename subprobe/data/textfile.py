"""Read a dataset file as strict UTF-8, with one clear error line for every way it can fail."""

from __future__ import annotations

from pathlib import Path

from subprobe.errors import DataError


def read_text_utf8(source: str, kind: str) -> str:
    """The text of ``source`` (a leading byte-order mark dropped); ``kind`` names the format in errors."""
    try:
        data = Path(source).read_bytes()
    except FileNotFoundError:
        raise DataError(source, None, "cannot read file: file not found", "check the path") from None
    except IsADirectoryError:
        raise DataError(source, None, f"is a directory, not a {kind} file", f"give the path of a {kind} file") from None
    except OSError as exc:
        problem = f"cannot read file: {exc.strerror or exc}"
        raise DataError(source, None, problem, "check the path and permissions") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            source,
            line,
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start}",
            f"{kind} files must be UTF-8; re-encode the file, e.g. iconv -f latin1 -t utf-8",
        ) from None
    return text.removeprefix("\ufeff")
