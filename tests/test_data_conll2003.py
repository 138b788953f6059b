"""CoNLL-2003 reader: format, scheme detection, errors with line numbers, the real dev file."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from subprobe.data.conll2003 import read_conll2003
from subprobe.errors import ConfigError, DataError
from subprobe.metrics.ner import extract_chunks

IOB1_FILE = """\
-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP I-NP I-LOC

-DOCSTART- -X- -X- O

Germany NNP I-NP I-LOC
Spain NNP I-NP B-LOC
"""


def write(tmp_path: Path, text: str | bytes, name: str = "data.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_reads_sentences_and_detects_iob1(tmp_path: Path) -> None:
    path = write(tmp_path, IOB1_FILE)
    sents, scheme = read_conll2003(path)
    assert scheme == "iob1"
    assert [s.words for s in sents] == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn"],
        ["BRUSSELS"],
        ["Germany", "Spain"],
    ]
    assert sents[0].ner == ["I-ORG", "O", "I-MISC", "O", "O"]
    assert sents[3].ner == ["I-LOC", "B-LOC"]
    assert [s.line for s in sents] == [3, 9, 12, 16]
    assert all(s.source == str(path) for s in sents)
    assert sents[0].heads is None and sents[0].upos is None


def test_drop_single_token_sentences(tmp_path: Path) -> None:
    sents, _ = read_conll2003(write(tmp_path, IOB1_FILE), keep_single_token=False)
    assert [len(s) for s in sents] == [5, 2, 2]


def test_two_columns_iob2_and_crlf(tmp_path: Path) -> None:
    text = "John B-PER\r\nSmith I-PER\r\nvisited O\r\nParis B-LOC\r\n\r\nHi O\r\n"
    sents, scheme = read_conll2003(write(tmp_path, text))
    assert scheme == "iob2"
    assert sents[0].words == ["John", "Smith", "visited", "Paris"]
    assert sents[0].ner == ["B-PER", "I-PER", "O", "B-LOC"]
    assert len(sents) == 2
    assert read_conll2003(write(tmp_path, text), scheme="iob2")[1] == "iob2"
    # explicit iob1 accepts B- starts (conlleval reads them the same way)
    assert read_conll2003(write(tmp_path, text), scheme="iob1")[1] == "iob1"


def test_explicit_iob2_rejects_i_start(tmp_path: Path) -> None:
    text = "A B-PER\nB I-PER\nC O\nD I-LOC\n"
    with pytest.raises(DataError, match=r"data\.txt:4: I-LOC starts an entity") as err:
        read_conll2003(write(tmp_path, text), scheme="iob2")
    assert err.value.line == 4
    # I-X after a different type also starts an entity
    with pytest.raises(DataError, match=r":2:"):
        read_conll2003(write(tmp_path, "A B-PER\nB I-LOC\n"), scheme="iob2")
    # I-X at the start of a sentence too
    with pytest.raises(DataError, match=r":3:"):
        read_conll2003(write(tmp_path, "A B-PER\n\nB I-PER\n"), scheme="iob2")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a NN O\nb NN I-LOC\nc O\n", 3, "found 2 columns but line 1 has 3"),
        ("a O\nb\n", 2, "at least 2 columns"),
        ("a O\n\nb PER\n", 3, "invalid NER tag 'PER'"),
        ("a O\nb B-\n", 2, "invalid NER tag 'B-'"),
        ("a O\nb X-PER\n", 2, "invalid NER tag"),
    ],
)
def test_format_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message) as err:
        read_conll2003(path)
    assert err.value.line == line
    assert f"{path}:{line}:" in str(err.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "a O\nb O\n\nM\xfcller I-PER\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        read_conll2003(path)
    assert err.value.line == 4
    assert "iconv" in str(err.value)


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- O O\n\n"])
def test_empty(tmp_path: Path, text: str) -> None:
    with pytest.raises(DataError, match="empty|no sentences"):
        read_conll2003(write(tmp_path, text))


def test_missing_file_and_bad_scheme(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_conll2003(tmp_path / "nope.txt")
    with pytest.raises(ConfigError):
        read_conll2003(write(tmp_path, "a O\n"), scheme="bio")


def _data_root() -> Path:
    env = os.environ.get("SUBPROBE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


REAL_DEV = _data_root() / "conll2003" / "eng.testa"


@pytest.mark.skipif(not REAL_DEV.is_file(), reason="CoNLL-2003 eng.testa not available")
def test_real_dev_file() -> None:
    sents, scheme = read_conll2003(REAL_DEV)
    assert scheme == "iob1"
    assert len(sents) == 3250
    assert sum(len(s) for s in sents) == 51362
    # entity counts from SOURCE.md (conlleval's IOB1 rules)
    per_type = Counter(c[0] for s in sents for c in extract_chunks(s.ner or []))
    assert per_type == {"PER": 1842, "LOC": 1837, "ORG": 1341, "MISC": 922}
    kept, _ = read_conll2003(REAL_DEV, keep_single_token=False)
    assert len(kept) == 3235
    with pytest.raises(DataError, match="IOB2 forbids"):
        read_conll2003(REAL_DEV, scheme="iob2")
