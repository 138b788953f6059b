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
from collections.abc import Sequence
from typing import Any

from seqeval.metrics.sequence_labeling import get_entities

from subprobe.errors import ConfigError

__all__ = ["ner_scores", "convert_scheme", "extract_chunks", "SCHEMES"]

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


def _prf(correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def ner_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "iob1") -> dict[str, Any]:
    """Micro entity-level precision/recall/F1 (fractions) like conlleval, plus per-type scores.

    ``gold``/``pred`` are per-sentence tag lists of equal shape. ``scheme`` names the tagging
    scheme (``iob1`` or ``iob2``); conlleval's chunk rules are the same for both, and an ``I-X``
    that starts a chunk in IOB2 predictions is read as a chunk start, as conlleval does.

    Returns ``f1``, ``precision``, ``recall``, ``accuracy`` (token level), counts ``n_gold``,
    ``n_pred``, ``n_correct``, and ``per_type``: ``{type: {precision, recall, f1, support}}``
    where ``support`` is the number of gold entities of that type (types seen in gold or pred).
    """
    _check_scheme(scheme)
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but pred has {len(pred)}")
    gold_chunks: set[tuple[int, str, int, int]] = set()
    pred_chunks: set[tuple[int, str, int, int]] = set()
    n_tokens = n_tok_ok = 0
    for s, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {s}: gold has {len(g)} tags but pred has {len(p)}")
        _check_tags(g, f"gold sentence {s}")
        _check_tags(p, f"pred sentence {s}")
        gold_chunks.update((s, *c) for c in get_entities(list(g)))
        pred_chunks.update((s, *c) for c in get_entities(list(p)))
        n_tokens += len(g)
        n_tok_ok += sum(a == b for a, b in zip(g, p, strict=True))

    correct = gold_chunks & pred_chunks
    precision, recall, f1 = _prf(len(correct), len(pred_chunks), len(gold_chunks))
    types = sorted({c[1] for c in gold_chunks} | {c[1] for c in pred_chunks})
    per_type: dict[str, dict[str, float]] = {}
    for t in types:
        n_g = sum(c[1] == t for c in gold_chunks)
        n_p = sum(c[1] == t for c in pred_chunks)
        n_c = sum(c[1] == t for c in correct)
        p_t, r_t, f_t = _prf(n_c, n_p, n_g)
        per_type[t] = {"precision": p_t, "recall": r_t, "f1": f_t, "support": n_g}
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "accuracy": n_tok_ok / n_tokens if n_tokens else 0.0,
        "n_gold": len(gold_chunks),
        "n_pred": len(pred_chunks),
        "n_correct": len(correct),
        "per_type": per_type,
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
