"""Fuzzed readers (issue 28, item 3): on any input the CoNLL-U, CoNLL-2003 and plain-text readers and the grid and
configuration loaders return data or raise the one-line user error (SubprobeError), never another exception;
predictions written by the tasks read back equal.

Hypothesis runs derandomized (the same examples in every run) with a bounded number of examples, so CI is fast
and stable; the inputs are built from the pieces these formats are made of (tabs, numbers, ``_``, tags, YAML
keys and values) so that most examples get deep into the readers, plus raw bytes and raw text.
"""

from __future__ import annotations

import dataclasses
import os
import string
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from subprobe.config import ProbeConfig
from subprobe.data.batching import Dataset, EncodedSentence
from subprobe.data.conll2003 import read_conll2003
from subprobe.data.conllu import read_conllu
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import SubprobeError
from subprobe.experiments.grids import load_grid
from subprobe.resolve import resolve
from subprobe.runs.predict import read_input
from subprobe.tasks.registry import get_task

#: SUBPROBE_FUZZ_EXAMPLES=5000 hunts longer, with fresh random examples (CI: 150 fixed ones per test)
HUNT = int(os.environ.get("SUBPROBE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=HUNT or 150, deadline=None, derandomize=not HUNT, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
ROUND_TRIP = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])


def read_or_user_error(reader, data: bytes | str, suffix: str = ".txt"):
    """``reader(path)`` on a file holding ``data``: its result, or None after a one-line SubprobeError. Any other
    exception fails the test (it is a bug)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        if isinstance(data, str):
            path.write_bytes(data.encode("utf-8"))
        else:
            path.write_bytes(data)
        try:
            return reader(path)
        except SubprobeError as exc:
            message = str(exc)
            assert message and "\n" not in message and "\r" not in message, repr(message)
            return None


# -- CoNLL-U ----------------------------------------------------------------------------------------------------

FIELD = st.one_of(
    st.sampled_from(["_", "", "0", "1", "2", "3", "10", "-1", "1-2", "2.1", "0.1", "x", "NOUN", "VERB", "root",
                     "nsubj", "a b", "٣", "1e3", " ", "_ "]),
    st.integers(-3, 12).map(str),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=6),
)
ROW = st.lists(FIELD, min_size=8, max_size=11).map(lambda cols: "\t".join(cols))
NUMBERED = st.builds(
    lambda i, form, upos, head, rel: "\t".join([i, form, "_", upos, "_", "_", head, rel, "_", "_"]),
    st.integers(0, 5).map(str), st.sampled_from(["the", "dog", "ran", "_"]), st.sampled_from(["DET", "NOUN", "_"]),
    st.sampled_from(["0", "1", "2", "3", "_", "x"]), st.sampled_from(["det", "root", "_"]),
)
LINE = st.one_of(ROW, NUMBERED, NUMBERED, st.sampled_from(["", " ", "# sent_id = 1", "#", "\r", "1-2\tdon't\t_\t_\t_"
                                                                 "\t_\t_\t_\t_\t_"]), st.text(max_size=20))
CONLLU_TEXT = st.lists(LINE, max_size=14).map("\n".join)


@FUZZ
@given(CONLLU_TEXT)
def test_conllu_reader_returns_sentences_or_one_error_line(text):
    sentences = read_or_user_error(read_conllu, text, ".conllu")
    if sentences is not None:
        assert sentences and all(isinstance(s, Sentence) and s.words for s in sentences)
        for s in sentences:
            if s.heads is not None:  # a tree: one root, every head a word of the sentence
                assert s.heads.count(0) == 1 and all(0 <= h <= len(s.words) for h in s.heads)


@FUZZ
@given(st.binary(max_size=200))
def test_conllu_and_conll2003_readers_on_raw_bytes(data):
    read_or_user_error(read_conllu, data, ".conllu")
    read_or_user_error(lambda p: read_conll2003(p)[0], data)


# -- CoNLL-2003 -------------------------------------------------------------------------------------------------

NER_TOKEN = st.sampled_from(["John", "NNP", "I-NP", "O", "B-PER", "I-PER", "I-LOC", "B-X", "B-", "I_PER", "-X-",
                             "-DOCSTART-", ".", "\t", "b-per"])
NER_LINE = st.one_of(st.lists(NER_TOKEN, max_size=5).map(" ".join), st.just(""), st.text(max_size=15))
NER_TEXT = st.lists(NER_LINE, max_size=14).map("\n".join)


@FUZZ
@given(NER_TEXT, st.sampled_from(["auto", "iob1", "iob2"]), st.booleans())
def test_conll2003_reader_returns_sentences_or_one_error_line(text, scheme, keep_single):
    read = read_or_user_error(lambda p: read_conll2003(p, scheme=scheme, keep_single_token=keep_single), text)
    if read is not None:
        sentences, found = read
        assert found in ("iob1", "iob2")
        assert all(len(s.words) == len(s.ner) for s in sentences)


# -- plain text (subprobe predict --input) ------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.text(max_size=80), CONLLU_TEXT, NER_TEXT), st.sampled_from(["upos", "dep", "ner"]),
       st.sampled_from(["auto", "text", "conllu", "conll2003"]))
def test_predict_input_reader_returns_sentences_or_one_error_line(text, task_name, fmt):
    task = get_task(task_name)
    read = read_or_user_error(lambda p: read_input(p, task, fmt), text)
    if read is not None:
        sentences, gold, found = read
        assert found in ("conllu", "conll2003", "text") and isinstance(gold, bool)
        assert sentences and all(s.words and all(w and not w.isspace() for w in s.words) for s in sentences)


# -- grid and configuration files -------------------------------------------------------------------------------

FIELDS = [f.name for f in dataclasses.fields(ProbeConfig)]
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from(["upos", "dep", "ner", "subnetwork", "mlp", "neuron", "4,4", "quick", "d", "cpu",
                                    "auto", "bf16", "fp32", "strided", "x"]), st.text(max_size=8))
KEY = st.one_of(st.sampled_from(FIELDS), st.sampled_from(FIELDS), st.text(max_size=6), st.integers(0, 3))
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(KEY, inner, max_size=3)), max_leaves=8)


def dump(data) -> str:
    return yaml.safe_dump(data, default_flow_style=None, allow_unicode=True)


GRID_DATA = st.fixed_dictionaries(
    {"axes": st.one_of(st.dictionaries(KEY, st.lists(st.one_of(SCALAR, st.dictionaries(KEY, SCALAR, max_size=3)),
                                                     max_size=3), max_size=3), VALUE)},
    optional={"name": st.one_of(st.text(max_size=5), VALUE), "profiles": st.one_of(
        st.dictionaries(st.sampled_from(["quick", "paper", "x"]), st.dictionaries(KEY, SCALAR, max_size=3),
                        max_size=2), VALUE), "other": VALUE},
)
YAML_TEXT = st.one_of(GRID_DATA.map(dump), VALUE.map(dump), st.text(max_size=60),
                      st.sampled_from(["[" * 2000, "a: &x [1]\nb: *x\n", "axes: {task: !!python/name:os.system}",
                                       "\ufeffaxes:\n  task: [upos]\n", "axes:\n\ttask: [upos]\n"]))


NASTY_YAML = ["[" * 2000, "{a: " * 500, "a: &x [1]\nb: *x\n", "axes: {task: !!python/object/apply:os.system [true]}"]


@FUZZ
@given(YAML_TEXT)
@example(NASTY_YAML[0])
@example(NASTY_YAML[1])
@example(NASTY_YAML[3])
@example('name: "a\\nb"\naxes: {task: [upos]}\n')
def test_grid_loader_returns_a_grid_or_one_error_line(text):
    grid = read_or_user_error(lambda p: load_grid(str(p)), text, ".yaml")
    if grid is not None:  # a grid that loads gives points that are configurations, or one error line
        for profile in [None, *[p for p in grid.profiles if isinstance(p, str)]]:
            try:
                points = grid.points(profile)
            except SubprobeError as exc:
                assert "\n" not in str(exc)
                continue
            for point in points[:5]:
                try:
                    resolve(ProbeConfig(**point))
                except SubprobeError as exc:
                    assert "\n" not in str(exc)


CONFIG_TEXT = st.one_of(st.dictionaries(KEY, SCALAR, max_size=6).map(dump), YAML_TEXT)


@FUZZ
@given(CONFIG_TEXT)
@example(NASTY_YAML[0])
@example(NASTY_YAML[1])
@example("task: !!python/object/apply:os.system [true]")
@example('{"\\r": null}\n')  # found by fuzzing: a key with a line break broke the one-line error
def test_config_loader_returns_a_configuration_or_one_error_line(text):
    config = read_or_user_error(ProbeConfig.from_yaml, text, ".yaml")
    if config is not None:
        try:
            resolve(config)
        except SubprobeError as exc:
            assert "\n" not in str(exc)


# -- predictions written and read back --------------------------------------------------------------------------

WORD = st.text(string.ascii_letters + string.digits + ".,'-éü", min_size=1, max_size=6)
UPOS = ["ADJ", "DET", "NOUN", "PUNCT", "VERB"]
RELS = ["det", "nsubj", "obj", "punct", "root"]
NER = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@st.composite
def trees(draw, n: int) -> list[int]:
    """Heads of a random dependency tree over n words (1-based, 0 = root)."""
    order = draw(st.permutations(range(1, n + 1)))
    heads = [0] * n
    for position, word in enumerate(order):
        heads[word - 1] = 0 if position == 0 else order[draw(st.integers(0, position - 1))]
    return heads


@st.composite
def treebanks(draw) -> list[Sentence]:
    sentences = []
    for _ in range(draw(st.integers(1, 4))):
        words = draw(st.lists(WORD, min_size=1, max_size=6))
        sentences.append(Sentence(words=words, upos=draw(st.lists(st.sampled_from(UPOS), min_size=len(words),
                                                                  max_size=len(words))),
                                  heads=draw(trees(len(words))),
                                  deprels=draw(st.lists(st.sampled_from(RELS), min_size=len(words),
                                                        max_size=len(words))),
                                  comments=draw(st.lists(st.sampled_from(["# sent_id = 7", "# text = x y"]),
                                                         max_size=2))))
    return sentences


def dataset(sentences: list[Sentence], gold: dict[str, list] | None = None) -> Dataset:
    """A Dataset holding ``sentences`` (only what the prediction writers read: sentence indices, gold labels)."""
    encoded = []
    for i, s in enumerate(sentences):
        n = len(s.words)
        labels = {k: np.asarray(v[i]) for k, v in (gold or {}).items()}
        encoded.append(EncodedSentence(i, np.zeros(n + 2, dtype=np.int64), np.arange(1, n + 1), np.arange(2, n + 2),
                                       labels))
    return Dataset("fuzz", sentences, encoded)


@ROUND_TRIP
@given(treebanks(), st.data())
def test_upos_and_dep_predictions_read_back_equal(sentences, data):
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.conllu"
        from subprobe.data.conllu import write_conllu

        write_conllu(sentences, source)
        read = read_conllu(source)  # as `subprobe predict` reads its input: rows and comments kept
        upos, dep = get_task("upos"), get_task("dep")
        vocabs = {upos.field: LabelVocab(tuple(UPOS)), dep.field: LabelVocab(tuple(RELS))}
        predicted_tags = [data.draw(st.lists(st.integers(0, len(UPOS) - 1), min_size=len(s.words),
                                             max_size=len(s.words))) for s in read]
        predicted_heads = [data.draw(trees(len(s.words))) for s in read]
        predicted_rels = [data.draw(st.lists(st.integers(0, len(RELS) - 1), min_size=len(s.words),
                                             max_size=len(s.words))) for s in read]
        upos.write_predictions(dataset(read), {i: {"upos": np.asarray(t)} for i, t in enumerate(predicted_tags)},
                               vocabs, Path(tmp) / "upos.conllu")
        dep.write_predictions(dataset(read), {i: {"heads": np.asarray(h), dep.field: np.asarray(r)}
                                              for i, (h, r) in enumerate(zip(predicted_heads, predicted_rels))},
                              vocabs, Path(tmp) / "dep.conllu")
        tagged, parsed = read_conllu(Path(tmp) / "upos.conllu"), read_conllu(Path(tmp) / "dep.conllu")
    assert [s.words for s in tagged] == [s.words for s in read] == [s.words for s in parsed]
    assert [s.upos for s in tagged] == [[UPOS[i] for i in t] for t in predicted_tags]
    assert [s.heads for s in parsed] == predicted_heads
    assert [s.deprels for s in parsed] == [[RELS[i] for i in r] for r in predicted_rels]
    # every other column is copied: the tagged file keeps the heads, the parsed one the tags, both the comments
    assert [s.heads for s in tagged] == [s.heads for s in read] and [s.upos for s in parsed] == [s.upos for s in read]
    assert [s.comments for s in tagged] == [s.comments for s in read] == [s.comments for s in parsed]


@ROUND_TRIP
@given(st.lists(st.lists(WORD, min_size=1, max_size=6), min_size=1, max_size=4), st.booleans(), st.data())
def test_ner_predictions_read_back_equal(word_lists, with_gold, data):
    assume(not any(w.startswith("-DOCSTART-") for words in word_lists for w in words))
    task = get_task("ner")
    vocabs = {"ner": LabelVocab(tuple(NER))}
    sentences = [Sentence(words=words) for words in word_lists]
    predicted = [data.draw(st.lists(st.integers(0, len(NER) - 1), min_size=len(w), max_size=len(w)))
                 for w in word_lists]
    gold = [data.draw(st.lists(st.integers(0, len(NER) - 1), min_size=len(w), max_size=len(w))) for w in word_lists]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ner.txt"
        task.write_predictions(dataset(sentences, {"ner": gold} if with_gold else None),
                               {i: {"ner": np.asarray(p)} for i, p in enumerate(predicted)}, vocabs, out)
        back, _ = read_conll2003(out)  # conlleval's input: the predicted tag is the last column
        columns = {len(line.split()) for line in out.read_text().splitlines() if line}
    assert [s.words for s in back] == word_lists
    assert [s.ner for s in back] == [[NER[i] for i in p] for p in predicted]
    assert columns == {3 if with_gold else 2}
