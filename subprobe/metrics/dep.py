"""Dependency attachment scores: standard token-micro UAS/LAS and the paper's variants, from per-sentence counts."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from subprobe.metrics.statistics import SentenceStats, per_sentence, ratio

__all__ = ["attachment_scores", "attachment_statistics", "attachment_scores_of", "universal_relation"]


def universal_relation(label: str) -> str:
    """The universal part of a UD relation, as the CoNLL 2018 scorer compares them: ``nmod:poss`` -> ``nmod``."""
    return label.split(":", 1)[0]


def _flat(lists: Sequence[Sequence], lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(x) for x in lists]) if lengths.sum() else np.zeros(0)


def attachment_statistics(
    gold_heads: Sequence[Sequence[int]],
    gold_rels: Sequence[Sequence[Hashable]],
    pred_heads: Sequence[Sequence[int]],
    pred_rels: Sequence[Sequence[Hashable]],
    pred_rels_gold_head: Sequence[Sequence[Hashable]] | None = None,
    ids: Sequence[int] | None = None,
) -> SentenceStats:
    """Per sentence: ``words``, ``head_ok`` (right head), ``label_ok`` (right head and relation), ``sentences``
    (1 if it has words), ``macro_uas`` (its UAS, 0 when empty) and, with ``pred_rels_gold_head``, ``macro_las``
    (the paper's per-sentence LAS: right head and the relation predicted from the gold head right).

    Inputs as :func:`attachment_scores`; ``ids`` default to 0..n-1."""
    n_sent = len(gold_heads)
    lists = [gold_rels, pred_heads, pred_rels]
    if pred_rels_gold_head is not None:
        lists.append(pred_rels_gold_head)
    if any(len(x) != n_sent for x in lists):
        raise ValueError("gold and predicted inputs must have the same number of sentences")
    lengths = np.array([len(h) for h in gold_heads], dtype=np.int64)
    for s in range(n_sent):
        if any(len(x[s]) != lengths[s] for x in lists):
            raise ValueError(f"sentence {s}: gold and predicted lists differ in length")
    head_ok = _flat(gold_heads, lengths).astype(np.int64) == _flat(pred_heads, lengths).astype(np.int64)
    label_ok = head_ok & (_flat(gold_rels, lengths) == _flat(pred_rels, lengths))
    heads = per_sentence(head_ok, lengths)
    columns = {"words": lengths, "head_ok": heads, "label_ok": per_sentence(label_ok, lengths),
               "sentences": lengths > 0, "macro_uas": ratio(heads, lengths)}
    if pred_rels_gold_head is not None:
        paper_ok = head_ok & (_flat(gold_rels, lengths) == _flat(pred_rels_gold_head, lengths))
        columns["macro_las"] = ratio(per_sentence(paper_ok, lengths), lengths)
    return SentenceStats.from_columns(columns, range(n_sent) if ids is None else ids)


def attachment_scores_of(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``uas``, ``las``, ``paper_uas`` (and ``paper_las`` when the statistics have it) of the column sums of
    :func:`attachment_statistics` (scalars, or one value per bootstrap resample)."""
    out = {
        "uas": ratio(totals["head_ok"], totals["words"]),
        "las": ratio(totals["label_ok"], totals["words"]),
        "paper_uas": ratio(totals["macro_uas"], totals["sentences"]),
    }
    if "macro_las" in totals:
        out["paper_las"] = ratio(totals["macro_las"], totals["sentences"])
    return out


def attachment_scores(
    gold_heads: Sequence[Sequence[int]],
    gold_rels: Sequence[Sequence[Hashable]],
    pred_heads: Sequence[Sequence[int]],
    pred_rels: Sequence[Sequence[Hashable]],
    pred_rels_gold_head: Sequence[Sequence[Hashable]] | None = None,
) -> dict[str, float]:
    """Attachment scores over sentences; each inner list has one entry per word (no ROOT).

    Heads use CoNLL-U numbering (0 = ROOT); relations may be ids or strings. Every word counts,
    punctuation included. Returns fractions in [0, 1]:

    * ``uas``, ``las``: token-micro averages (the standard numbers; labels from predicted heads).
    * ``paper_uas``: UAS averaged per sentence then over sentences (the paper's macro average).
    * ``paper_las`` (only when ``pred_rels_gold_head`` is given): the paper's LAS, where a word
      counts if its predicted head is right and the label predicted *given the gold head* is
      right, macro-averaged over sentences.

    Sentences without words are skipped in the macro averages. Empty input gives 0.0.
    """
    stats = attachment_statistics(gold_heads, gold_rels, pred_heads, pred_rels, pred_rels_gold_head)
    return {k: float(v) for k, v in attachment_scores_of(stats.totals()).items()}
