"""Sorted label vocabularies (ids never depend on hash order or file order)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from subprobe.errors import DataError


@dataclass(frozen=True)
class LabelVocab:
    """Labels sorted lexicographically; ``id`` of a label is its index."""

    labels: tuple[str, ...]

    @staticmethod
    def build(values: Iterable[str]) -> LabelVocab:
        return LabelVocab(tuple(sorted(set(values))))

    def __len__(self) -> int:
        return len(self.labels)

    def index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def encode_all(self, sequences: list[list[str]], source: str, field: str) -> list[list[int]]:
        """Map label sequences to ids; unseen labels end in one error naming them and their counts."""
        idx = self.index()
        unseen = Counter(v for seq in sequences for v in seq if v not in idx)
        if unseen:
            listed = ", ".join(f"{label!r} ({n} tokens)" for label, n in sorted(unseen.items()))
            raise DataError(
                source,
                None,
                f"{field} label(s) not seen in the training data: {listed}",
                "train on data that has them, or map them to a known label",
            )
        return [[idx[v] for v in seq] for seq in sequences]
