"""Experiment tracking (``--report-to tensorboard,mlflow,wandb``): one hook, trackers imported lazily.

What every tracker receives, from one place each:

* the resolved configuration as parameters, when the run starts (:func:`open_tracker`);
* every record of ``log.jsonl``, flattened (``loss``, ``lambda``, ``density``, ``dev/accuracy``, ...)
  at its training step, from the trainer's log-writing point;
* the final metrics (``final/dev/accuracy``, ``final/density``, ...) once ``metrics.json`` is written.

Where they write: TensorBoard event files in ``RUN_DIR/tensorboard``; MLflow a local file store in
``RUN_DIR/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set (experiment ``$MLFLOW_EXPERIMENT_NAME`` or
``subprobe``); W&B offline in ``RUN_DIR/wandb`` unless ``WANDB_MODE`` says otherwise (project
``$WANDB_PROJECT`` or ``subprobe``), so nothing goes over the network by default.
Each tracker is an optional extra: ``pip install 'subprobe[tensorboard]'`` (or ``mlflow``, ``wandb``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import time
from pathlib import Path
from typing import Any, Protocol

from subprobe.errors import ConfigError

#: tracker name -> (module that must be importable, pip extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}


class Tracker(Protocol):
    """What a run reports to a tracker."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_record(self, record: dict, step: int) -> None: ...

    def log_final(self, metrics: dict, step: int) -> None: ...

    def close(self, failed: bool = False) -> None: ...


def parse_report_to(value: str | None) -> list[str]:
    """Tracker names of ``--report-to`` (comma-separated, any subset; empty or ``none``: no tracker)."""
    if value is None:
        return []
    names = [n.strip().lower() for n in str(value).split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(
            f"--report-to {value!r}: {', '.join(unknown)} is not known; use any of {', '.join(TRACKERS)} "
            "separated by commas"
        )
    return list(dict.fromkeys(names))


def check_available(value: str | None) -> list[str]:
    """The trackers of ``--report-to``; a missing one is one error line naming the extra to install."""
    names = parse_report_to(value)
    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"--report-to {name} needs the {extra} extra, which is not installed: "
                f"pip install 'subprobe[{extra}]' (or drop {name} from --report-to)"
            )
    return names


def flatten(record: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) record as ``a/b`` keys; booleans count as 0/1, other values are left out."""
    flat: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        elif isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, int | float):
            flat[name] = float(value)
    return flat


def config_params(config) -> dict[str, Any]:
    """The resolved configuration as flat parameters (None written as ``none``)."""
    return {k: ("none" if v is None else v) for k, v in dataclasses.asdict(config).items()}


class Trackers:
    """Several trackers behind one :class:`Tracker` (none at all: every call does nothing)."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def log_params(self, params: dict[str, Any]) -> None:
        for t in self.trackers:
            t.log_params(params)

    def log_record(self, record: dict, step: int) -> None:
        for t in self.trackers:
            t.log_record(record, step)

    def log_final(self, metrics: dict, step: int) -> None:
        for t in self.trackers:
            t.log_final(metrics, step)

    def close(self, failed: bool = False) -> None:
        trackers, self.trackers = self.trackers, []
        for t in trackers:
            t.close(failed)


def open_tracker(config, run_dir: Path) -> Trackers:
    """The trackers of ``config.report_to`` for the run in ``run_dir``, with the configuration logged."""
    names = check_available(config.report_to)
    run_dir = Path(run_dir)
    made: list[Tracker] = []
    try:
        for name in names:
            try:
                made.append(_BUILDERS[name](run_dir, config))
            except Exception as exc:  # e.g. an unreachable MLFLOW_TRACKING_URI, WANDB_MODE=online without a key
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(
                    f"--report-to {name}: the tracker could not start ({first}); fix it or drop {name}"
                ) from None
    except BaseException:
        Trackers(made).close(failed=True)
        raise
    tracker = Trackers(made)
    tracker.log_params(config_params(config))
    return tracker


class TensorBoardTracker:
    """Scalars per record, the configuration as text and as HParams (with the final metrics)."""

    def __init__(self, run_dir: Path, config) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from subprobe.runs.directory import RunDir

        self.writer = SummaryWriter(log_dir=str(RunDir(run_dir).tensorboard_dir))
        self.params: dict[str, Any] = {}

    def log_params(self, params: dict[str, Any]) -> None:
        import yaml

        self.params = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in params.items()}
        self.writer.add_text("config", "```\n" + yaml.safe_dump(params, sort_keys=False) + "```", 0)

    def log_record(self, record: dict, step: int) -> None:
        for key, value in flatten(record).items():
            if key != "step":
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_final(self, metrics: dict, step: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = {f"final/{k}": v for k, v in flatten(metrics).items()}
        for summary in hparams(self.params, final):
            self.writer.file_writer.add_summary(summary)
        for key, value in final.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run: parameters, every record as metrics at its step, the final metrics.

    MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is true: the variable is set
    only around this tracker's own calls to the run directory's store, and restored after each.
    """

    def __init__(self, run_dir: Path, config) -> None:
        from mlflow.tracking import MlflowClient

        from subprobe.runs.directory import RunDir

        given = os.environ.get("MLFLOW_TRACKING_URI")
        self.own_store = not given
        uri = given or RunDir(run_dir).mlflow_dir.resolve().as_uri()
        with self._scope():
            self.client = MlflowClient(tracking_uri=uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "subprobe"
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            tags = {"subprobe.run_dir": str(run_dir)}
            self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags).info.run_id

    @contextlib.contextmanager
    def _scope(self):
        if not self.own_store:
            yield
            return
        before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
            else:
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = before

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        with self._scope():
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i : i + 100])

    def _metrics(self, flat: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in flat.items()]
        with self._scope():
            for i in range(0, len(items), 1000):
                self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_record(self, record: dict, step: int) -> None:
        self._metrics({k: v for k, v in flatten(record).items() if k != "step"}, step)

    def log_final(self, metrics: dict, step: int) -> None:
        self._metrics({f"final/{k}": v for k, v in flatten(metrics).items()}, step)

    def close(self, failed: bool = False) -> None:
        with self._scope():
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class WandbTracker:
    """One W&B run, offline by default: config, every record at its step, the final metrics as summary."""

    def __init__(self, run_dir: Path, config) -> None:
        import wandb

        try:  # no system-metrics sampling: it would compete with training for the CPU
            settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
        except Exception:  # older W&B without the option
            settings = wandb.Settings(silent=True, console="off")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "subprobe",
            name=run_dir.name,
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE") or "offline",
            reinit="create_new",
            settings=settings,
        )

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_record(self, record: dict, step: int) -> None:
        self.run.log({k: v for k, v in flatten(record).items() if k != "step"}, step=step)

    def log_final(self, metrics: dict, step: int) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in flatten(metrics).items()})

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


_BUILDERS = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}
