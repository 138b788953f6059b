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
                f"--out {path}: run directory already exists; pass --overwrite to replace it or choose another --out"
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
