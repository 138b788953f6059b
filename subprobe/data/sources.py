"""Find dataset files: explicit paths first, else $SUBPROBE_DATA laid out as ../shared/data."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from subprobe.errors import ConfigError

SPLITS = ("train", "dev", "test")


def data_root(data_dir: str | None) -> Path | None:
    """The dataset root from ``--data-dir`` or ``$SUBPROBE_DATA`` (None if neither is set)."""
    root = data_dir or os.environ.get("SUBPROBE_DATA")
    return Path(root).expanduser() if root else None


def split_paths(task, config) -> dict[str, Path | None]:
    """Path of each split for ``task``; train and dev are required, test is optional.

    Explicit ``--train/--dev/--test`` paths and the data root do not mix: once any split is given
    explicitly, the others are not taken from ``--data-dir``/``$SUBPROBE_DATA`` (a custom training
    file scored on the default test file would be a silent surprise).
    """
    explicit_any = any(getattr(config, split) for split in SPLITS)
    root = None if explicit_any and not config.data_dir else data_root(config.data_dir)
    paths: dict[str, Path | None] = {}
    for split in SPLITS:
        explicit = getattr(config, split)
        if explicit:
            path = Path(explicit).expanduser()
            if not path.is_file():
                what = "is a directory, not a file" if path.is_dir() else "no such file"
                raise ConfigError(f"--{split} {explicit}: {what}; check the path")
            paths[split] = path
            continue
        if root is None:
            if split == "test":
                paths[split] = None
                continue
            if explicit_any:
                raise ConfigError(f"no --{split} file given; pass --{split} PATH with the other explicit paths")
            raise ConfigError(
                f"no --{split} file given and SUBPROBE_DATA is not set; set SUBPROBE_DATA to the dataset "
                f"root (e.g. ../shared/data) or pass --{split} PATH"
            )
        path = root / task.data_folder / task.data_files[split]
        if not path.is_file():
            if split == "test":
                paths[split] = None
                continue
            raise ConfigError(f"{path}: not found under the data root {root}; pass --{split} PATH or fix SUBPROBE_DATA")
        paths[split] = path
    return paths


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file (recorded in the run directory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

