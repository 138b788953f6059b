"""The record every reader produces: one sentence with its word-level annotations."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: Fields of a :class:`Sentence` that are not annotations.
_NOT_ANNOTATIONS = ("words", "rows", "comments", "source", "line")


@dataclass
class Sentence:
    """One sentence of words with optional word-level annotations.

    ``heads`` follow CoNLL-U: 0 is the root, ``i`` (1-based) is the i-th word.
    ``xpos`` and ``feats`` are CoNLL-U's XPOS and FEATS columns (FEATS as written: ``Number=Sing|Person=3``,
    ``_`` for none). ``rows`` keeps the original 10 CoNLL-U columns of each word (for writing predictions).
    ``source``/``line`` locate the sentence's first line for error messages.
    """

    words: list[str]
    upos: list[str] | None = None
    heads: list[int] | None = None
    deprels: list[str] | None = None
    ner: list[str] | None = None
    rows: list[list[str]] | None = None
    comments: list[str] = field(default_factory=list)
    source: str = ""
    line: int = 0
    xpos: list[str] | None = None
    feats: list[str] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def without_labels(self) -> Sentence:
        """This sentence with every annotation removed (its words, rows, comments and location kept)."""
        return dataclasses.replace(
            self, **{f.name: None for f in dataclasses.fields(self) if f.name not in _NOT_ANNOTATIONS}
        )
