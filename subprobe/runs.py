"""The run directory: every file a run writes, each written atomically."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from subprobe.errors import ConfigError, DataError


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create the run directory; refuse to reuse a non-empty one unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is not a directory; choose another --out")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"--out {path}: run directory already exists; pass --resume {path} to continue it, "
                "--overwrite to replace it, or choose another --out"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically: a temporary file beside it, fsync, ``os.replace``.

    A kill at any moment leaves either the old file or the new one; a failure to write is one
    :class:`DataError` naming the file.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
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


def run_status(path: Path) -> str:
    """What a run directory holds.

    ``missing`` (no such directory), ``empty``, ``finished`` (metrics.json written),
    ``checkpoint`` (interrupted after a checkpoint), ``started`` (config.yaml but no checkpoint yet)
    or ``foreign`` (not empty, but not a subprobe run).
    """
    path = Path(path)
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "foreign"
    if (path / "metrics.json").is_file():
        return "finished"
    if (path / "checkpoint.pt").is_file():
        return "checkpoint"
    if (path / "config.yaml").is_file():
        return "started"
    if any(path.iterdir()):
        return "foreign"
    return "empty"


def config_differences(saved: dict, current: dict, ignore: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``key: saved -> current`` for every setting that differs (keys missing from ``saved`` are skipped)."""
    return [
        f"{key}: {saved[key]!r} -> {value!r}"
        for key, value in current.items()
        if key not in ignore and key in saved and saved[key] != value
    ]
