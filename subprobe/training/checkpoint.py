"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint (a file of the run directory, see :class:`subprobe.runs.RunDir`) holds the probe's trainable state (every
parameter with ``requires_grad`` -- mask logits, head, adapters -- and the buffers outside the
frozen encoder), the optimiser state, the position in training (step, epoch, batches done in the
epoch), the running loss accumulators, the history of dev checks and the random number generator
states (torch, Python ``random``, NumPy, CUDA when used). The data order of an epoch depends only on
``(seed, epoch)``, so a resumed run skips the batches already done and continues bit for bit.

The file is written to a temporary name in the same directory, flushed to disk and renamed over the
old one (``os.replace``): a kill at any moment leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from subprobe.atomic import remove_stale_temporaries, save_torch, write_text  # noqa: F401 (re-exported)
from subprobe.errors import SubprobeError, WriteError

FORMAT_VERSION = 1


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0  # the epoch being trained
    batch_in_epoch: int = 0  # batches of ``epoch`` already done
    running_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    running_pen: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    since_log: int = 0
    words: int = 0
    seconds: float = 0.0  # training time before this process
    history: list[dict] = field(default_factory=list)
    stopped: bool = False  # early stop fired
    finished: bool = False  # no training steps left (final evaluation may still be missing)


# -- random number generators ------------------------------------------------------------------


def rng_state(generator: torch.Generator | None = None) -> dict:
    """The states of every random number generator a run uses. ``generator``: the run's own stream (packed
    training, :mod:`subprobe.models.streams`), saved as ``generator`` and, on the CPU, as ``torch`` too -- what the
    run alone would have in torch's default generator, so either kind of run continues the checkpoint."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
        if generator.device.type == "cpu":
            state["torch"] = state["generator"]
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore the generators saved by :func:`rng_state`; with ``generator`` (a packed run's stream), its state
    instead of torch's default generator's."""
    if generator is not None:
        generator.set_state(_stream_state(state, generator))
    else:
        torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available() and generator is None:
        torch.cuda.set_rng_state_all(state["cuda"])


def _stream_state(state: dict, generator: torch.Generator) -> torch.Tensor:
    """The state a packed run's ``generator`` continues from: its own, saved by a packed run, else the default
    generator's of a run alone (on its device)."""
    if "generator" in state:
        return state["generator"]
    if generator.device.type == "cuda" and "cuda" in state:
        return state["cuda"][generator.device.index or 0]
    return state["torch"]


# -- trainable state -----------------------------------------------------------------------------


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters with ``requires_grad`` and buffers outside the frozen encoder features."""
    state = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    for name, buf in model.named_buffers():
        if not name.startswith("features."):
            state[name] = buf.detach().clone()
    return state


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Copy ``state`` into ``model``; the names and shapes must match exactly."""
    expected = trainable_state(model)
    if set(expected) != set(state):
        missing = sorted(set(expected) - set(state))[:3]
        extra = sorted(set(state) - set(expected))[:3]
        raise SubprobeError(
            f"{where}: the checkpoint does not match this probe (missing {missing}, unexpected {extra}); "
            "it was written by another configuration: start a new run with another --out"
        )
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            target = params[name] if name in params else buffers[name]
            if target.shape != value.shape:
                raise SubprobeError(
                    f"{where}: {name} has shape {tuple(value.shape)} in the checkpoint but {tuple(target.shape)} "
                    "in this probe; start a new run with another --out"
                )
            target.copy_(value)


# -- files ---------------------------------------------------------------------------------------


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (:func:`subprobe.atomic.save_torch`: temporary file, fsync,
    ``os.replace``); a failed write keeps the previous checkpoint and says how to continue."""
    path = Path(path)
    try:
        save_torch(path, payload)
    except WriteError as exc:
        fix = f"free disk space or fix permissions, then continue with `subprobe probe --resume {path.parent}`"
        raise WriteError(str(path), exc.reason, kept=exc.kept, fix=fix) from None


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (SubprobeError if unreadable)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SubprobeError(f"{path}: no checkpoint; give the run directory of an interrupted run") from None
    except Exception as exc:  # a damaged file raises pickle, zip or runtime errors alike
        raise SubprobeError(
            f"{path}: the checkpoint cannot be read ({type(exc).__name__}); delete it and run "
            f"`subprobe probe --resume {path.parent}` to train again from the beginning"
        ) from None
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT_VERSION:
        raise SubprobeError(
            f"{path}: not a checkpoint of this subprobe version (format {found}, expected {FORMAT_VERSION}); "
            f"delete it and run `subprobe probe --resume {path.parent}` to train again from the beginning"
        )
    return payload


def make_payload(model, optimizer, progress: Progress, *, total_steps: int, per_epoch: int, train_size: int,
                 generator: torch.Generator | None = None) -> dict:
    """Everything :func:`restore` needs (``generator``: a packed run's stream, see :func:`rng_state`)."""
    return {
        "format": FORMAT_VERSION,
        "total_steps": total_steps,
        "per_epoch": per_epoch,
        "train_size": train_size,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "progress": {
            "step": progress.step,
            "epoch": progress.epoch,
            "batch_in_epoch": progress.batch_in_epoch,
            "running_loss": progress.running_loss.clone(),
            "running_pen": progress.running_pen.clone(),
            "since_log": progress.since_log,
            "words": progress.words,
            "seconds": progress.seconds,
            # JSON text: keeps the records exactly (floats round-trip) and loadable with weights_only
            "history": json.dumps(progress.history),
            "stopped": progress.stopped,
            "finished": progress.finished,
        },
        "rng": rng_state(generator),
    }


def restore(payload: dict, model, optimizer, *, total_steps: int, per_epoch: int, train_size: int, where: Path,
            generator: torch.Generator | None = None):
    """Load ``payload`` into ``model`` and ``optimizer``, set the RNG states (a packed run's: its ``generator``),
    return the Progress."""
    expected = {"total_steps": total_steps, "per_epoch": per_epoch, "train_size": train_size}
    for key, value in expected.items():
        if payload.get(key) != value:
            raise SubprobeError(
                f"{where}: the checkpoint was written for {key.replace('_', ' ')} {payload.get(key)} but this run has "
                f"{value} (different data or settings); resume with the run's own data and config.yaml"
            )
    load_trainable_state(model, payload["model"], where)
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except (ValueError, KeyError) as exc:
        raise SubprobeError(f"{where}: the optimiser state does not fit this probe ({exc}); start a new run") from None
    p = payload["progress"]
    progress = Progress(
        step=p["step"],
        epoch=p["epoch"],
        batch_in_epoch=p["batch_in_epoch"],
        running_loss=p["running_loss"].clone(),
        running_pen=p["running_pen"].clone(),
        since_log=p["since_log"],
        words=p["words"],
        seconds=p["seconds"],
        history=json.loads(p["history"]),
        stopped=p["stopped"],
        finished=p["finished"],
    )
    set_rng_state(payload["rng"], generator)
    return progress


def truncate_log(path: Path, step: int) -> None:
    """Keep only the log lines of steps <= ``step`` (a resumed run writes the later ones again)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(line + "\n")
    write_text(path, "".join(kept))
