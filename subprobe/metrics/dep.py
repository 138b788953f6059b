"""Dependency attachment scores: standard token-micro UAS/LAS and the paper's variants."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["attachment_scores", "universal_relation"]


def universal_relation(label: str) -> str:
    """The universal part of a UD relation, as the CoNLL 2018 scorer compares them: ``nmod:poss`` -> ``nmod``."""
    return label.split(":", 1)[0]


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
    n_sent = len(gold_heads)
    lists = [gold_rels, pred_heads, pred_rels]
    if pred_rels_gold_head is not None:
        lists.append(pred_rels_gold_head)
    if any(len(x) != n_sent for x in lists):
        raise ValueError("gold and predicted inputs must have the same number of sentences")

    n_words = n_head_ok = n_label_ok = 0
    macro_uas: list[float] = []
    macro_las: list[float] = []
    for s in range(n_sent):
        gh, gr, ph, pr = gold_heads[s], gold_rels[s], pred_heads[s], pred_rels[s]
        prg = pred_rels_gold_head[s] if pred_rels_gold_head is not None else None
        n = len(gh)
        if len(gr) != n or len(ph) != n or len(pr) != n or (prg is not None and len(prg) != n):
            raise ValueError(f"sentence {s}: gold and predicted lists differ in length")
        if n == 0:
            continue
        head_ok = [int(a) == int(b) for a, b in zip(gh, ph, strict=True)]
        sent_head_ok = sum(head_ok)
        n_words += n
        n_head_ok += sent_head_ok
        n_label_ok += sum(h and a == b for h, a, b in zip(head_ok, gr, pr, strict=True))
        macro_uas.append(sent_head_ok / n)
        if prg is not None:
            macro_las.append(sum(h and a == b for h, a, b in zip(head_ok, gr, prg, strict=True)) / n)

    def frac(num: float, den: float) -> float:
        return float(num) / den if den else 0.0

    result = {
        "uas": frac(n_head_ok, n_words),
        "las": frac(n_label_ok, n_words),
        "paper_uas": frac(sum(macro_uas), len(macro_uas)),
    }
    if pred_rels_gold_head is not None:
        result["paper_las"] = frac(sum(macro_las), len(macro_las))
    return result
