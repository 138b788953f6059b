"""The run directory: every file a run writes, its name and its reads and writes (nothing else spells them).

``RUN_DIR/`` holds ``config.yaml`` (the resolved configuration), ``env.json`` (versions, hardware,
data hashes, resumptions), ``vocab.json`` (label vocabularies), ``log.jsonl`` (one record per dev
check), ``checkpoint.pt`` (while unfinished), ``metrics.json`` (written last: it marks the run
finished), ``head.safetensors``, ``masks.safetensors`` (subnetwork probes), ``adapter.safetensors``
(MLP-1), ``predictions-<split><suffix>`` (``--predict``), ``sentence-stats.npz`` (the per-sentence counts behind every
score, for bootstrap intervals and tests), ``error.txt`` (a failed sweep point) and
the folders of ``--report-to`` trackers. Every JSON and text file is written atomically
(:mod:`subprobe.atomic`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from subprobe.atomic import read_json, remove_stale_temporaries, write_bytes, write_json, write_safetensors, write_text
from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError, DamagedFileError

__all__ = [
    "RunDir", "config_differences", "default_out", "prepare_run_dir", "read_json", "run_status", "write_json",
    "write_text",
]


class RunDir:
    """One run directory: file names, status and the read/write of each file."""

    CONFIG = "config.yaml"
    ENV = "env.json"
    VOCAB = "vocab.json"
    LOG = "log.jsonl"
    MASKS = "masks.safetensors"
    HEAD = "head.safetensors"
    ADAPTER = "adapter.safetensors"
    CHECKPOINT = "checkpoint.pt"
    METRICS = "metrics.json"
    SENTENCE_STATS = "sentence-stats.npz"
    ERROR = "error.txt"
    TENSORBOARD = "tensorboard"
    MLFLOW = "mlruns"
    #: Files every finished run has (``metrics.json`` is written last), and those loading one needs (besides the
    #: per-probe weight files).
    FINISHED = (CONFIG, METRICS)
    NEEDED_TO_LOAD = (CONFIG, VOCAB, METRICS, HEAD)
    #: Every fixed file name of a run directory (what no other command may overwrite there).
    FILES = (CONFIG, ENV, VOCAB, LOG, MASKS, HEAD, ADAPTER, CHECKPOINT, METRICS, ERROR)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths ------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def env_path(self) -> Path:
        return self.path / self.ENV

    @property
    def vocab_path(self) -> Path:
        return self.path / self.VOCAB

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def masks_path(self) -> Path:
        return self.path / self.MASKS

    @property
    def head_path(self) -> Path:
        return self.path / self.HEAD

    @property
    def adapter_path(self) -> Path:
        return self.path / self.ADAPTER

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def sentence_stats_path(self) -> Path:
        return self.path / self.SENTENCE_STATS

    @property
    def error_path(self) -> Path:
        return self.path / self.ERROR

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def mlflow_dir(self) -> Path:
        return self.path / self.MLFLOW

    def predictions_path(self, split: str, suffix: str) -> Path:
        """``predictions-<split><suffix>`` (``--predict``; the suffix is the task's file format)."""
        return self.path / f"predictions-{split}{suffix}"

    # -- status -----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """``metrics.json`` is written (the last file of a run)."""
        return self.metrics_path.is_file()

    @property
    def has_config(self) -> bool:
        return self.config_path.is_file()

    @property
    def has_masks(self) -> bool:
        return self.masks_path.is_file()

    def missing(self, *names: str) -> list[str]:
        """The files of ``names`` this directory lacks."""
        return [name for name in names if not self.file(name).is_file()]

    def missing_for_load(self) -> list[str]:
        """The files of :attr:`NEEDED_TO_LOAD` this directory lacks."""
        return self.missing(*self.NEEDED_TO_LOAD)

    def require_finished(self, *needs: str, kind: str = "subprobe run", flag: str = "", hint: str = "") -> RunDir:
        """This directory, if it holds a finished run with the files ``needs`` too; else the one error every command
        gives for it: ``[FLAG ]PATH: not a finished KIND (no FILES); HINT`` (no directory at all: ``PATH: no such
        run directory, so not a finished KIND; HINT``; default hint: resume an interrupted run, or give the --out
        directory of a finished one)."""
        where = f"{flag} {self.path}" if flag else str(self.path)
        if not hint:
            resumable = self.path.is_dir() and self.has_config and not self.finished
            hint = (f"finish it first (subprobe probe --resume {self.path})" if resumable
                    else "give the --out directory of a finished run")
        if not self.path.is_dir():
            raise ConfigError(f"{where}: no such run directory, so not a finished {kind}; {hint}")
        missing = self.missing(*dict.fromkeys((*self.FINISHED, *needs)))
        if missing:
            raise ConfigError(f"{where}: not a finished {kind} (no {', '.join(missing)}); {hint}")
        return self

    def require(self, *names: str, hint: str, missing_dir: str) -> RunDir:
        """This directory, if it holds the files ``names`` (a command that reads only those, e.g. ``compare`` the
        masks): ``PATH: no FILES; HINT`` otherwise (``PATH: no such run directory; MISSING_DIR`` without one)."""
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: no such run directory; {missing_dir}")
        missing = self.missing(*names)
        if missing:
            raise ConfigError(f"{self.path}: no {', '.join(missing)}; {hint}")
        return self

    def status(self) -> str:
        """What the directory holds.

        ``missing`` (no such directory), ``empty``, ``finished`` (metrics.json written),
        ``checkpoint`` (interrupted after a checkpoint), ``started`` (config.yaml but no checkpoint yet)
        or ``foreign`` (not empty, but not a subprobe run).
        """
        if not self.path.exists():
            return "missing"
        if not self.path.is_dir():
            return "foreign"
        if self.finished:
            return "finished"
        if self.checkpoint_path.is_file():
            return "checkpoint"
        if self.has_config:
            return "started"
        if _holds_files(self.path):
            return "foreign"
        return "empty"

    def prepare(self, overwrite: bool) -> RunDir:
        """Create the directory; refuse to reuse a non-empty one unless ``overwrite``."""
        prepare_run_dir(self.path, overwrite)
        return self

    # -- config, environment, vocabularies ----------------------------------------------------------
    def read_config(self) -> ProbeConfig:
        """The saved configuration (ConfigError naming the file when unreadable)."""
        return ProbeConfig.from_yaml(self.config_path)

    def read_settings(self) -> Any:
        """The saved configuration as plain YAML data (OSError, UnicodeDecodeError or YAMLError when unreadable)."""
        import yaml

        try:
            return yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except RecursionError:
            raise yaml.YAMLError(f"{self.config_path}: nested too deeply") from None

    def write_config(self, cfg: ProbeConfig) -> None:
        write_text(self.config_path, cfg.to_yaml())

    def read_env(self) -> dict:
        return read_json(self.env_path)

    def write_env(self, stamp: dict) -> None:
        write_json(self.env_path, stamp)

    def read_vocab(self) -> dict[str, list[str]]:
        """field -> labels in id order (DamagedFileError when it is not that)."""
        vocab = self._damaged_says_what_to_do(read_json, self.vocab_path)
        if not isinstance(vocab, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in vocab.values()
        ):
            raise DamagedFileError(str(self.vocab_path), "not a mapping of label lists", self.retrain_advice())
        return vocab

    def write_vocab(self, vocabs: dict) -> None:
        """``vocabs``: field -> LabelVocab (its ``labels`` in id order)."""
        write_json(self.vocab_path, {k: list(v.labels) for k, v in vocabs.items()})

    # -- results ----------------------------------------------------------------------------------
    def read_metrics(self) -> dict:
        """The run's metrics (DamagedFileError when the file is not a JSON object)."""
        metrics = self._damaged_says_what_to_do(read_json, self.metrics_path)
        if not isinstance(metrics, dict):
            raise DamagedFileError(
                str(self.metrics_path), f"a JSON {type(metrics).__name__}, not an object", self.retrain_advice()
            )
        return metrics

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics_path, metrics)

    def write_sentence_stats(self, statistics: dict) -> None:
        """``statistics``: ``dev``, ``dev_soft``, ``test``, ... -> :class:`~subprobe.metrics.statistics.SentenceStats`
        (the per-sentence counts of the scores; what paired bootstrap tests across runs resample)."""
        import io

        import numpy as np

        arrays = {}
        for key, stats in statistics.items():
            arrays[f"{key}.values"] = stats.values
            arrays[f"{key}.ids"] = stats.ids
            arrays[f"{key}.names"] = np.array(stats.names, dtype=str)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_bytes(self.sentence_stats_path, buffer.getvalue())

    def read_sentence_stats(self) -> dict:
        """What :meth:`write_sentence_stats` wrote ({} for a run without the file: older runs, dry runs)."""
        if not self.sentence_stats_path.is_file():
            return {}
        import numpy as np

        from subprobe.metrics.statistics import SentenceStats

        try:  # arrays only (allow_pickle stays False)
            with np.load(self.sentence_stats_path, allow_pickle=False) as data:
                keys = sorted({name.rsplit(".", 1)[0] for name in data.files})
                return {k: SentenceStats(tuple(str(n) for n in data[f"{k}.names"]), data[f"{k}.values"],
                                         data[f"{k}.ids"]) for k in keys}
        except Exception as exc:  # a truncated zip, a missing array, a pickled array
            reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DamagedFileError(str(self.sentence_stats_path), f"{type(exc).__name__}: {reason}",
                                   self.retrain_advice()) from None

    def read_log(self) -> list[dict]:
        """The dev-check records of ``log.jsonl`` ([] when there is none)."""
        if not self.log_path.is_file():
            return []
        records = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill (logs of older versions were appended)
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def read_masks(self):
        """The saved :class:`~subprobe.masking.subnetwork.Subnetwork`."""
        from subprobe.masking.subnetwork import Subnetwork

        return self._damaged_says_what_to_do(Subnetwork.load, self.masks_path)

    def write_masks(self, subnetwork) -> None:
        subnetwork.save(self.masks_path)

    def read_head(self) -> dict:
        return self._damaged_says_what_to_do(read_tensors, self.head_path)

    def write_head(self, module) -> None:
        _save_module(module, self.head_path)

    def read_adapter(self) -> dict:
        return self._damaged_says_what_to_do(read_tensors, self.adapter_path)

    def write_adapter(self, module) -> None:
        _save_module(module, self.adapter_path)

    def retrain_advice(self) -> str:
        """What to do about a damaged file of this run (the run is a pure function of its config.yaml)."""
        return (f"the file is damaged (truncated or corrupted): restore it from a copy, or train the run again with "
                f"`subprobe probe --config {self.config_path} --out {self.path} --overwrite` (in a sweep store: move "
                f"{self.path} away and run the sweep again)")

    def _damaged_says_what_to_do(self, reader, path: Path):
        try:
            return reader(path)
        except DamagedFileError as exc:
            raise DamagedFileError(str(path), exc.reason, self.retrain_advice()) from None

    def remove_checkpoint(self) -> None:
        """A finished run keeps no checkpoint (``metrics.json`` marks it)."""
        self.checkpoint_path.unlink(missing_ok=True)

    def write_error(self, text: str) -> None:
        write_text(self.error_path, text)

    def clear_error(self) -> None:
        self.error_path.unlink(missing_ok=True)


def _save_module(module, path: Path) -> None:
    write_safetensors(path, module.state_dict())


def read_tensors(path: Path) -> dict:
    """The tensors of a safetensors file (never code: safetensors holds data only); DamagedFileError if unreadable."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # SafetensorError (header, truncation), OSError
        raise DamagedFileError(str(path), f"not a whole safetensors file: {str(exc).splitlines()[0]}") from None


def default_out(cfg: ProbeConfig) -> Path:
    """The run directory of a run without ``--out``: ``runs/<task>[-control<seed>]-<probe>[-<unit>]-<setting>-s<seed>``
    (the unit part is the probe family's, e.g. ``neuron``, ``2x1-p0.1``, ``r25``)."""
    from subprobe.probes.registry import probe_family
    from subprobe.resolve import resolve
    from subprobe.tasks.registry import path_name

    cfg = resolve(cfg)
    control = f"control{cfg.control_seed}" if cfg.control else ""
    unit = probe_family(cfg.probe).run_dir_unit(cfg)
    parts = (path_name(cfg.task), control, cfg.probe, unit, cfg.setting, f"s{cfg.seed}")
    return Path("runs") / "-".join(x for x in parts if x)


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create the run directory; refuse to reuse a non-empty one unless ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is not a directory; choose another --out")
    if path.is_dir() and _holds_files(path):
        if not overwrite:
            raise ConfigError(
                f"--out {path}: run directory already exists; pass --resume {path} to continue it, "
                "--overwrite to replace it, or choose another --out"
            )
        if not (path / RunDir.CONFIG).is_file():  # never delete a directory that is not a run
            raise ConfigError(
                f"--out {path}: holds files but no subprobe run (no {RunDir.CONFIG}), so --overwrite will not delete "
                "it; choose another --out"
            )
        shutil.rmtree(path)
    elif path.is_dir():  # empty but for the temporary files of a killed write: not part of the new run
        remove_stale_temporaries(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _holds_files(path: Path) -> bool:
    """Anything in ``path`` besides the temporary files of an atomic write that a kill interrupted."""
    return any(not (p.name.startswith(".") and p.name.endswith(".tmp")) for p in path.iterdir())


def run_status(path: Path) -> str:
    """What a run directory holds (see :meth:`RunDir.status`)."""
    return RunDir(path).status()


def config_differences(saved: dict, current: dict, ignore: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``key: saved -> current`` for every setting that differs (keys missing from ``saved`` are skipped)."""
    return [
        f"{key}: {saved[key]!r} -> {value!r}"
        for key, value in current.items()
        if key not in ignore and key in saved and saved[key] != value
    ]
