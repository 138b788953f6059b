"""``subprobe data check``: the files each task would read, with sentence and word counts, the embedded
data, and what ``subprobe data get`` has downloaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from subprobe.data.datasets import EMBEDDED, SPLITS, Embedded
from subprobe.data.sources import data_root, layout_in_root


@dataclass
class Row:
    """One split of one task (or of an embedded release): where it is and its counts."""

    task: str
    split: str
    path: Path | None
    sentences: int | None = None
    words: int | None = None
    note: str = ""

    @property
    def found(self) -> bool:
        return self.sentences is not None


@dataclass
class DataCheck:
    """What ``data check`` prints."""

    root: Path | None
    root_flag: str
    rows: list[Row]
    embedded: list[tuple[Embedded, list[Row]]]
    downloads: list[tuple[Path, str]] = field(default_factory=list)
    download_home: Path | None = None

    @property
    def missing(self) -> bool:
        return any(not r.found for r in self.rows)

    def format(self) -> str:
        if self.root is not None:
            lines = [f"data root: {self.root} ({self.root_flag})"]
        else:
            lines = ["data root: none (no --data-dir, $SUBPROBE_DATA not set): upos and dep read the embedded data"]
        lines.append(f"{'task':<5} {'split':<5} {'sentences':>9} {'words':>8}  path")
        lines += [_format_row(r) for r in self.rows]
        for embedded, rows in self.embedded:
            lines += ["", f"embedded: {embedded.title} ({embedded.licence}; {embedded.origin}; {embedded.directory}); "
                          "upos and dep read it when no data root and no --train/--dev/--test are given"]
            if self.root is not None:  # else the rows above are these files
                lines += [_format_row(r) for r in rows]
        if self.downloads:
            lines += ["", f"downloaded by `subprobe data get` (under {self.download_home}):"]
            lines += [f"  {what}: --data-dir {root}" for root, what in self.downloads]
        return "\n".join(lines)


def _format_row(r: Row) -> str:
    where = str(r.path) if r.path is not None else ""
    if r.note:
        where = f"{where} ({r.note})" if where else r.note
    if r.found:
        return f"{r.task:<5} {r.split:<5} {r.sentences:>9,} {r.words:>8,}  {where}"
    return f"{r.task:<5} {r.split:<5} {'missing':>9} {'':>8}  {where}"


def check(tasks: Sequence, data_dir: str | None, download_home: Path | None = None) -> DataCheck:
    """Rows for every split of every task in ``tasks`` (objects with ``name``, ``dataset`` and ``read``):
    from the data root when one is set, else from the embedded data, else missing. Malformed files raise
    their one-line :class:`~subprobe.errors.DataError`."""
    root = data_root(data_dir)
    flag = "--data-dir" if data_dir else "$SUBPROBE_DATA"
    if root is not None and not root.is_dir():
        from subprobe.errors import ConfigError

        raise ConfigError(f"{flag} {root}: no such directory; check the path")
    counts: dict[Path, tuple[int, int]] = {}  # a file each task reads (and validates) once; embedded rows reuse

    def counted(task, split: str, path: Path | None, note: str = "") -> Row:
        row = Row(task.name if task is not None else "", split, path, note=note)
        if path is not None and path.is_file():
            if task is not None or path not in counts:
                sentences = task.read(path) if task is not None else _read_conllu(path)
                counts[path] = (len(sentences), sum(len(s) for s in sentences))
            row.sentences, row.words = counts[path]
        return row

    rows = []
    for task in tasks:
        dataset = task.dataset
        if root is not None:
            layout = layout_in_root(dataset, root)
            if layout is None and dataset is not None:
                layout = {split: root / dataset.candidates()[0][split] for split in SPLITS}
            for split in SPLITS:
                rows.append(counted(task, split, layout[split] if layout else None))
        elif dataset is not None and dataset.embedded is not None:
            rows += [counted(task, split, dataset.embedded.path(split), "embedded") for split in SPLITS]
        else:
            note = f"no data root; {dataset.how_to_get}" if dataset is not None else "no data root"
            rows += [Row(task.name, split, None, note=note if split == "train" else "") for split in SPLITS]
    embedded = [(e, [counted(None, split, e.path(split)) for split in SPLITS] if root is not None else [])
                for e in EMBEDDED]
    downloads = _downloads(download_home) if download_home is not None else []
    return DataCheck(root, flag, rows, embedded, downloads, download_home)


def _read_conllu(path: Path):
    from subprobe.data.conllu import read_conllu

    return read_conllu(path)


def _downloads(home: Path) -> list[tuple[Path, str]]:
    """(data root, "UD_X-Y rN") of every release ``subprobe data get`` put under ``home``."""
    from subprobe.data.download import SOURCE

    found = []
    for source in sorted(home.glob(f"*/*/{SOURCE}")):
        first = source.read_text(encoding="utf-8").splitlines()[:1]
        if first:
            found.append((source.parent.parent, first[0]))
    return found
