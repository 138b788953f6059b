"""The record every reader produces: one sentence with its word-level annotations."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sentence:
    """One sentence of words with optional word-level annotations.

    ``heads`` follow CoNLL-U: 0 is the root, ``i`` (1-based) is the i-th word.
    ``rows`` keeps the original 10 CoNLL-U columns of each word (for writing predictions).
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

    def __len__(self) -> int:
        return len(self.words)
