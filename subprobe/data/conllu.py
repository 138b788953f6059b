"""Read and write CoNLL-U dependency treebanks (Universal Dependencies).

Reading (``read_conllu``)
    * Word lines have exactly 10 tab-separated columns
      (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC); none may be empty.
    * Multiword-token lines (``3-4``) and empty nodes (``8.1``) are skipped; the
      remaining words must be numbered 1, 2, 3, ... without gaps or repeats.
    * Lines starting with ``#`` are kept verbatim in ``Sentence.comments``.
    * Sentences are separated by blank lines. A missing final blank line (or final
      newline) at the end of the file is accepted: the last sentence is still read.
      Windows line endings and a leading UTF-8 byte-order mark are accepted too.
    * Every sentence must be a tree: one word with HEAD 0, every other HEAD a word
      ID of the same sentence, no cycles. A sentence whose HEADs are all ``_`` is
      accepted and gets ``heads=None`` and ``deprels=None``.
    * ``upos`` (``xpos``) is ``None`` when every UPOS (XPOS) in the sentence is ``_``; ``feats`` holds the FEATS
      column as written (``_``: no features).
    * Every problem raises ``DataError`` (one line) naming the file, the 1-based
      number of the offending line and what to do about it. For a sentence without a
      root that is its first word line; for a second root, a cycle or a stray ``_``
      HEAD it is the line of the word concerned; an empty file reports line 1.

    The ``conllu`` library's ID/HEAD parsers do the field parsing; lines are split
    here (not by ``conllu.parse_incr``) to keep line numbers, keep fields
    byte-exact and stay fast (the 12,543-sentence EWT train file reads in ~1 s).

Writing (``write_conllu``)
    Writes all 10 columns, the comments and a blank line after every sentence,
    atomically. Multiword-token and empty-node lines were dropped on reading and are
    therefore not written back. For other files ``read -> write -> read`` gives equal
    ``Sentence`` objects (apart from ``source``, and ``line`` when the original had
    extra blank lines).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from pathlib import Path

from conllu.exceptions import ParseException
from conllu.parser import parse_id_value, parse_int_value

from subprobe.atomic import write_text
from subprobe.data.records import Sentence
from subprobe.data.textfile import read_text_utf8
from subprobe.errors import DataError

__all__ = ["COLUMNS", "read_conllu", "write_conllu"]

COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
_ID, _FORM, _UPOS, _XPOS, _FEATS, _HEAD, _DEPREL = 0, 1, 3, 4, 5, 6, 7

_FIX_COLUMNS = (
    "a word line needs the 10 columns ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC "
    "separated by single tabs, with _ for unknown values"
)
_FIX_IDS = "number the words of each sentence 1, 2, 3, ... in order; sentences are separated by a blank line"
_FIX_TREE = "every word needs one HEAD: 0 for the single root or the ID of another word of the same sentence"


def _show(value: str, limit: int = 40) -> str:
    """Quote a value from the file for a one-line message (escaped, shortened)."""
    if len(value) > limit:
        value = value[:limit] + "..."
    return repr(value)


def _read_text(source: str) -> str:
    """Read ``source`` as strict UTF-8 (a leading BOM is dropped)."""
    return read_text_utf8(source, "CoNLL-U")


def _find_cycle(heads: list[int]) -> list[int] | None:
    """Return the word IDs of a cycle in ``heads`` (starting at its smallest ID), or None."""
    state = [0] * (len(heads) + 1)  # 0 unseen, 1 on the current path, 2 reaches the root
    state[0] = 2
    for start in range(1, len(heads) + 1):
        path: list[int] = []
        node = start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = heads[node - 1]
        if state[node] == 1:
            cycle = path[path.index(node) :]
            first = cycle.index(min(cycle))
            return cycle[first:] + cycle[:first]
        for visited in path:
            state[visited] = 2
    return None


class _Block:
    """The lines of one sentence collected while reading."""

    __slots__ = ("comments", "heads", "lines", "rows", "skipped", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.comments: list[str] = []
        self.rows: list[list[str]] = []
        self.lines: list[int] = []
        self.heads: list[int | None] = []
        self.skipped = 0


def _finish(block: _Block, source: str) -> Sentence:
    """Validate a collected block and turn it into a ``Sentence``."""
    rows = block.rows
    if not rows:
        if block.skipped:
            problem = "sentence has no word lines, only multiword-token or empty-node lines"
        else:
            problem = "comment lines are not followed by any word lines"
        raise DataError(
            source,
            block.start,
            problem,
            "add the sentence's word lines or remove these lines",
        )
    n = len(rows)
    raw_heads = block.heads
    heads: list[int] | None = None
    deprels: list[str] | None = None
    if None in raw_heads:
        if any(h is not None for h in raw_heads):
            i = raw_heads.index(None)
            raise DataError(
                source,
                block.lines[i],
                f"word {i + 1} has HEAD _ but other words of the sentence have numeric HEADs",
                "give every word a HEAD, or set HEAD to _ for all words of the sentence",
            )
    else:
        heads = [h for h in raw_heads if h is not None]  # no None here: just narrows the type
        roots: list[int] = []
        for i, h in enumerate(heads):
            if h > n:
                raise DataError(
                    source,
                    block.lines[i],
                    f"HEAD {h} of word {i + 1} is out of range: the sentence has {n} words",
                    f"HEAD must be 0 for the root or a word ID from 1 to {n}",
                )
            if h == 0:
                roots.append(i)
        if not roots:
            raise DataError(
                source,
                block.lines[0],
                "sentence has no root (no word with HEAD 0)",
                _FIX_TREE,
            )
        if len(roots) > 1:
            raise DataError(
                source,
                block.lines[roots[1]],
                f"sentence has {len(roots)} roots: word {roots[1] + 1} has HEAD 0 "
                f"but word {roots[0] + 1} is already the root",
                "a sentence must have exactly one word with HEAD 0; attach the others to a word",
            )
        cycle = _find_cycle(heads)
        if cycle is not None:
            chain = " -> ".join(str(w) for w in [*cycle, cycle[0]])
            raise DataError(
                source,
                block.lines[cycle[0] - 1],
                f"HEADs form a cycle through words {chain}",
                "every word must reach the root (HEAD 0) by following HEADs",
            )
        deprels = [row[_DEPREL] for row in rows]
    return Sentence(
        words=[row[_FORM] for row in rows],
        upos=_tags(rows, _UPOS),
        heads=heads,
        deprels=deprels,
        rows=rows,
        comments=block.comments,
        source=source,
        line=block.start,
        xpos=_tags(rows, _XPOS),
        feats=[row[_FEATS] for row in rows],
    )


def _tags(rows: list[list[str]], column: int) -> list[str] | None:
    """The column's tags, None when every one is ``_``."""
    tags = [row[column] for row in rows]
    return None if all(tag == "_" for tag in tags) else tags


def _parse_id(text: str, source: str, lineno: int) -> int | None:
    """Parse an ID with ``conllu``: the word number, None for ``n-m``/``n.m``; else DataError."""
    try:
        word_id = parse_id_value(text)
    except ParseException:
        word_id = None
    if word_id is None:
        raise DataError(
            source,
            lineno,
            f"invalid word ID {_show(text)}",
            "an ID must be a word number (1, 2, ...), a multiword-token range n-m or an empty node n.m",
        )
    return word_id if isinstance(word_id, int) else None


def _parse_head(text: str, word_id: int, source: str, lineno: int) -> int:
    """Parse a HEAD other than ``_`` with ``conllu``; DataError unless a non-negative integer."""
    try:
        head = parse_int_value(text)
    except ParseException:
        head = None
    if head is None:
        raise DataError(
            source,
            lineno,
            f"HEAD {_show(text)} of word {word_id} is not an integer",
            _FIX_TREE,
        )
    if head < 0:
        raise DataError(source, lineno, f"HEAD {head} of word {word_id} is negative", _FIX_TREE)
    return head


def read_conllu(path: str | Path) -> list[Sentence]:
    """Read a CoNLL-U file into validated ``Sentence`` objects (see the module docstring)."""
    # The reader creates ~10 small objects per word and no reference cycles; pausing the
    # cyclic garbage collector meanwhile makes reading large files about twice as fast.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _read(str(path))
    finally:
        if was_enabled:
            gc.enable()


def _read(source: str) -> list[Sentence]:
    """Body of ``read_conllu``."""
    text = _read_text(source)
    sentences: list[Sentence] = []
    block: _Block | None = None
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if "\r" in line:
            raise DataError(
                source,
                lineno,
                "carriage return (CR) inside a line",
                "end lines with LF or CR LF only",
            )
        if not line or line.isspace():
            if block is not None:
                sentences.append(_finish(block, source))
                block = None
            continue
        if block is None:
            block = _Block(lineno)
        if line[0] == "#":
            block.comments.append(line)
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            spaces = " (the line has no tabs: columns must be separated by tabs, not spaces)"
            raise DataError(
                source,
                lineno,
                f"expected 10 tab-separated columns, found {len(cols)}" + (spaces if len(cols) == 1 else ""),
                _FIX_COLUMNS,
            )
        if "" in cols:
            col = cols.index("")
            raise DataError(
                source,
                lineno,
                f"column {col + 1} ({COLUMNS[col]}) is empty",
                "write _ for an unknown value",
            )
        id_text = cols[_ID]
        expected = len(block.rows) + 1
        # Fast paths for the usual plain integers; anything else goes to conllu's parsers.
        if id_text != str(expected):
            word_id = _parse_id(id_text, source, lineno)
            if word_id is None:  # n-m multiword token or n.m empty node
                block.skipped += 1
                continue
            if word_id == 0:
                problem = "word ID 0 is not allowed (IDs start at 1)"
            elif word_id < expected:
                problem = f"duplicate word ID {word_id} (expected {expected})"
            else:
                problem = f"non-consecutive word ID {word_id} (expected {expected})"
            raise DataError(source, lineno, problem, _FIX_IDS)
        head_text = cols[_HEAD]
        if head_text.isdigit() and head_text.isascii() and (head_text[0] != "0" or len(head_text) == 1):
            head: int | None = int(head_text)
        elif head_text == "_":
            head = None
        else:
            head = _parse_head(head_text, expected, source, lineno)
        block.rows.append(cols)
        block.lines.append(lineno)
        block.heads.append(head)
    if block is not None:  # no blank line after the last sentence: accepted
        sentences.append(_finish(block, source))
    if not sentences:
        raise DataError(
            source,
            1,
            "file contains no sentences",
            "give a CoNLL-U file with at least one sentence",
        )
    return sentences


def _check_field(value: object, what: str) -> str:
    """Return ``value`` as a CoNLL-U field, or raise ValueError if it cannot be one."""
    text = str(value)
    if not text or "\t" in text or "\n" in text or "\r" in text:
        raise ValueError(f"cannot write {what} {text!r}: CoNLL-U fields must be non-empty without tabs or newlines")
    return text


def _format_sentence(sentence: Sentence, index: int, columns: dict[int, Sequence | None]) -> str:
    """Format one sentence as CoNLL-U lines ending with a blank line; ``columns``: column index -> values."""
    n = len(sentence.words)
    where = f"sentence {index}" + (f" ({sentence.source}:{sentence.line})" if sentence.source else "")
    if n == 0:
        raise ValueError(f"cannot write {where}: it has no words")
    for column, values in columns.items():
        if values is not None and len(values) != n:
            raise ValueError(f"{COLUMNS[column]} for {where} has {len(values)} values but the sentence has {n} words")
    lines: list[str] = []
    for comment in sentence.comments:
        if "\n" in comment or "\r" in comment:
            raise ValueError(f"cannot write comment {comment!r} of {where}: it contains a line break")
        lines.append(comment if comment.startswith("#") else "# " + comment)
    if sentence.rows is not None:
        if len(sentence.rows) != n or any(len(row) != 10 for row in sentence.rows):
            raise ValueError(f"rows of {where} must be {n} lists of 10 columns")
        rows = [list(row) for row in sentence.rows]
    else:
        def field(values, i: int) -> str:
            return "_" if values is None else str(values[i])

        rows = [
            [str(i + 1), word, "_", field(sentence.upos, i), field(sentence.xpos, i), field(sentence.feats, i),
             field(sentence.heads, i), field(sentence.deprels, i), "_", "_"]
            for i, word in enumerate(sentence.words)
        ]
    for i, row in enumerate(rows):
        for column, values in columns.items():
            if values is None:
                continue
            if column == _HEAD:
                head = int(values[i])
                if not 0 <= head <= n:
                    raise ValueError(f"predicted head {head} of word {i + 1} in {where} is not in 0..{n}")
                row[column] = str(head)
            else:
                row[column] = values[i]
        lines.append("\t".join(_check_field(value, COLUMNS[c]) for c, value in enumerate(row)))
    lines.append("")
    return "\n".join(lines) + "\n"


def write_conllu(
    sentences: Sequence[Sentence],
    path: str | Path,
    *,
    heads: Sequence[Sequence[int] | None] | None = None,
    deprels: Sequence[Sequence[str] | None] | None = None,
    upos: Sequence[Sequence[str] | None] | None = None,
    columns: Mapping[str, Sequence[Sequence[str] | None]] | None = None,
) -> None:
    """Write ``sentences`` to ``path`` as CoNLL-U, atomically.

    ``columns`` maps a column name of :data:`COLUMNS` (``UPOS``, ``XPOS``, ``FEATS``, ``HEAD``, ``DEPREL``, ...)
    to one list of values per sentence (or ``None`` for a sentence to keep) that replaces that column;
    ``heads``/``deprels``/``upos`` are the same for HEAD, DEPREL and UPOS. All other columns are copied from
    ``Sentence.rows``, or built from the sentence's fields (``_`` where it has none) when it has no rows.
    Predicted heads must lie in 0..n; they are written as given, so decode them into a
    tree if the file must be read back or scored. Raises ValueError for inconsistent
    arguments and DataError if the file cannot be written.
    """
    sentences = list(sentences)
    given = dict(columns or {})
    for column, values in ((_HEAD, heads), (_DEPREL, deprels), (_UPOS, upos)):
        if values is not None:
            given[COLUMNS[column]] = values
    unknown = sorted(set(given) - set(COLUMNS))
    if unknown:
        raise ValueError(f"no CoNLL-U column {', '.join(unknown)}; the columns are {' '.join(COLUMNS)}")
    for name, values in given.items():
        if values is not None and len(values) != len(sentences):
            raise ValueError(f"{name} has {len(values)} entries but there are {len(sentences)} sentences")
    chunks = [
        _format_sentence(sentence, i, {COLUMNS.index(name): values[i] for name, values in given.items()
                                       if values is not None})
        for i, sentence in enumerate(sentences)
    ]
    write_text(path, "".join(chunks))
