"""A local results store: run directories keyed by a hash of their resolved configuration."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from filelock import FileLock

from subprobe.config import ProbeConfig, settings_where
from subprobe.errors import DamagedFileError
from subprobe.probes.registry import probe_family
from subprobe.resolve import resolve as resolve_config
from subprobe.runs import RunDir, read_json, write_json
from subprobe.tasks.registry import path_name

#: Fields that do not change a run's result and are left out of its key (``in_key=False``, see
#: :func:`subprobe.config.option`): output, cosmetics, and where and how a run computes, not what it computes.
NON_RESULT_FIELDS = settings_where(in_key=False)


def config_key(config: ProbeConfig) -> str:
    """A short stable hash of everything that determines the result of a run."""
    values = {k: v for k, v in dataclasses.asdict(resolve_config(config)).items() if k not in NON_RESULT_FIELDS}
    blob = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_name(config: ProbeConfig, key: str) -> str:
    parts = [path_name(config.task), *([f"control{config.control_seed}"] if config.control else []), config.probe]
    parts += probe_family(config.probe).store_units(config)
    parts += [config.setting, f"s{config.seed}", key]
    return "-".join(parts)


#: Seconds a writer waits for the index lock before giving up (a writer holds it for milliseconds).
LOCK_TIMEOUT = 120


class Store:
    """``ROOT/index.json`` maps keys to points; ``ROOT/runs/<name>`` holds each run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.index_path = self.root / "index.json"

    def load_index(self) -> dict:
        """key -> entry; a damaged index is one DamagedFileError line saying how to rebuild it."""
        if not self.index_path.is_file():
            return {}
        fix = (f"move it away (mv {self.index_path} {self.index_path}.damaged) and run the sweep again: every sweep "
               "records its points in a new index, and finished runs are kept")
        try:
            index = read_json(self.index_path)
        except DamagedFileError as exc:
            raise DamagedFileError(str(self.index_path), exc.reason, fix) from None
        if not isinstance(index, dict) or not all(isinstance(e, dict) for e in index.values()):
            raise DamagedFileError(str(self.index_path), "not a mapping of point entries", fix)
        return index

    def lock(self) -> FileLock:
        """The lock every writer of index.json holds (sweeps in other processes or on other nodes write it too)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / "index.json.lock"), timeout=LOCK_TIMEOUT)

    def point_lock(self, run_dir: Path) -> FileLock:
        """The lock a process holds while it runs the point of ``run_dir`` (``ROOT/locks/<name>.lock``): a second
        sweep on the same store skips the point instead of training into the same directory. An OS lock: it is
        released when its process dies, however it dies."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{Path(run_dir).name}.lock"), thread_local=False)

    def record(self, key: str, entry: dict) -> None:
        """Update one entry of the index: read, change and write (temp file + rename) under the store's lock."""
        with self.lock():
            index = self.load_index()
            index[key] = {**index.get(key, {}), **entry, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
            write_json(self.index_path, index)

    def run_dir(self, config: ProbeConfig) -> tuple[str, Path]:
        key = config_key(config)
        return key, self.runs / run_name(resolve_config(config), key)

    def relative(self, run_dir: Path) -> str:
        """How the index records a run directory: relative to the store root (the store can move)."""
        return str(Path(run_dir).relative_to(self.root))

    def resolve(self, recorded: str) -> Path:
        """The run directory an index entry records: always ``ROOT/runs/<name>`` (see
        :func:`subprobe.report.loading.store_run_dir`: an index cannot point outside its store)."""
        name = Path(str(recorded).replace("\\", "/")).name
        return self.runs / (name if name not in ("", ".", "..") else "-")

    def finished(self, run_dir: Path) -> bool:
        """metrics.json is there and readable (a damaged one is not skipped: running the point says what to do)."""
        run = RunDir(run_dir)
        if not run.finished:
            return False
        try:
            run.read_metrics()
        except (OSError, ValueError):
            return False
        return True

    def results(self) -> list[dict]:
        """metrics.json of every finished run in the store, with its run directory."""
        out = []
        for entry in sorted(self.load_index().values(), key=lambda e: str(e.get("run_dir", ""))):
            path = self.resolve(entry.get("run_dir", ""))
            if entry.get("status") == "done" and RunDir(path).finished:
                metrics = RunDir(path).read_metrics()
                metrics["run_dir"] = str(path)
                metrics["config"] = entry.get("config", {})
                out.append(metrics)
        return out
