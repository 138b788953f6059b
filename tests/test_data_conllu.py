"""Tests for subprobe.data.conllu: reading, validation, writing and round trips."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subprobe.data.conllu import read_conllu, write_conllu
from subprobe.data.records import Sentence
from subprobe.errors import DataError

TWO_SENTENCES = (
    "# sent_id = s1\n"
    "# text = The cat sat.\n"
    "1\tThe\tthe\tDET\tDT\tDefinite=Def\t2\tdet\t2:det\t_\n"
    "2\tcat\tcat\tNOUN\tNN\tNumber=Sing\t3\tnsubj\t3:nsubj\t_\n"
    "3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t0:root\tSpaceAfter=No\n"
    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t3:punct\t_\n"
    "\n"
    "1\tHello\thello\tINTJ\tUH\t_\t0\troot\t0:root\t_\n"
    "2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t1:punct\t_\n"
    "\n"
)


def row(i: int, form: str, head: str, deprel: str = "dep", upos: str = "X") -> str:
    """One CoNLL-U word line."""
    return f"{i}\t{form}\t{form}\t{upos}\t_\t_\t{head}\t{deprel}\t_\t_\n"


def write_text(tmp_path: Path, text: str, name: str = "data.conllu") -> Path:
    """Write ``text`` as UTF-8 into ``tmp_path/name``."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def without_source(sentences: list[Sentence]) -> list[Sentence]:
    """The sentences with ``source`` cleared, to compare files read from different paths."""
    return [dataclasses.replace(s, source="") for s in sentences]


# --------------------------------------------------------------------------- reading


def test_reads_two_sentences(tmp_path: Path) -> None:
    path = write_text(tmp_path, TWO_SENTENCES)
    first, second = read_conllu(path)
    assert first.words == ["The", "cat", "sat", "."]
    assert first.upos == ["DET", "NOUN", "VERB", "PUNCT"]
    assert first.heads == [2, 3, 0, 3]
    assert first.deprels == ["det", "nsubj", "root", "punct"]
    assert first.comments == ["# sent_id = s1", "# text = The cat sat."]
    assert first.rows is not None and first.rows[2] == [
        "3", "sat", "sit", "VERB", "VBD", "_", "0", "root", "0:root", "SpaceAfter=No",
    ]  # fmt: skip
    assert (first.source, first.line) == (str(path), 1)
    assert first.ner is None
    assert second.words == ["Hello", "!"]
    assert second.heads == [0, 1]
    assert second.deprels == ["root", "punct"]
    assert second.comments == []
    assert second.line == 8
    assert len(second) == 2


def test_accepts_str_path(tmp_path: Path) -> None:
    path = write_text(tmp_path, TWO_SENTENCES)
    assert [s.words for s in read_conllu(str(path))] == [s.words for s in read_conllu(path)]


def test_skips_multiword_tokens_and_empty_nodes(tmp_path: Path) -> None:
    text = (
        "# text = don't go\n"
        "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        + row(1, "do", "3", "aux")
        + row(2, "n't", "3", "advmod")
        + row(3, "go", "0", "root")
        + "3.1\tgo\tgo\tVERB\t_\t_\t_\t_\t3:conj\t_\n"
        + "\n"
        + "0.1\tnull\t_\t_\t_\t_\t_\t_\t_\t_\n"
        + row(1, "yes", "0", "root")
    )
    first, second = read_conllu(write_text(tmp_path, text))
    assert first.words == ["do", "n't", "go"]
    assert first.heads == [3, 3, 0]
    assert first.rows is not None and [r[0] for r in first.rows] == ["1", "2", "3"]
    assert second.words == ["yes"]
    assert second.line == 8  # the sentence starts at its first line, the empty node


def test_missing_final_blank_line_is_accepted(tmp_path: Path) -> None:
    no_blank = TWO_SENTENCES.removesuffix("\n")
    no_newline = TWO_SENTENCES.removesuffix("\n\n")
    for name, text in (("a.conllu", no_blank), ("b.conllu", no_newline)):
        sentences = read_conllu(write_text(tmp_path, text, name))
        assert [s.words for s in sentences] == [["The", "cat", "sat", "."], ["Hello", "!"]]


def test_crlf_bom_and_extra_blank_lines(tmp_path: Path) -> None:
    text = "\ufeff\n\n" + TWO_SENTENCES.replace("\n\n", "\n\n\n \n").replace("\n", "\r\n")
    first, second = read_conllu(write_text(tmp_path, text))
    assert first.line == 3
    assert first.rows is not None and first.rows[2][-1] == "SpaceAfter=No"
    assert first.comments[0] == "# sent_id = s1"
    assert second.words == ["Hello", "!"]
    assert second.line == 12


def test_all_underscore_heads_give_none(tmp_path: Path) -> None:
    text = row(1, "a", "_", "_") + row(2, "b", "_", "_", upos="_")
    (sentence,) = read_conllu(write_text(tmp_path, text))
    assert sentence.heads is None
    assert sentence.deprels is None
    assert sentence.upos == ["X", "_"]


def test_all_underscore_upos_gives_none(tmp_path: Path) -> None:
    text = row(1, "a", "0", "root", upos="_") + row(2, "b", "1", "dep", upos="_")
    (sentence,) = read_conllu(write_text(tmp_path, text))
    assert sentence.upos is None
    assert sentence.heads == [0, 1]


# --------------------------------------------------------------------------- validation

ROOT = row(1, "a", "0", "root")
BAD_CASES = {
    "nine columns": (ROOT + "2\tb\tb\tX\t_\t_\t1\tdep\t_\n", 2, "found 9"),
    "eleven columns": (ROOT + row(2, "b", "1").replace("\n", "\t_\n"), 2, "found 11"),
    "spaces not tabs": (ROOT + "2 b b X _ _ 1 dep _ _\n", 2, "found 1"),
    "empty column": (row(1, "a", "0", "root").replace("\ta\t", "\t\t", 1), 1, "column 2 (FORM) is empty"),
    "head not integer": ("# c\n" + ROOT + row(2, "b", "x"), 3, "HEAD 'x' of word 2 is not an integer"),
    "head decimal": (ROOT + row(2, "b", "1.1"), 2, "not an integer"),
    "head negative": (ROOT + row(2, "b", "-1"), 2, "HEAD -1 of word 2 is negative"),
    "head out of range": (ROOT + row(2, "b", "3") + row(3, "c", "9"), 3, "HEAD 9 of word 3 is out of range"),
    "no root": ("# c\n" + row(1, "a", "2") + row(2, "b", "1"), 2, "no root"),
    "two roots": (ROOT + row(2, "b", "1") + row(3, "c", "0"), 3, "2 roots: word 3 has HEAD 0 but word 1"),
    "cycle": (ROOT + row(2, "b", "4") + row(3, "c", "2") + row(4, "d", "3"), 2, "cycle through words 2 -> 4 -> 3 -> 2"),
    "self loop": (row(1, "a", "1") + row(2, "b", "0", "root"), 1, "cycle through words 1 -> 1"),
    "mixed underscore heads": (ROOT + row(2, "b", "1") + row(3, "c", "_"), 3, "word 3 has HEAD _"),
    "duplicate id": (ROOT + row(2, "b", "1") + row(2, "c", "1"), 3, "duplicate word ID 2"),
    "gap in ids": (ROOT + row(3, "b", "1"), 2, "non-consecutive word ID 3 (expected 2)"),
    "id zero": (row(0, "a", "0"), 1, "word ID 0"),
    "id not integer": (ROOT + row(2, "b", "1").replace("2", "two", 1), 2, "invalid word ID 'two'"),
    "id bad range": (ROOT + "3-2\tbc\t_\t_\t_\t_\t_\t_\t_\t_\n", 2, "invalid word ID '3-2'"),
    "id negative": (ROOT + row(2, "b", "1").replace("2", "-2", 1), 2, "invalid word ID '-2'"),
    "id underscore": (ROOT + row(2, "b", "1").replace("2", "_", 1), 2, "invalid word ID '_'"),
    "comments only": (ROOT + "\n# orphan\n# comment\n", 3, "comment lines are not followed by any word lines"),
    "only multiword": ("1-2\tab\t_\t_\t_\t_\t_\t_\t_\t_\n\n" + ROOT, 1, "no word lines"),
    "error in later sentence": (TWO_SENTENCES + ROOT + row(2, "b", "7"), 12, "HEAD 7"),
    "carriage return inside line": (ROOT + "2\tb\rx\tb\tX\t_\t_\t1\tdep\t_\t_\n", 2, "carriage return"),
    "empty file": ("", 1, "no sentences"),
    "blank lines only": ("\n \n\n", 1, "no sentences"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_invalid_input_raises_data_error_with_line(tmp_path: Path, case: str) -> None:
    text, line, fragment = BAD_CASES[case]
    path = write_text(tmp_path, text, "bad-file.conllu")
    with pytest.raises(DataError) as info:
        read_conllu(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert "\n" not in message
    assert message.endswith(")")  # every message says what to do, in parentheses
    assert info.value.line == line


def test_not_utf8_names_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conllu"
    data = TWO_SENTENCES.encode("utf-8").replace(b"Hello", b"H\xe9llo")
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_conllu(path)
    message = str(info.value)
    offset = data.index(b"\xe9")
    assert message.startswith(f"{path}:8: not valid UTF-8: byte 0xe9 at byte offset {offset} ")
    assert "\n" not in message


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_conllu(tmp_path / "nope.conllu")
    with pytest.raises(DataError, match="directory"):
        read_conllu(tmp_path)


# --------------------------------------------------------------------------- writing


def test_round_trip_preserves_sentences_and_bytes(tmp_path: Path) -> None:
    original = read_conllu(write_text(tmp_path, TWO_SENTENCES))
    out = tmp_path / "out.conllu"
    write_conllu(original, out)
    assert out.read_text(encoding="utf-8") == TWO_SENTENCES
    assert without_source(read_conllu(out)) == without_source(original)


def test_writing_drops_multiword_and_empty_node_lines(tmp_path: Path) -> None:
    text = "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n" + row(1, "do", "0", "root") + row(2, "n't", "1")
    text += "2.1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n"
    sentences = read_conllu(write_text(tmp_path, text))
    out = tmp_path / "out.conllu"
    write_conllu(sentences, out)
    assert out.read_text(encoding="utf-8") == row(1, "do", "0", "root") + row(2, "n't", "1") + "\n"
    assert without_source(read_conllu(out)) == without_source(sentences)


def test_predictions_replace_exactly_head_and_deprel(tmp_path: Path) -> None:
    sentences = read_conllu(write_text(tmp_path, TWO_SENTENCES))
    out = tmp_path / "pred.conllu"
    heads = [[3, 3, 0, 2], [2, 0]]
    deprels = [["a", "b", "root", "c"], ["x", "root"]]
    write_conllu(sentences, out, heads=heads, deprels=deprels)
    gold_lines = TWO_SENTENCES.split("\n")
    pred_lines = out.read_text(encoding="utf-8").split("\n")
    assert len(pred_lines) == len(gold_lines)
    flat = [(str(h), d) for hs, ds in zip(heads, deprels, strict=True) for h, d in zip(hs, ds, strict=True)]
    word_lines = [(g, p) for g, p in zip(gold_lines, pred_lines, strict=True) if g and not g.startswith("#")]
    assert len(word_lines) == len(flat)
    for (gold, pred), (head, deprel) in zip(word_lines, flat, strict=True):
        g, p = gold.split("\t"), pred.split("\t")
        assert len(p) == 10
        assert (p[6], p[7]) == (head, deprel)
        assert p[:6] + p[8:] == g[:6] + g[8:]
    for gold, pred in zip(gold_lines, pred_lines, strict=True):
        if not gold or gold.startswith("#"):
            assert pred == gold
    reread = read_conllu(out)
    assert [s.heads for s in reread] == heads
    assert [s.deprels for s in reread] == deprels
    assert [s.upos for s in reread] == [s.upos for s in sentences]


def test_prediction_entries_may_be_none_and_upos_can_be_replaced(tmp_path: Path) -> None:
    sentences = read_conllu(write_text(tmp_path, TWO_SENTENCES))
    out = tmp_path / "pred.conllu"
    write_conllu(sentences, out, heads=[None, [2, 0]], upos=[["A", "B", "C", "D"], None])
    first, second = read_conllu(out)
    assert first.heads == sentences[0].heads
    assert first.upos == ["A", "B", "C", "D"]
    assert second.heads == [2, 0]
    assert second.upos == sentences[1].upos
    assert second.deprels == sentences[1].deprels


def test_bad_predictions_raise_value_error(tmp_path: Path) -> None:
    sentences = read_conllu(write_text(tmp_path, TWO_SENTENCES))
    out = tmp_path / "pred.conllu"
    with pytest.raises(ValueError, match="entries"):
        write_conllu(sentences, out, heads=[[2, 3, 0, 3]])
    with pytest.raises(ValueError, match="4 words"):
        write_conllu(sentences, out, heads=[[2, 0], [0, 1]])
    with pytest.raises(ValueError, match="not in 0..2"):
        write_conllu(sentences, out, heads=[None, [3, 0]])
    with pytest.raises(ValueError, match="tabs"):
        write_conllu(sentences, out, deprels=[None, ["a\tb", "root"]])
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.conllu"]


def test_writes_sentences_without_rows(tmp_path: Path) -> None:
    sentences = [
        Sentence(
            words=["Hi", "there"],
            upos=["INTJ", "ADV"],
            heads=[0, 1],
            deprels=["root", "advmod"],
            comments=["# id = 1", "plain"],
        ),
        Sentence(words=["x"]),
    ]
    out = tmp_path / "new.conllu"
    write_conllu(sentences, out)
    assert out.read_text(encoding="utf-8") == (
        "# id = 1\n# plain\n"
        "1\tHi\t_\tINTJ\t_\t_\t0\troot\t_\t_\n"
        "2\tthere\t_\tADV\t_\t_\t1\tadvmod\t_\t_\n\n"
        "1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n\n"
    )
    first, second = read_conllu(out)
    assert (first.words, first.upos, first.heads) == (["Hi", "there"], ["INTJ", "ADV"], [0, 1])
    assert first.deprels == ["root", "advmod"]
    assert (second.words, second.upos, second.heads, second.deprels) == (["x"], None, None, None)


def test_write_is_atomic_and_replaces_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "out.conllu"
    out.write_text("old\n", encoding="utf-8")
    sentences = read_conllu(write_text(tmp_path, TWO_SENTENCES))
    write_conllu(sentences, out)
    assert out.read_text(encoding="utf-8") == TWO_SENTENCES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.conllu", "out.conllu"]
    with pytest.raises(DataError, match="cannot write"):
        write_conllu(sentences, tmp_path / "missing-dir" / "out.conllu")


# --------------------------------------------------------------------------- properties

WORD = st.text(
    alphabet=st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs")),
    min_size=1,
    max_size=8,
)
LABEL = st.sampled_from(["nsubj", "obj", "det", "nmod:poss", "punct", "_"])
TAG = st.sampled_from(["NOUN", "VERB", "DET", "PUNCT", "X"])
COMMENT = st.text(alphabet=st.characters(blacklist_categories=("Zl", "Zp", "Cc", "Cs")), max_size=20).map(
    lambda s: "#" + s
)


@st.composite
def trees(draw: st.DrawFn) -> Sentence:
    """A random well-formed sentence: 1..15 words, a single-root acyclic tree."""
    n = draw(st.integers(min_value=1, max_value=15))
    order = draw(st.permutations(list(range(1, n + 1))))
    heads = [0] * n
    for k in range(1, n):  # attach each word to one placed earlier in the random order
        heads[order[k] - 1] = order[draw(st.integers(min_value=0, max_value=k - 1))]
    deprels = [("root" if h == 0 else draw(LABEL)) for h in heads]
    return Sentence(
        words=draw(st.lists(WORD, min_size=n, max_size=n)),
        upos=draw(st.lists(TAG, min_size=n, max_size=n)),
        heads=heads,
        deprels=deprels,
        comments=draw(st.lists(COMMENT, max_size=3)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=st.lists(trees(), min_size=1, max_size=4))
def test_random_trees_round_trip(tmp_path: Path, sentences: list[Sentence]) -> None:
    out = tmp_path / "trees.conllu"
    write_conllu(sentences, out)
    read = read_conllu(out)
    for got, want in zip(read, sentences, strict=True):
        assert (got.words, got.upos, got.heads, got.deprels, got.comments) == (
            want.words, want.upos, want.heads, want.deprels, want.comments,
        )  # fmt: skip
    again = tmp_path / "again.conllu"
    write_conllu(read, again)
    assert again.read_bytes() == out.read_bytes()
    assert without_source(read_conllu(again)) == without_source(read)


def _read_or_data_error(path: Path) -> None:
    """Reading must either succeed (with usable sentences) or raise DataError."""
    try:
        sentences = read_conllu(path)
    except DataError as err:
        assert str(path) in str(err)
        assert "\n" not in str(err)
        return
    assert sentences
    for s in sentences:
        assert s.words and s.rows is not None and len(s.rows) == len(s.words)
        if s.heads is not None:
            assert len(s.heads) == len(s.words) and s.heads.count(0) == 1
    write_conllu(sentences, path.with_suffix(".out"))  # whatever was read can be written


FIELD = st.sampled_from(["1", "2", "3", "0", "-1", "_", "1-2", "2.1", "x", "", " ", "é", "root"])
LINE = st.one_of(
    st.lists(FIELD, min_size=8, max_size=11).map("\t".join),
    st.sampled_from(["", "# c", "#", "  "]),
    st.text(max_size=12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.lists(LINE, max_size=12).map("\n".join)))
def test_arbitrary_text_parses_or_raises_data_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "any.conllu"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _read_or_data_error(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), prefix=st.sampled_from([b"", TWO_SENTENCES.encode()]))
def test_arbitrary_bytes_parse_or_raise_data_error(tmp_path: Path, data: bytes, prefix: bytes) -> None:
    path = tmp_path / "any.conllu"
    path.write_bytes(prefix + data)
    _read_or_data_error(path)


# --------------------------------------------------------------------------- real data


def _data_dir() -> Path | None:
    """The shared data directory: $SUBPROBE_DATA, else ../shared/data next to the repository."""
    env = os.environ.get("SUBPROBE_DATA")
    candidate = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def test_reads_real_ewt_dev(tmp_path: Path) -> None:
    data_dir = _data_dir()
    path = data_dir / "ud-english-ewt" / "en_ewt-ud-dev.conllu" if data_dir else None
    if path is None or not path.is_file():
        pytest.skip("UD English-EWT v2.1 not found (set SUBPROBE_DATA)")
    sentences = read_conllu(path)
    assert len(sentences) == 2002
    assert sum(len(s) for s in sentences) == 25148
    assert all(s.heads is not None and s.heads.count(0) == 1 for s in sentences)
    assert sentences[0].words[:3] == ["From", "the", "AP"]
    out = tmp_path / "dev.conllu"
    write_conllu(sentences, out)
    reread = read_conllu(out)
    strip = [dataclasses.replace(s, source="", line=0) for s in sentences]
    assert [dataclasses.replace(s, source="", line=0) for s in reread] == strip
