"""Find a task's split files: explicit paths > a data root (``--data-dir`` / ``$SUBPROBE_DATA``) > the
dataset subprobe ships (UD English-EWT r2.1, package data)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from subprobe.data.datasets import EMBEDDED, SPLITS, DatasetFacts, Embedded
from subprobe.data.textfile import content_sha256, is_compressed
from subprobe.errors import ConfigError

__all__ = ["SPLITS", "data_root", "embedded_note", "file_record", "find_in_root", "find_splits", "layout_in_root",
           "sha256_of", "split_paths"]

#: train and dev are required; test is optional (scored when present).
REQUIRED = ("train", "dev")


def data_root(data_dir: str | None) -> Path | None:
    """The dataset root from ``--data-dir`` or ``$SUBPROBE_DATA`` (None if neither is set)."""
    root = data_dir or os.environ.get("SUBPROBE_DATA")
    return Path(root).expanduser() if root else None


def _root_flag(data_dir: str | None) -> str:
    return "--data-dir" if data_dir else "$SUBPROBE_DATA"


def split_paths(task, config) -> dict[str, Path | None]:
    """:func:`find_splits` for ``task.dataset`` with the run's ``--train/--dev/--test`` and ``--data-dir``."""
    explicit = {split: getattr(config, split) for split in SPLITS}
    return find_splits(task.dataset, explicit, config.data_dir)


def find_splits(
    dataset: DatasetFacts | None, explicit: Mapping[str, str | None], data_dir: str | None
) -> dict[str, Path | None]:
    """Path of each split (None for a missing test file); train and dev are required.

    Explicit paths win. Explicit paths and the data root do not mix: once any split is given explicitly,
    the others are not taken from ``$SUBPROBE_DATA`` (a custom training file scored on the default test
    file would be a silent surprise) unless ``--data-dir`` is passed too. With no explicit path and no data
    root, the dataset's embedded release is used (``dataset.embedded``; see :func:`embedded_note`). Any
    other gap is one :class:`ConfigError` saying what to pass.
    """
    explicit_any = any(explicit.get(split) for split in SPLITS)
    root = None if explicit_any and not data_dir else data_root(data_dir)
    paths: dict[str, Path | None] = {}
    for split in SPLITS:
        given = explicit.get(split)
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                what = "is a directory, not a file" if path.is_dir() else "no such file"
                raise ConfigError(f"--{split} {given}: {what}; check the path")
            paths[split] = path
    missing = [split for split in SPLITS if split not in paths]
    if not missing:
        return paths
    if root is not None:
        found = find_in_root(dataset, root, data_dir)
        for split in missing:
            path = found.get(split)
            if path is None and split in REQUIRED:
                raise ConfigError(
                    f"{root}: the data root ({_root_flag(data_dir)}) has no {split} file of the "
                    f"{_title(dataset)} files it holds; add it, or pass --{split} PATH"
                )
            paths[split] = path
        return paths
    if explicit_any:
        for split in REQUIRED:
            if split in missing:
                raise ConfigError(f"no --{split} file given; pass --{split} PATH with the other explicit paths")
        paths["test"] = None
        return paths
    if dataset is not None and dataset.embedded is not None:
        return {split: dataset.embedded.path(split) for split in SPLITS}
    how = f" ({dataset.how_to_get})" if dataset is not None else ""
    raise ConfigError(
        f"no --train file given and no data root: {_title(dataset)} is not shipped with subprobe{how}; "
        "pass --data-dir DIR (or set SUBPROBE_DATA) or --train/--dev/--test PATH"
    )


def _title(dataset: DatasetFacts | None) -> str:
    return dataset.title if dataset is not None else "this task's dataset"


def find_in_root(dataset: DatasetFacts | None, root: Path, data_dir: str | None = None) -> dict[str, Path | None]:
    """The split files of ``dataset`` under ``root``: the first folder and file-name scheme holding any of
    them is used for every split (absent splits None). No file at all is one :class:`ConfigError`."""
    if not root.is_dir():
        raise ConfigError(f"{_root_flag(data_dir)} {root}: no such directory; check the path")
    layout = layout_in_root(dataset, root)
    if layout is not None:
        return {split: p if p.is_file() else None for split, p in layout.items()}
    candidates = dataset.candidates() if dataset is not None else []
    looked = ", ".join(names["train"] for names in candidates) or "nothing: the task names no dataset"
    hint = f"; {dataset.how_to_get}" if dataset is not None else ""
    embedded = " (or unset it to use the embedded data)" if dataset is not None and dataset.embedded else ""
    raise ConfigError(
        f"{root}: no {_title(dataset)} files under this data root ({_root_flag(data_dir)}{embedded}); "
        f"looked for {looked}; pass --train/--dev/--test PATH{hint}"
    )


def layout_in_root(dataset: DatasetFacts | None, root: Path) -> dict[str, Path] | None:
    """The first (folder, scheme) of ``dataset`` with any split file under ``root``, as split -> path."""
    for names in dataset.candidates() if dataset is not None else []:
        paths = {split: root / names[split] for split in SPLITS}
        if any(p.is_file() for p in paths.values()):
            return paths
    return None


def embedded_of(path: Path | None) -> tuple[Embedded, str] | None:
    """The embedded release and split that ``path`` is, if it is a file subprobe ships."""
    if path is None:
        return None
    path = Path(path).resolve()
    for embedded in EMBEDDED:
        if path.parent == embedded.directory.resolve():
            for split, name in embedded.files.items():
                if path.name == name:
                    return embedded, split
    return None


def embedded_note(paths: Mapping[str, Path | None]) -> str | None:
    """One line for stderr when a run reads embedded data (which release, from where), else None."""
    found = next((f for f in map(embedded_of, paths.values()) if f is not None), None)
    if found is None:
        return None
    embedded = found[0]
    return (
        f"data: {embedded.title}, embedded in subprobe ({embedded.origin}; {embedded.licence}; "
        f"{embedded.directory}); --data-dir, $SUBPROBE_DATA or --train/--dev/--test read other data"
    )


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the content a reader sees (decompressed for ``.xz``), recorded in the run directory."""
    return content_sha256(path)


def file_record(path: Path) -> dict:
    """``env.json``'s entry for a data file: its path and content SHA-256 (of the decompressed content for
    ``.xz``: an embedded file records the SHA-256 of the released file), and for the embedded data which
    release and its path inside the package."""
    record: dict = {"path": str(path), "sha256": sha256_of(path)}
    if is_compressed(path):
        record["sha256_of"] = "decompressed content"
    found = embedded_of(path)
    if found is not None:
        embedded, split = found
        record["embedded"] = f"{embedded.title} ({embedded.origin})"
        record["package_path"] = embedded.package_path(split)
    return record
