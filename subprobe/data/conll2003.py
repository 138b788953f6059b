"""Reader for CoNLL-2003 style NER files (``word ... NER``, one token per line)."""

from __future__ import annotations

import os
import re

from subprobe.data.records import Sentence
from subprobe.data.textfile import read_text_utf8
from subprobe.errors import ConfigError, DataError

__all__ = ["read_conll2003", "detect_scheme"]

_TAG = re.compile(r"^(?:O|[BI]-\S+)$")
_SCHEMES = ("auto", "iob1", "iob2")


def _entity_start_with_i(prev: str, tag: str) -> bool:
    """True if ``tag`` is ``I-X`` and starts an entity (after O, another type or at start)."""
    return tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:])


def detect_scheme(sentences: list[Sentence]) -> str:
    """``"iob1"`` if some ``I-X`` starts an entity in any sentence's ``ner``, else ``"iob2"``."""
    for sent in sentences:
        prev = "O"
        for tag in sent.ner or []:
            if _entity_start_with_i(prev, tag):
                return "iob1"
            prev = tag
    return "iob2"


def read_conll2003(
    path: str | os.PathLike[str], scheme: str = "auto", keep_single_token: bool = True
) -> tuple[list[Sentence], str]:
    """Read a CoNLL-2003 NER file; return its sentences (``words``, ``ner``) and tag scheme.

    The word is column 0 and the NER tag the last column; every token line must have the same
    number (>= 2) of whitespace-separated columns. ``-DOCSTART-`` lines and blank lines separate
    sentences. ``scheme="auto"`` detects the scheme (``"iob1"`` if an ``I-X`` ever starts an
    entity, else ``"iob2"``); ``"iob1"``/``"iob2"`` check the file against it (IOB2 forbids an
    ``I-X`` that starts an entity; IOB1 accepts any B/I/O sequence, read with conlleval's
    rules, since the original ``eng.train`` has two ``B-MISC`` right after ``O``).
    ``keep_single_token=False`` drops one-word sentences, as the paper's loader did.

    Raises:
        DataError: unreadable, non-UTF-8 or empty file; bad column count; invalid tag; a tag
            sequence that contradicts an explicit ``scheme``.
        ConfigError: unknown ``scheme``.
    """
    if scheme not in _SCHEMES:
        raise ConfigError(f"unknown NER scheme {scheme!r}; use one of {', '.join(_SCHEMES)}")
    source = os.fspath(path)
    text = read_text_utf8(source, "CoNLL-2003")

    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    n_cols: int | None = None
    cols_line = 0

    def flush() -> None:
        nonlocal words, tags
        if words:
            sentences.append(Sentence(words=words, ner=tags, source=source, line=first_line))
        words, tags = [], []

    for lineno, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields:
            flush()
            continue
        if fields[0].startswith("-DOCSTART-"):
            flush()
            continue
        if len(fields) < 2:
            raise DataError(
                source,
                lineno,
                f"expected at least 2 columns (word ... NER tag), found {len(fields)}",
                "each token line needs the word first and the NER tag last",
            )
        if n_cols is None:
            n_cols, cols_line = len(fields), lineno
        elif len(fields) != n_cols:
            raise DataError(
                source,
                lineno,
                f"found {len(fields)} columns but line {cols_line} has {n_cols}",
                "use the same number of columns on every token line",
            )
        tag = fields[-1]
        if not _TAG.match(tag):
            raise DataError(
                source,
                lineno,
                f"invalid NER tag {tag!r}",
                "tags must be O, B-TYPE or I-TYPE in the last column",
            )
        if scheme == "iob2" and _entity_start_with_i(tags[-1] if tags else "O", tag):
            raise DataError(
                source,
                lineno,
                f"{tag} starts an entity, which IOB2 forbids",
                "this looks like IOB1 data: use --ner-scheme iob1 or auto",
            )
        if not words:
            first_line = lineno
        words.append(fields[0])
        tags.append(tag)
    flush()

    if not sentences:
        problem = "file is empty" if not text.strip() else "file contains no sentences"
        raise DataError(source, None, problem, "expected CoNLL-2003 lines `word ... NER-tag`")
    detected = detect_scheme(sentences) if scheme == "auto" else scheme
    if not keep_single_token:
        sentences = [s for s in sentences if len(s) > 1]
    return sentences, detected
