"""Entity-level NER scores with conlleval semantics, and IOB1 <-> IOB2 conversion.

Chunks follow conlleval's rules, which are the same for IOB1 and IOB2 data: a chunk starts at
``B-X``, at ``I-X`` after ``O`` (or at the start of a sentence), and at any tag whose type
differs from the previous tag's; it ends before ``O``, before ``B-*`` and before a change of
type. So ``I-PER I-PER`` is one entity, ``I-PER B-PER`` two, ``I-LOC I-ORG`` two. Sentence
boundaries end chunks (conlleval's blank line). A predicted chunk is correct iff a gold chunk
has the same type, start and end.

Chunk extraction uses ``seqeval``'s ``get_entities`` (its default, non-strict mode implements
conlleval's startOfChunk/endOfChunk rules for B/I/O tags); ``tests/test_metrics_ner.py``
checks it against a line-by-line port of conlleval's counting on random sequences.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from subprobe.errors import ConfigError
from subprobe.metrics.statistics import SentenceStats, ratio

__all__ = ["ner_scores", "ner_scores_of", "ner_statistics", "convert_scheme", "extract_chunks", "SCHEMES"]

SCHEMES = ("iob1", "iob2")
_TAG = re.compile(r"^(?:O|[BI]-.+)$")


def _check_scheme(scheme: str, what: str = "scheme") -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown tagging {what} {scheme!r}; use one of {', '.join(SCHEMES)}")


def _check_tags(tags: Sequence[str], where: str) -> None:
    for t in tags:
        if not isinstance(t, str) or not _TAG.match(t):
            raise ValueError(f"{where}: invalid NER tag {t!r} (expected O, B-TYPE or I-TYPE)")


def extract_chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of one sentence as ``(type, start, end)`` with inclusive ``end`` (conlleval)."""
    _check_tags(tags, "extract_chunks")
    return [tuple(c) for c in get_entities(list(tags))]  # type: ignore[misc]


def _prf(correct, n_pred, n_gold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 (0 where undefined), elementwise over counts (scalars or resample arrays)."""
    p = ratio(correct, n_pred)
    r = ratio(correct, n_gold)
    return p, r, ratio(2 * p * r, p + r)


def ner_statistics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "iob1",
                   ids: Sequence[int] | None = None) -> SentenceStats:
    """Per sentence: ``tokens``, ``tokens_ok`` (right tag), and the entity counts ``gold``, ``pred``, ``correct``
    (a predicted chunk is correct iff a gold chunk has its type, start and end), overall and per entity type T
    (``gold:T``, ``pred:T``, ``correct:T``, for every type seen in gold or predicted chunks).

    Arguments as :func:`ner_scores`; ``ids`` default to 0..n-1."""
    _check_scheme(scheme)
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    rows = []
    for s, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {s}: gold has {len(g)} tags but pred has {len(p)}")
        _check_tags(g, f"gold sentence {s}")
        _check_tags(p, f"pred sentence {s}")
        g_chunks = set(get_entities(list(g)))  # sentence boundaries end chunks (conlleval's blank line)
        p_chunks = set(get_entities(list(p)))
        rows.append((len(g), sum(a == b for a, b in zip(g, p, strict=True)), g_chunks, p_chunks, g_chunks & p_chunks))
    types = sorted({c[0] for row in rows for chunks in row[2:4] for c in chunks})
    columns: dict[str, list[float]] = {"tokens": [r[0] for r in rows], "tokens_ok": [r[1] for r in rows]}
    for j, name in ((2, "gold"), (3, "pred"), (4, "correct")):
        columns[name] = [len(r[j]) for r in rows]
        for t in types:
            columns[f"{name}:{t}"] = [sum(c[0] == t for c in r[j]) for r in rows]
    return SentenceStats.from_columns(columns, range(len(gold)) if ids is None else ids)


def ner_scores_of(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``f1``, ``precision``, ``recall``, token ``accuracy`` and per entity type T ``f1_T``, ``precision_T``,
    ``recall_T`` of the column sums of :func:`ner_statistics` (scalars, or one value per bootstrap resample)."""
    precision, recall, f1 = _prf(totals["correct"], totals["pred"], totals["gold"])
    out = {"f1": f1, "precision": precision, "recall": recall, "accuracy": ratio(totals["tokens_ok"], totals["tokens"])}
    for t in sorted(name.split(":", 1)[1] for name in totals if name.startswith("gold:")):
        p_t, r_t, f_t = _prf(totals[f"correct:{t}"], totals[f"pred:{t}"], totals[f"gold:{t}"])
        out.update({f"f1_{t}": f_t, f"precision_{t}": p_t, f"recall_{t}": r_t})
    return out


def ner_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "iob1") -> dict[str, Any]:
    """Micro entity-level precision/recall/F1 (fractions) like conlleval, plus per-type scores.

    ``gold``/``pred`` are per-sentence tag lists of equal shape. ``scheme`` names the tagging
    scheme (``iob1`` or ``iob2``); conlleval's chunk rules are the same for both, and an ``I-X``
    that starts a chunk in IOB2 predictions is read as a chunk start, as conlleval does.

    Returns ``f1``, ``precision``, ``recall``, ``accuracy`` (token level), counts ``n_gold``,
    ``n_pred``, ``n_correct``, and ``per_type``: ``{type: {precision, recall, f1, support}}``
    where ``support`` is the number of gold entities of that type (types seen in gold or pred).
    Computed from :func:`ner_statistics` by :func:`ner_scores_of`.
    """
    totals = ner_statistics(gold, pred, scheme).totals()
    scores = ner_scores_of(totals)
    types = sorted(name.split(":", 1)[1] for name in totals if name.startswith("gold:"))
    return {
        "f1": float(scores["f1"]),
        "precision": float(scores["precision"]),
        "recall": float(scores["recall"]),
        "accuracy": float(scores["accuracy"]),
        "n_gold": int(totals["gold"]),
        "n_pred": int(totals["pred"]),
        "n_correct": int(totals["correct"]),
        "per_type": {t: {"precision": float(scores[f"precision_{t}"]), "recall": float(scores[f"recall_{t}"]),
                         "f1": float(scores[f"f1_{t}"]), "support": int(totals[f"gold:{t}"])} for t in types},
    }


def convert_scheme(tags: Sequence[str], src: str, dst: str) -> list[str]:
    """Convert one sentence's tags between ``iob1`` and ``iob2`` (entities are preserved).

    IOB2: every entity starts with ``B-``. IOB1: entities start with ``I-`` unless they directly
    follow an entity of the same type, where ``B-`` marks the boundary. Input is read with
    conlleval's chunk rules, so ill-formed input (``I-X`` starting an IOB2 entity) is accepted.
    """
    _check_scheme(src, "source scheme")
    _check_scheme(dst, "target scheme")
    _check_tags(tags, "convert_scheme")
    out = ["O"] * len(tags)
    prev: tuple[str, int] | None = None  # (type, end) of the previous chunk
    for typ, start, end in get_entities(list(tags)):
        adjacent_same = prev is not None and prev == (typ, start - 1)
        out[start] = f"B-{typ}" if dst == "iob2" or adjacent_same else f"I-{typ}"
        for i in range(start + 1, end + 1):
            out[i] = f"I-{typ}"
        prev = (typ, end)
    return out
