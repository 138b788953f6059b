"""The run directory: every file a run writes, each written atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from subprobe.errors import ConfigError


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


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
