"""The online code of MDL probing (Voita & Titov 2020): block boundaries and the description length of the labels.

The data are the first N training sentences in file order. Block boundaries lie at 0.1, 0.2, 0.4, 0.8, 1.6, 3.2,
6.25, 12.5, 25, 50 and 100 % of N (:data:`BOUNDARIES`), rounded half up to whole sentences:
``0 < t_1 < t_2 < ... < t_11 = N`` (:func:`block_ends`). A sender transmits the labels block by block:

* block 1 (sentences ``[0, t_1)``) with the uniform code (:meth:`subprobe.tasks.base.Task.uniform_bits`);
* block i + 1 (``[t_i, t_{i+1})``) with the probe trained on the first ``t_i`` sentences, which costs
  ``sum over its words of -log2 p(gold label)`` (:meth:`subprobe.tasks.base.Task.codelength`; dependencies: the
  head and then the relation given the gold head).

``online codelength`` = uniform code of block 1 + the codelengths of blocks 2..11; ``uniform codelength`` = the
uniform code of all N sentences (``N_words log2 K`` for tagging); ``compression`` = uniform / online: how many
times shorter the probe makes the labels, which is large when the labels are easy to learn from few examples.

Each block's probe is an ordinary run on a prefix (``--max-train-samples t_i``) that also codes the next block
(``--mdl-block-end t_{i+1}``) and records it in ``metrics.json``'s ``codelength`` (:func:`assemble` reads those).
"""

from __future__ import annotations

from collections.abc import Sequence

from subprobe.errors import ConfigError

__all__ = ["BOUNDARIES", "assemble", "block_ends", "smallest_size"]

#: The block boundaries, in % of the data (Voita & Titov 2020).
BOUNDARIES = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25.0, 50.0, 100.0)


def _ends(n: int, boundaries: Sequence[float]) -> list[int]:
    # half up, in exact integer arithmetic on hundredths of a percent
    return [(n * round(b * 100) + 5000) // 10000 for b in boundaries]


def smallest_size(boundaries: Sequence[float] = BOUNDARIES) -> int:
    """The fewest sentences for which every block holds at least one sentence."""
    n = 1
    while True:
        ends = _ends(n, boundaries)
        if ends[0] >= 1 and all(b > a for a, b in zip(ends, ends[1:])):
            return n
        n += 1


def block_ends(n: int, boundaries: Sequence[float] = BOUNDARIES) -> list[int]:
    """``[t_1, ..., t_11]``: the end (exclusive, in sentences) of every block of ``n`` sentences. A block without
    sentences is a ConfigError naming the sizes and the smallest data size that works."""
    if list(boundaries) != sorted(boundaries) or boundaries[-1] != 100:
        raise ConfigError(f"MDL block boundaries must rise to 100 %, got {list(boundaries)}")
    ends = _ends(n, boundaries)
    if ends[0] < 1 or any(b <= a for a, b in zip(ends, ends[1:])):
        sizes = [b - a for a, b in zip([0, *ends], ends)]
        raise ConfigError(
            f"MDL: {n} training sentences are too few for the online code's blocks at "
            f"{', '.join(f'{b:g}' for b in boundaries)} % (blocks of {sizes} sentences; each block must hold at "
            f"least one sentence); give at least {smallest_size(boundaries)} training sentences (--train, "
            "--max-train-samples)"
        )
    return ends


def assemble(blocks: Sequence[dict], boundaries: Sequence[float] = BOUNDARIES, n: int | None = None) -> dict:
    """The online code of a task's labels from its block runs' ``codelength`` facts (each a ``metrics.json``
    ``codelength``, optionally with the run's ``run_dir``), in any order, for the block ``boundaries`` (in %) of
    ``n`` sentences (default: the largest block end; if the last block is missing, the blocks then do not match
    the boundaries of that size and the code is incomplete).

    Returns ``sentences`` (N), ``words`` and ``dropped_long`` (over-long sentences, left out of both codes),
    ``labels`` (K), ``code`` (what is coded), ``uniform_bits``, ``online_bits``, ``compression`` (None while a
    block is missing), ``complete``, ``missing_blocks``, ``unexpected_blocks`` (spans that are not blocks of these
    boundaries) and ``blocks``: one entry per block, the first coded
    uniformly, each with ``start``, ``end``, ``trained_on``, ``sentences``, ``words``, ``bits``, ``uniform_bits``.
    """
    if not blocks:
        raise ValueError("assemble: no blocks")
    ordered = sorted(blocks, key=lambda b: tuple(b["block"]))
    n = max(b["block"][1] for b in ordered) if n is None else n
    ends = _ends(n, boundaries)
    expected = list(zip(ends, ends[1:]))
    by_span = {tuple(b["block"]): b for b in ordered}
    missing = [list(span) for span in expected if span not in by_span]
    unexpected = [list(span) for span in by_span if span not in expected]
    first = by_span.get(expected[0]) if expected else None
    rows = []
    if first is not None:
        prefix = first["prefix"]
        rows.append({"start": 0, "end": first["block"][0], "trained_on": 0, "coded_with": "uniform",
                     "sentences": prefix["sentences"], "dropped_long": prefix.get("dropped_long", 0),
                     "words": prefix["words"], "bits": prefix["uniform_bits"], "uniform_bits": prefix["uniform_bits"]})
    for span in expected:
        b = by_span.get(span)
        if b is None:
            continue
        rows.append({"start": span[0], "end": span[1], "trained_on": span[0], "coded_with": "probe",
                     "sentences": b["sentences"], "dropped_long": b.get("dropped_long", 0), "words": b["words"],
                     "bits": b["bits"], "uniform_bits": b["uniform_bits"], "run_dir": b.get("run_dir")})
    complete = not missing and not unexpected and first is not None
    uniform = sum(r["uniform_bits"] for r in rows)
    online = sum(r["bits"] for r in rows)
    return {
        "code": ordered[0].get("code"),
        "labels": ordered[0].get("labels"),
        "sentences": n,
        "words": sum(r["words"] for r in rows),
        "dropped_long": sum(r["dropped_long"] for r in rows),
        "uniform_bits": uniform if complete else None,
        "online_bits": online if complete else None,
        "compression": uniform / online if complete and online > 0 else None,
        "complete": complete,
        "missing_blocks": missing,
        "unexpected_blocks": unexpected,
        "boundaries_percent": list(boundaries),
        "blocks": rows,
    }
