"""Control tasks (Hewitt & Liang, 2019): labels that are a fixed function of the word type, seeded.

A probe that scores well on a control task memorises word types rather than reading the property
from the representation; **selectivity** = task metric - control metric.

* tagging tasks: each word type gets one label, drawn from the training file's label distribution
  (:func:`control_label`);
* dependency parsing: each word type gets one attachment behaviour -- to ROOT, to the sentence's first
  word or to its last word (:func:`control_heads`) -- and one relation drawn from the training relations.
  A word whose behaviour points at itself (the first word told to attach to the first word, the last to
  the last) attaches to ROOT: a word cannot head itself.

Each task says how its labels are drawn (``Task.control``); :func:`apply_control` relabels every split.

Every draw is a pure function of ``(word type, seed)`` (a SHA-256 hash, not a random generator), so a
dev/test word unseen in training gets its own draw, the same in every run and process. The word type
is the word form as written (case-sensitive).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from subprobe.data.pipeline import RawSplits

#: The dependency behaviours, in draw order.
BEHAVIOURS = ("root", "first", "last")


def unit_draw(word: str, seed: int, salt: str) -> float:
    """A number in [0, 1) fixed by ``(word, seed, salt)``."""
    digest = hashlib.sha256(f"{salt}\x00{seed}\x00{word}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Distribution:
    """Labels with their training counts, drawn from by inverse CDF (labels in sorted order)."""

    def __init__(self, counts: Counter) -> None:
        if not counts:
            raise ValueError("a control task needs training labels")
        self.labels = sorted(counts)
        self.cumulative = []
        total = 0
        for label in self.labels:
            total += counts[label]
            self.cumulative.append(total)
        self.total = total

    def draw(self, u: float) -> str:
        target = u * self.total
        for label, cum in zip(self.labels, self.cumulative):
            if target < cum:
                return label
        return self.labels[-1]


def control_label(word: str, seed: int, labels: Distribution) -> str:
    """The control tag of a word type."""
    return labels.draw(unit_draw(word, seed, "label"))


def control_behaviour(word: str, seed: int) -> str:
    """The control attachment behaviour of a word type: ``root``, ``first`` or ``last``."""
    return BEHAVIOURS[int(unit_draw(word, seed, "behaviour") * len(BEHAVIOURS))]


def control_heads(words: Sequence[str], seed: int) -> list[int]:
    """Heads (CoNLL-U: 0 = ROOT, 1-based) of a sentence under the control behaviours."""
    n = len(words)
    heads = []
    for i, word in enumerate(words, start=1):
        behaviour = control_behaviour(word, seed)
        head = {"root": 0, "first": 1, "last": n}[behaviour]
        heads.append(0 if head == i else head)
    return heads


def apply_control(task, raw: RawSplits, seed: int) -> RawSplits:
    """``raw`` with every split's labels (and the vocabulary source's) replaced by those of ``task``'s control task
    (``task.control``, see :class:`subprobe.tasks.base.Task`)."""
    train = raw.label_sentences or raw.sentences.get("train", [])
    relabel = task.control(train, seed)
    return RawSplits({split: [relabel(s) for s in sents] for split, sents in raw.sentences.items()},
                     [relabel(s) for s in raw.label_sentences])
