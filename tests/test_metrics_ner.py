"""NER scores: conlleval semantics on IOB1/IOB2, and scheme conversion."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subprobe.errors import ConfigError
from subprobe.metrics.ner import convert_scheme, extract_chunks, ner_scores
from tests import oracle

# --- an independent port of conlleval's streaming chunk counter (the reference) ---------------


def _split(tag: str) -> tuple[str, str]:
    if "-" in tag:
        prefix, typ = tag.split("-", 1)
        return prefix, typ
    return tag, ""


def _end_of_chunk(prev: str, tag: str, prev_type: str, typ: str) -> bool:
    pairs = {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"), ("E", "E"), ("E", "I"), ("E", "O")}
    return (prev, tag) in pairs or (prev not in ("O", ".") and prev_type != typ)


def _start_of_chunk(prev: str, tag: str, prev_type: str, typ: str) -> bool:
    pairs = {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"), ("E", "E"), ("E", "I"), ("O", "E")}
    return (prev, tag) in pairs or (tag not in ("O", ".") and prev_type != typ)


def conlleval_counts(gold: list[list[str]], pred: list[list[str]]) -> tuple[Counter, Counter, Counter]:
    """(correct, gold, guessed) chunk counts per type, as conlleval.pl counts them."""
    correct: Counter = Counter()
    found_gold: Counter = Counter()
    found_pred: Counter = Counter()
    in_correct = False
    last_g, last_gt, last_p, last_pt = "O", "", "O", ""
    stream = []
    for g_sent, p_sent in zip(gold, pred, strict=True):
        stream.extend(zip(g_sent, p_sent, strict=True))
        stream.append(("O", "O"))  # the blank line between sentences
    for g_tag, p_tag in stream:
        g, gt = _split(g_tag)
        p, pt = _split(p_tag)
        if in_correct:
            g_end = _end_of_chunk(last_g, g, last_gt, gt)
            p_end = _end_of_chunk(last_p, p, last_pt, pt)
            if g_end and p_end and last_gt == last_pt:
                in_correct = False
                correct[last_gt] += 1
            elif g_end != p_end or gt != pt:
                in_correct = False
        g_start = _start_of_chunk(last_g, g, last_gt, gt)
        p_start = _start_of_chunk(last_p, p, last_pt, pt)
        if g_start and p_start and gt == pt:
            in_correct = True
        if g_start:
            found_gold[gt] += 1
        if p_start:
            found_pred[pt] += 1
        last_g, last_gt, last_p, last_pt = g, gt, p, pt
    if in_correct:
        correct[last_gt] += 1
    return correct, found_gold, found_pred


TAGS = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]


@st.composite
def gold_pred(draw: st.DrawFn) -> tuple[list[list[str]], list[list[str]]]:
    lengths = draw(st.lists(st.integers(0, 8), min_size=1, max_size=5))
    tag = st.sampled_from(TAGS)
    gold = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    pred = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    return gold, pred


@settings(max_examples=400, deadline=None)
@given(gold_pred())
def test_matches_conlleval_port(data: tuple[list[list[str]], list[list[str]]]) -> None:
    gold, pred = data
    correct, n_gold, n_pred = conlleval_counts(gold, pred)
    r = ner_scores(gold, pred)
    assert r["n_correct"] == sum(correct.values())
    assert r["n_gold"] == sum(n_gold.values())
    assert r["n_pred"] == sum(n_pred.values())
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx(oracle.entity_prf(gold, pred))
    assert [extract_chunks(t) for t in gold] == [oracle.chunks(t) for t in gold]
    for typ, scores in r["per_type"].items():
        assert scores["support"] == n_gold[typ]
        p = correct[typ] / n_pred[typ] if n_pred[typ] else 0.0
        assert scores["precision"] == pytest.approx(p)


# --- hand-made cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "chunks"),
    [
        (["I-PER", "I-PER"], [("PER", 0, 1)]),
        (["I-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),
        (["O", "I-LOC"], [("LOC", 1, 1)]),
        (["I-LOC", "I-ORG"], [("LOC", 0, 0), ("ORG", 1, 1)]),
        (["B-PER", "I-PER", "O"], [("PER", 0, 1)]),
        (["O", "I-MISC", "I-MISC"], [("MISC", 1, 2)]),
        (["B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"], [("LOC", 0, 0), ("LOC", 1, 2), ("ORG", 4, 4)]),
        (["B-PER", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 1)]),
        ([], []),
    ],
)
def test_chunk_rules(tags: list[str], chunks: list[tuple[str, int, int]]) -> None:
    assert extract_chunks(tags) == chunks
    assert oracle.chunks(tags) == chunks


def test_iob1_scores_by_hand() -> None:
    gold = [
        ["I-PER", "I-PER", "O", "I-LOC"],  # PER(0,1), LOC(3,3) at sentence end
        ["I-ORG", "B-ORG", "O"],  # ORG(0,0), ORG(1,1)
    ]
    pred = [
        ["I-PER", "I-PER", "O", "I-ORG"],  # PER right, ORG(3,3) wrong type
        ["I-ORG", "I-ORG", "O"],  # ORG(0,1): merges the two gold ORGs -> wrong
    ]
    r = ner_scores(gold, pred, scheme="iob1")
    assert (r["n_gold"], r["n_pred"], r["n_correct"]) == (4, 3, 1)
    assert r["precision"] == pytest.approx(1 / 3)
    assert r["recall"] == pytest.approx(1 / 4)
    assert r["f1"] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4))
    assert r["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert r["per_type"]["ORG"]["support"] == 2
    assert r["per_type"]["ORG"]["precision"] == 0.0
    assert r["per_type"]["LOC"]["recall"] == 0.0
    assert r["accuracy"] == pytest.approx(5 / 7)


def test_sentence_boundary_ends_chunks() -> None:
    gold = [["O", "I-PER"], ["I-PER", "O"]]  # two entities, not one across sentences
    pred = [["O", "I-PER"], ["I-PER", "O"]]
    r = ner_scores(gold, pred)
    assert r["n_gold"] == 2 and r["f1"] == 1.0


def test_iob2_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
    r = ner_scores(gold, pred, scheme="iob2")
    assert (r["n_gold"], r["n_pred"], r["n_correct"]) == (3, 2, 1)
    assert r["precision"] == pytest.approx(0.5)
    assert r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(0.4)


def test_no_entities_and_errors() -> None:
    r = ner_scores([["O", "O"]], [["O", "O"]])
    assert (r["f1"], r["precision"], r["recall"]) == (0.0, 0.0, 0.0)
    assert r["per_type"] == {}
    with pytest.raises(ValueError):
        ner_scores([["O"]], [["O", "O"]])
    with pytest.raises(ValueError):
        ner_scores([["O"]], [])
    with pytest.raises(ValueError):
        ner_scores([["PER"]], [["O"]])
    with pytest.raises(ConfigError):
        ner_scores([["O"]], [["O"]], scheme="bioes")


@pytest.mark.parametrize(
    ("iob1", "iob2"),
    [
        (["I-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),
        (["I-PER", "B-PER", "I-PER"], ["B-PER", "B-PER", "I-PER"]),
        (["I-LOC", "I-ORG", "O", "I-ORG"], ["B-LOC", "B-ORG", "O", "B-ORG"]),
        (["O", "O"], ["O", "O"]),
    ],
)
def test_convert_scheme(iob1: list[str], iob2: list[str]) -> None:
    assert convert_scheme(iob1, "iob1", "iob2") == iob2
    assert convert_scheme(iob2, "iob2", "iob1") == iob1
    assert convert_scheme(iob1, "iob1", "iob1") == iob1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(TAGS), max_size=12))
def test_convert_scheme_preserves_entities(tags: list[str]) -> None:
    as2 = convert_scheme(tags, "iob1", "iob2")
    as1 = convert_scheme(as2, "iob2", "iob1")
    assert extract_chunks(as2) == extract_chunks(tags) == extract_chunks(as1)
    # IOB2 output: every entity starts with B-; IOB1 output: B- only after the same type
    for typ, start, _ in extract_chunks(as2):
        assert as2[start] == f"B-{typ}"
    for i, t in enumerate(as1):
        if t.startswith("B-"):
            assert i > 0 and as1[i - 1][2:] == t[2:]
    assert convert_scheme(as1, "iob1", "iob2") == as2
