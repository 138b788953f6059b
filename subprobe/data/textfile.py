"""Read a dataset file as strict UTF-8, with one clear error line for every way it can fail.

A file whose name ends in ``.xz`` is decompressed first (the embedded treebank ships that way; any
dataset file may), so readers and checksums see the same content for ``x.conllu`` and ``x.conllu.xz``.
"""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path

from subprobe.errors import DataError

_CHUNK = 1 << 20


def is_compressed(source: str | Path) -> bool:
    """True for an ``.xz`` file (read decompressed)."""
    return str(source).endswith(".xz")


def read_data_bytes(source: str, kind: str = "data") -> bytes:
    """The bytes of ``source`` (decompressed for ``.xz``); one :class:`DataError` line if it cannot be read."""
    try:
        if is_compressed(source):
            with lzma.open(source, "rb") as handle:
                return handle.read()
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise DataError(source, None, "cannot read file: file not found", "check the path") from None
    except IsADirectoryError:
        raise DataError(source, None, f"is a directory, not a {kind} file", f"give the path of a {kind} file") from None
    except lzma.LZMAError as exc:
        raise DataError(
            source, None, f"not a valid xz file ({exc})", "decompress it with xz -d, or give the uncompressed file"
        ) from None
    except EOFError:
        raise DataError(source, None, "the xz file is truncated", "download or copy it again") from None
    except OSError as exc:
        problem = f"cannot read file: {exc.strerror or exc}"
        raise DataError(source, None, problem, "check the path and permissions") from None


def content_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the content a reader sees: the file's bytes, decompressed for ``.xz`` (so an embedded
    ``x.conllu.xz`` has the SHA-256 of the released ``x.conllu``)."""
    digest = hashlib.sha256()
    opener = lzma.open if is_compressed(path) else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_text_utf8(source: str, kind: str) -> str:
    """The text of ``source`` (a leading byte-order mark dropped); ``kind`` names the format in errors."""
    data = read_data_bytes(source, kind)
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
