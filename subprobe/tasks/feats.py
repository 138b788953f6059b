"""Morphological features of UD treebanks: ``--task feats:KEY`` tags every word with the value of one FEATS key.

``feats:Number`` reads the ``Number=...`` value of CoNLL-U's FEATS column (``Sing``, ``Plur``); a word
without that feature gets ``_``, a label of its own, so the task also decides *whether* a word carries
the feature. KEY is any feature name (``Tense``, ``Person``, ``Number[psor]``, ...); a key that no word
of the training file has is an error that lists the keys the file has. Scored by word accuracy (and its
sentence average, ``accuracy_macro``); predictions are CoNLL-U whose FEATS column holds the predicted value
of KEY beside the input's other features.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path

from subprobe.data.records import Sentence
from subprobe.errors import ConfigError, DataError
from subprobe.tasks.ud import UDTaggingTask

#: A UD feature name: a capital letter or digit, letters and digits, and an optional layer such as ``[psor]``.
_KEY = re.compile(r"[A-Z0-9][A-Za-z0-9]*(\[[a-z0-9]+\])?")
#: The label of a word without the feature (CoNLL-U's "no value").
NONE = "_"


def parse_feats(text: str) -> dict[str, str]:
    """``Number=Sing|Person=3`` -> ``{"Number": "Sing", "Person": "3"}`` (``_``: no features)."""
    if text in (NONE, ""):
        return {}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in text.split("|"))


def format_feats(feats: dict[str, str]) -> str:
    """The FEATS column of ``feats``: sorted by name, case-insensitively (the UD rule); ``_`` when empty."""
    return "|".join(f"{k}={v}" for k, v in sorted(feats.items(), key=lambda kv: kv[0].lower())) or NONE


class FeatsTask(UDTaggingTask):
    """One FEATS key as a word-tagging task (see the module docstring)."""

    name = "feats"
    column = "FEATS"
    #: how ``--task`` names the parameter (``feats:KEY``)
    parameter = "KEY"

    def __init__(self, key: str) -> None:
        if not _KEY.fullmatch(key):
            hint = key[:1].upper() + key[1:]
            fix = f"did you mean feats:{hint}? " if _KEY.fullmatch(hint) else ""
            raise ConfigError(
                f"--task feats:{key}: {key!r} is not a UD feature name; {fix}give one such as feats:Number, "
                "feats:Tense or feats:Number[psor]"
            )
        self.key = key
        self.name = f"feats:{key}"
        self.field = self.name
        self.title = f"Morphology: {key}"

    def labels_of(self, sentence: Sentence) -> list[str] | None:
        if sentence.feats is None:
            return None
        return [parse_feats(f).get(self.key, NONE) for f in sentence.feats]

    def with_labels(self, sentence: Sentence, labels: list[str] | None) -> Sentence:
        """``sentence`` whose FEATS hold ``labels`` as the value of KEY (``_`` or None: without KEY); the other
        features are kept."""
        before = sentence.feats or [NONE] * len(sentence.words)
        after = []
        for i, text in enumerate(before):
            feats = parse_feats(text)
            feats.pop(self.key, None)
            if labels is not None and labels[i] != NONE:
                feats[self.key] = labels[i]
            after.append(format_feats(feats))
        return dataclasses.replace(sentence, feats=after)

    def has_labels(self, sentence: Sentence) -> bool:
        return sentence.feats is not None

    def read(self, path: str | Path) -> list[Sentence]:
        """Every sentence of the file; an error when no word of it has the feature KEY."""
        sentences = super().read(path)
        found = {k for s in sentences for f in s.feats for k in parse_feats(f)}
        if self.key not in found:
            close = difflib.get_close_matches(self.key, sorted(found), n=1)
            listed = ", ".join(sorted(found, key=str.lower)) or "none"
            raise DataError(
                str(path), None, f"no word has the feature {self.key} in its FEATS column (features found: {listed})",
                f"did you mean --task feats:{close[0]}?" if close else "give --task feats:KEY with one of them",
            )
        return sentences

    def column_values(self, sentence: Sentence) -> list[str]:
        return list(sentence.feats)


TASK = FeatsTask
