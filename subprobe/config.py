"""Run configuration: one typed dataclass that is also the command line (help from field docs)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from subprobe.errors import ConfigError

PROFILES: dict[str, dict[str, Any]] = {
    # The paper's settings (Cao et al. 2021): 20 epochs, head lr 5e-5, dev check every 2048 sentences.
    "paper": {"epochs": 20, "head_lr": 5e-5, "eval_every": 64, "patience": 10, "precision": "fp32"},
    # A reduced budget for a 2-core CPU: a UPOS run on the default model in under 10 minutes.
    # The head learns at 1e-3 because 5e-5 does not converge in so few steps.
    "quick": {"epochs": 3, "head_lr": 1e-3, "eval_every": 200, "patience": 4, "precision": "bf16"},
}

#: Per-task adjustments of a profile. NER's linear head needs a faster head lr and one more epoch in the
#: quick budget: measured on CoNLL-2003 dev (neuron subnetwork, quiet machine), F1 0.7495 at 1e-3 and
#: 0.7614 at 3e-3 with 3 epochs (4 min 12 s), 0.7730 at 3e-3 with 4 epochs (6 min 22 s).
TASK_PROFILES: dict[str, dict[str, dict[str, Any]]] = {"quick": {"ner": {"head_lr": 3e-3, "epochs": 4}}}


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ProbeConfig:
    """Everything that defines one probing run. Saved as ``config.yaml`` in the run directory."""

    task: str = _f("upos", "task: upos | dep | ner")
    probe: str = _f("subnetwork", "probe: subnetwork | mlp (MLP-1 of --rank) | linear | finetune")
    model: str = _f("all-MiniLM-L6-v2", "Hugging Face model id or local path (default: packaged offline model)")
    setting: str = _f("pretrained", "model: pretrained | reset-encoder (blocks re-initialised) | reset-all")
    init: str = _f("torch-default", "initialiser for reset settings: torch-default (the paper's) | model")
    reset_seed: int = _f(0, "seed of the random re-initialisation")
    rank: str = _f("d", "MLP-1 rank r (1, 2, 5, ... or d = model width)")
    cache_features: bool = _f(True, "mlp/linear: compute frozen features once (no encoder dropout)")
    finetune_lr: float = _f(5e-5, "finetune: learning rate of the encoder weights")
    profile: str = _f("quick", "budget profile: quick (CPU-friendly) | paper (the paper's settings)")
    # data
    data_dir: str | None = _f(None, "dataset root laid out as ../shared/data (default: $SUBPROBE_DATA)")
    train: str | None = _f(None, "training file (overrides the data directory)")
    dev: str | None = _f(None, "development file (model selection, early stopping)")
    test: str | None = _f(None, "test file (reported separately)")
    max_train_samples: int | None = _f(None, "use only the first N training sentences (debugging)")
    max_eval_samples: int | None = _f(None, "use only the first N dev and test sentences (debugging)")
    word_pooling: str = _f("last", "subword representing a word: last (paper) | first | mean")
    long_sentences: str = _f("drop", "sentences longer than the model limit: drop (counted) | error")
    # task heads and readers
    arc_dim: int = _f(1024, "dep: size of the biaffine arc MLPs")
    label_dim: int = _f(256, "dep: size of the biaffine label MLPs")
    decoder: str = _f("mst", "dep: mst (single-rooted tree, standard) | argmax (the paper)")
    ner_scheme: str = _f("auto", "ner: tag scheme of the files: auto | iob1 | iob2")
    keep_single_token: bool = _f(True, "ner: keep one-token sentences (the paper's loader dropped them)")
    # masks
    granularity: str = _f("neuron", "mask unit: weight | neuron | matrix | paper-1..paper-9 | ROWS,COLS")
    layout: str = _f("strided", "block layout: strided (the paper's) | contiguous (true tiles)")
    penalty: str = _f("matrix-mean", "L0 normalisation: matrix-mean (paper) | param-mean")
    lambda_max: float = _f(1.0, "final weight of the L0 penalty")
    lambda_start: float = _f(0.25, "fraction of training at which lambda starts rising from 0")
    lambda_end: float = _f(0.75, "fraction of training at which lambda reaches lambda_max")
    # optimisation
    epochs: int | None = _f(None, "training epochs (default from the profile)")
    batch_size: int = _f(32, "sentences per batch")
    mask_lr: float = _f(0.2, "learning rate of the mask logits")
    head_lr: float | None = _f(None, "learning rate of the head (default from the profile)")
    warmup: float = _f(0.1, "fraction of steps of linear learning-rate warm-up")
    eval_every: int | None = _f(None, "steps between dev evaluations (default from the profile)")
    checkpoint_every: int | None = _f(
        None, "steps between checkpoints in the run directory, for --resume (default: at every dev evaluation)"
    )
    patience: int | None = _f(
        None, "early stop after this many evaluations without change, once lambda is at its maximum"
    )
    tolerance: float = _f(0.01, "change below which the dev metric and density count as converged")
    precision: str | None = _f(None, "fp32 | bf16 (mask logits, head and optimiser state stay fp32)")
    seed: int = _f(0, "random seed (data order, mask noise, head init)")
    # output
    out: str | None = _f(None, "run directory (default: runs/<task>-<probe>-<granularity>-<seed>)")
    overwrite: bool = _f(False, "replace an existing run directory")
    predict: bool = _f(False, "write dev/test predictions into the run directory")
    dry_run: bool = _f(False, "print what would be masked and the number of mask parameters, then exit")
    progress: bool = _f(True, "show a progress bar")

    def __post_init__(self) -> None:
        if isinstance(self.rank, int) and not isinstance(self.rank, bool):  # YAML grids write ranks as numbers
            self.rank = str(self.rank)

    def resolved(self) -> ProbeConfig:
        """A copy with profile defaults filled in and values checked."""
        if self.profile not in PROFILES:
            raise ConfigError(f"--profile {self.profile!r} is not known; use one of {', '.join(PROFILES)}")
        values = dataclasses.asdict(self)
        check_types(values)
        defaults = {**PROFILES[self.profile], **TASK_PROFILES.get(self.profile, {}).get(self.task, {})}
        for key, value in defaults.items():
            if values.get(key) is None:
                values[key] = value
        cfg = ProbeConfig(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Reject impossible values with a message naming the flag."""
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "eval_every": self.eval_every}
        positive["checkpoint_every"] = self.checkpoint_every
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}; give a whole number >= 1")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if not 0 <= self.lambda_start <= self.lambda_end <= 1:
            raise ConfigError("--lambda-start and --lambda-end must satisfy 0 <= start <= end <= 1")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"--warmup must be in [0, 1), got {self.warmup}")
        if self.precision not in (None, "fp32", "bf16"):
            raise ConfigError(f"--precision {self.precision!r} is not known; use fp32 or bf16")
        from subprobe.models.reset import INITS, SETTINGS
        from subprobe.probes.registry import PROBE_NAMES

        if self.setting not in SETTINGS:
            raise ConfigError(f"--setting {self.setting!r} is not known; use one of {', '.join(SETTINGS)}")
        if self.init not in INITS:
            raise ConfigError(f"--init {self.init!r} is not known; use one of {', '.join(INITS)}")
        if self.probe not in PROBE_NAMES:
            raise ConfigError(f"--probe {self.probe!r} is not known; use one of {', '.join(PROBE_NAMES)}")
        if self.decoder not in ("mst", "argmax"):
            raise ConfigError(f"--decoder {self.decoder!r} is not known; use mst or argmax")
        if self.ner_scheme not in ("auto", "iob1", "iob2"):
            raise ConfigError(f"--ner-scheme {self.ner_scheme!r} is not known; use auto, iob1 or iob2")
        if self.lambda_max < 0:
            raise ConfigError(f"--lambda-max must be >= 0, got {self.lambda_max}")

    def default_out(self) -> Path:
        unit = {"subnetwork": self.granularity.replace(",", "x"), "mlp": f"r{self.rank}"}.get(self.probe, "")
        name = "-".join(x for x in (self.task, self.probe, unit, self.setting, f"s{self.seed}") if x)
        return Path("runs") / name

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    @staticmethod
    def from_yaml(path: str | Path) -> ProbeConfig:
        """Read a YAML mapping of settings; every problem is one ConfigError naming the file (and line)."""
        try:
            with open(path, encoding="utf-8") as fh:
                values = yaml.safe_load(fh)
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file; check the path") from None
        except IsADirectoryError:
            raise ConfigError(f"--config {path}: is a directory; give a YAML file") from None
        except OSError as exc:
            raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc}); check the path") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--config {path}: not UTF-8 text; save the file as UTF-8") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{where}: not valid YAML ({problem}); write one `key: value` per line") from None
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(
                f"{path}: expected `key: value` lines (a YAML mapping), found a {type(values).__name__}; "
                "see config.yaml in any run directory for an example"
            )
        known = {f.name for f in dataclasses.fields(ProbeConfig)}
        unknown = sorted(str(k) for k in set(values) - known)
        if unknown:
            raise ConfigError(
                f"{path}: unknown configuration keys {', '.join(unknown)}; "
                "remove them (`subprobe probe --help` lists the settings, with - for _)"
            )
        check_types(values, str(path))
        return ProbeConfig(**values)


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check_types(values: dict[str, Any], where: str | None = None) -> None:
    """Reject a value of the wrong type (e.g. ``epochs: three``); ints are accepted for floats."""
    hints = typing.get_type_hints(ProbeConfig)
    for name, value in values.items():
        kind = hints.get(name)
        if kind is None:
            continue
        optional = False
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            args = typing.get_args(kind)
            optional = type(None) in args
            kind = next(a for a in args if a is not type(None))
        if value is None and optional:
            continue
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            expected = _TYPE_NAMES.get(kind, kind.__name__) + (" or null" if optional else "")
            prefix = f"{where}: {name}" if where else "--" + name.replace("_", "-")
            raise ConfigError(f"{prefix} must be {expected}, got {value!r}; fix the value")
