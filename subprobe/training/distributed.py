"""One probe trained data-parallel on several processes (``torchrun`` / ``accelerate launch -m subprobe probe``).

Every process builds the same model from the same seed and walks the same batches (the data order depends
only on the seed and the epoch). Each global batch of ``--batch-size`` sentences is split across the
processes (sentence ``i`` of the batch goes to rank ``i mod world``); after the backward pass the gradients
are averaged, weighted by each process's number of words, in one ``all_reduce``: the update is the one a
single process would make on the whole batch (the loss is a mean over words). Dev checks run on every
process on the whole dev set, so every process takes the same early-stopping decision. Only rank 0 writes the
run directory (config, log, checkpoints, metrics); a resumed run hands rank 0's checkpoint to every process.

What differs from one process: the random numbers drawn during training (hard-concrete mask noise, dropout)
are drawn per process, from a stream seeded by the seed and the rank, so a data-parallel run does not repeat a
single-process run bit for bit; after a resume, processes other than rank 0 draw from a fresh stream.

Decisions that end or change the loop are rank 0's, broadcast to every process (:func:`rank0_decides`): dev
scores can differ in the last bit between GPUs (atomic additions), and a process that stopped on its own
would leave the others waiting forever in the next ``all_reduce``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from subprobe.errors import ConfigError, SubprobeError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run (rank 0 of 1 without a launcher)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def from_env() -> Ranks:
    """The ranks torchrun / accelerate launch put in the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(ranks: Ranks, device: torch.device) -> bool:
    """Join the process group (gloo on CPU, NCCL on CUDA); True when this call created it."""
    import torch.distributed as dist

    if not ranks.active or dist.is_initialized():
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run one process")
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                            world_size=ranks.world)
    return True


def stop(created: bool) -> None:
    """Leave the process group and free it now: a gloo group still referenced from a reference cycle was freed by
    the collector during interpreter shutdown, and its worker threads aborted the process (SIGABRT)."""
    import gc

    import torch.distributed as dist

    if created and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def on_main(ranks: Ranks, fn):
    """Run ``fn`` on rank 0 only and hand its result (or its error) to every process."""
    if not ranks.active:
        return fn()
    import torch.distributed as dist

    box: list = [None]
    error: BaseException | None = None
    if ranks.main:
        try:
            box[0] = ("ok", fn())
        except SubprobeError as exc:
            error, box[0] = exc, ("error", str(exc))
        except BaseException as exc:
            error, box[0] = exc, ("error", f"rank 0 failed: {type(exc).__name__}: {exc}")
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    kind, value = box[0]
    if kind == "error":
        raise SubprobeError(value)
    return value


def rank0_decides(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every process (early stopping: one decision for all; see the module doc)."""
    if not ranks.active:
        return flag
    import torch.distributed as dist

    box = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(box, src=0)
    return bool(box.item())


def shard(indices: list[int], ranks: Ranks) -> list[int]:
    """This process's sentences of a global batch."""
    return indices[ranks.rank :: ranks.world] if ranks.active else indices


def seed_noise(seed: int, ranks: Ranks, step: int = 0) -> None:
    """Give every process but rank 0 its own stream of training noise (mask samples, dropout)."""
    if ranks.active and not ranks.main:
        torch.manual_seed(seed * 1_000_003 + ranks.rank * 7_919 + step)


def sync_parameters(params: list[torch.nn.Parameter], ranks: Ranks) -> None:
    """Start every process from rank 0's trainable parameters (as DistributedDataParallel does)."""
    if not ranks.active:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def average_gradients(params: list[torch.nn.Parameter], loss: torch.Tensor, words: int,
                      ranks: Ranks) -> tuple[torch.Tensor, int]:
    """Replace every gradient by the word-weighted mean over the processes (one ``all_reduce``); returns the
    whole batch's mean loss and its number of words. A process without words in this batch adds nothing."""
    import torch.distributed as dist

    device = params[0].device
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
    tail = torch.stack([loss.detach().float().reshape(()), torch.tensor(1.0, device=device)])
    buffer = torch.cat(parts + [tail]) * float(words)
    dist.all_reduce(buffer)
    total = buffer[-1].item()
    if total > 0:
        buffer /= total
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = buffer[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
    return buffer[-2], int(round(total))
