"""Atomic file writes: a temporary file beside the target, fsync, ``os.replace`` (the lowest layer)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from subprobe.errors import DataError


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically: a temporary file beside it, fsync, ``os.replace``.

    A kill at any moment leaves either the old file or the new one; a failure to write is one
    :class:`DataError` naming the file.
    """
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (as :func:`write_text`)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(
            str(path),
            None,
            f"cannot write file: {exc.strerror or exc}",
            "check that the directory exists and is writable",
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
