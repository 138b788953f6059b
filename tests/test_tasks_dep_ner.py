"""Dependency and NER tasks: labels, errors, loss, decoding, metrics, prediction files, CLI runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from subprobe.config import ProbeConfig
from subprobe.data.batching import bucketed_batches, collate, encode_dataset
from subprobe.data.conllu import read_conllu
from subprobe.data.pipeline import prepare_splits, read_splits
from subprobe.errors import ConfigError, DataError
from subprobe.metrics.mst import is_single_rooted_tree
from subprobe.resolve import resolve
from subprobe.tasks.dep import DepTask
from subprobe.tasks.ner import NerTask
from subprobe.tasks.registry import get_task

from .conftest import CONLLU, NER_TEXT, probe_argv


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert), use_fast=True)


def prepared(task, paths, tokenizer, max_length: int = 64):
    """Read, encode, build vocabs and attach labels for each split in ``paths``."""
    return prepare_splits(task, read_splits(task, paths), tokenizer, max_length)


def test_registry_knows_both_tasks() -> None:
    assert isinstance(get_task("dep"), DepTask)
    assert isinstance(get_task("ner"), NerTask)
    assert get_task("dep").prediction_suffix == ".conllu"


# ---------------------------------------------------------------- dependency parsing


def test_dep_labels_match_conllu(tiny_ud, tokenizer) -> None:
    task = DepTask()
    splits, vocabs = prepared(task, {"train": tiny_ud["train"], "dev": tiny_ud["dev"]}, tokenizer)
    rels = vocabs["rels"].labels
    assert list(rels) == sorted({r for s in read_conllu(tiny_ud["train"]) for r in s.deprels})
    assert rels[0] == "amod" and "root" in rels
    dev = splits["dev"]
    for e in dev.encoded:
        s = dev.sentences[e.index]
        assert e.labels["heads"].tolist() == s.heads
        assert [rels[i] for i in e.labels["rels"]] == s.deprels
    batch = collate(dev.encoded, [0, 1], "last", 0)
    assert batch.labels["heads"][0, 1:5].tolist() == [2, 3, 0, 3]
    assert batch.labels["heads"][0, 0] == -100 and batch.labels["heads"][0, 5:].eq(-100).all()


def test_dep_unseen_relation_is_a_data_error(tiny_ud, tokenizer, tmp_path) -> None:
    dev = tmp_path / "dev.conllu"
    dev.write_text(CONLLU.replace("\tpunct\t", "\tdiscourse\t", 1), encoding="utf-8")
    with pytest.raises(DataError, match=r"'discourse' \(1 tokens\)") as err:
        prepared(DepTask(), {"train": tiny_ud["train"], "dev": dev}, tokenizer)
    assert str(dev) in str(err.value)


def test_dep_rejects_sentences_without_heads(tmp_path) -> None:
    path = tmp_path / "nohead.conllu"
    path.write_text("# c\n1\tdog\tdog\tNOUN\t_\t_\t_\t_\t_\t_\n2\truns\trun\tVERB\t_\t_\t_\t_\t_\t_\n\n")
    with pytest.raises(DataError, match=rf"{path}:1: sentence has no dependency heads"):
        DepTask().read(path)


def test_dep_options_from_config() -> None:
    task = DepTask()
    defaults = resolve(ProbeConfig(task="dep", precision="fp32"))
    assert task.head_options(defaults) == {"arc_dim": 1024, "label_dim": 256, "decoder": "mst"}
    cfg = ProbeConfig(task="dep", arc_dim=64, label_dim=16, decoder="argmax")
    task.configure(cfg)
    assert task.decoder == "argmax"
    head = DepTask().build_head(8, {"rels": _vocab(["a", "b"])}, **task.head_options(cfg))
    assert head.arc_weight.shape == (65, 64) and head.rel_weight.shape == (2, 17, 17)
    with pytest.raises(ConfigError, match="--decoder"):
        task.configure(ProbeConfig(task="dep", decoder="greedy"))


def _vocab(labels):
    from subprobe.data.vocab import LabelVocab

    return LabelVocab.build(labels)


def _dep_model(tiny_bert, task, vocabs, seed: int = 0):
    from subprobe.models.loading import load_encoder
    from subprobe.probes.base import EncoderFeatures, ProbeModel

    encoder, _ = load_encoder(str(tiny_bert))
    torch.manual_seed(seed)
    head = task.build_head(encoder.config.hidden_size, vocabs, arc_dim=32, label_dim=16)
    return ProbeModel(EncoderFeatures(encoder, "last"), head)


def test_dep_loss_decreases_and_mst_gives_trees(tiny_bert, tiny_ud, tokenizer) -> None:
    task = DepTask()
    splits, vocabs = prepared(task, {"train": tiny_ud["train"]}, tokenizer)
    train = splits["train"]
    model = _dep_model(tiny_bert, task, vocabs)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=3e-3)
    batches = bucketed_batches(train.encoded, 8, shuffle=True, seed=0)
    losses = []
    model.train()
    for _epoch in range(6):
        for indices in batches:
            batch = collate(train.encoded, indices, "last", 0)
            loss = task.loss(model.head, model(batch), batch)
            assert torch.isfinite(loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])

    model.eval()
    batch = collate(train.encoded, list(range(6)), "last", 0)
    with torch.no_grad():
        out = model(batch)
        task.decoder = "mst"
        pred = task.predict(model.head, out, batch)
        task.decoder = "argmax"
        greedy = task.predict(model.head, out, batch)
    assert set(pred) == {"heads", "rels", "heads_mst", "rels_mst", "heads_argmax", "rels_argmax", "rels_gold_head"}
    assert torch.equal(pred["heads"], pred["heads_mst"]) and torch.equal(greedy["heads"], greedy["heads_argmax"])
    assert torch.equal(pred["heads_argmax"], greedy["heads_argmax"])
    assert torch.equal(pred["rels_mst"], greedy["rels_mst"])
    for b, indices in enumerate(range(6)):
        n = train.encoded[indices].n_words
        heads = pred["heads"][b, : n + 1].clone()
        heads[0] = -1
        assert is_single_rooted_tree(heads.numpy())
        for field in pred:
            assert (pred[field][b, n + 1 :] == -100).all() and pred[field][b, 0] == -100
            assert (pred[field][b, 1 : n + 1] >= 0).all()
    assert greedy["heads"].shape == pred["heads"].shape
    assert torch.equal(greedy["rels_gold_head"], pred["rels_gold_head"])  # gold heads: decoder-free


def _dep_predictions(dataset, vocabs):
    """Hand-made predictions for the first two CONLLU sentences (see the hand-computed scores).

    The run's decoder (``heads``/``rels``) is MST; argmax differs on one word of sentence 2."""
    idx = vocabs["rels"].index()
    enc = lambda rels: np.array([idx[r] for r in rels])  # noqa: E731
    preds = {
        0: {
            "heads": np.array([2, 3, 0, 2]),  # word 4 wrong
            "rels": enc(["det", "nsubj", "root", "punct"]),
            "rels_gold_head": enc(["det", "obj", "root", "punct"]),  # word 2 label wrong given gold head
        },
        1: {
            "heads": np.array([2, 0, 5, 5, 2, 8, 8, 5]),  # all right
            "rels": enc(["nsubj", "root", "det", "det", "obj", "case", "amod", "nmod"]),  # word 4 wrong
            "rels_gold_head": enc(["nsubj", "root", "det", "amod", "obj", "case", "amod", "nmod"]),
        },
    }
    for p in preds.values():
        p["heads_mst"], p["rels_mst"] = p["heads"], p["rels"]
        p["heads_argmax"], p["rels_argmax"] = p["heads"].copy(), p["rels"]
    preds[1]["heads_argmax"][0] = 0  # argmax: word 1 of sentence 2 attached to ROOT too (not a tree)
    return preds


def test_dep_metrics_hand_computed(tiny_ud, tokenizer, tmp_path) -> None:
    dev = tmp_path / "dev.conllu"
    dev.write_text(CONLLU.split("\n\n# sent_id = 3")[0] + "\n\n", encoding="utf-8")
    task = DepTask()
    splits, vocabs = prepared(task, {"train": tiny_ud["train"], "dev": dev}, tokenizer)
    scores = task.metrics(splits["dev"], _dep_predictions(splits["dev"], vocabs), vocabs)
    assert scores == pytest.approx({
        "uas": 11 / 12, "las": 10 / 12, "las_universal": 10 / 12,
        "uas_mst": 11 / 12, "las_mst": 10 / 12, "uas_argmax": 10 / 12, "las_argmax": 9 / 12,
        # argmax heads, sentence-macro, labels from the gold head: (2/4 + 7/8) / 2
        "paper_uas": (3 / 4 + 7 / 8) / 2, "paper_las": (2 / 4 + 7 / 8) / 2,
    })
    assert all(isinstance(v, float) for v in scores.values())


UD_SUBTYPES = """# sent_id = s1
1	Mary	Mary	PROPN	NNP	_	3	nmod:poss	_	_
2	big	big	ADJ	JJ	_	3	amod	_	_
3	house	house	NOUN	NN	_	0	root	_	_

# sent_id = s2
1	John	John	PROPN	NNP	_	2	nsubj:pass	_	_
2	sat	sit	VERB	VBD	_	0	root	_	_
3	today	today	NOUN	NN	_	2	obl:tmod	_	_

"""


def _official_las(gold_path, pred_path) -> float:
    """LAS as the CoNLL 2018 shared-task scorer counts it: head and the universal part of DEPREL (all words)."""
    gold, pred = read_conllu(gold_path), read_conllu(pred_path)
    right = total = 0
    for g, p in zip(gold, pred, strict=True):
        for gh, gr, ph, pr in zip(g.heads, g.deprels, p.heads, p.deprels, strict=True):
            total += 1
            right += gh == ph and gr.split(":")[0] == pr.split(":")[0]
    return right / total


def test_las_universal_counts_a_subtype_mismatch_as_right(tokenizer, tmp_path) -> None:
    """Gold ``nmod:poss``, predicted ``nmod``: wrong for ``las``, right for ``las_universal`` (official rule)."""
    gold = tmp_path / "gold.conllu"
    gold.write_text(UD_SUBTYPES, encoding="utf-8")
    train = tmp_path / "train.conllu"
    without_subtypes = UD_SUBTYPES.replace("nmod:poss", "nmod").replace("obl:tmod", "obl")
    train.write_text(UD_SUBTYPES + without_subtypes, encoding="utf-8")
    task = DepTask()
    splits, vocabs = prepared(task, {"train": train, "dev": gold}, tokenizer)
    idx = vocabs["rels"].index()
    heads = {0: np.array([3, 3, 0]), 1: np.array([2, 0, 2])}
    rels = {0: np.array([idx["nmod"], idx["amod"], idx["root"]]),  # nmod for nmod:poss
            1: np.array([idx["nsubj:pass"], idx["root"], idx["obl"]])}  # obl for obl:tmod
    preds = {i: {"heads": heads[i], "rels": rels[i], "heads_mst": heads[i], "rels_mst": rels[i],
                 "heads_argmax": heads[i], "rels_argmax": rels[i], "rels_gold_head": rels[i]} for i in heads}
    scores = task.metrics(splits["dev"], preds, vocabs)
    assert scores["las"] == pytest.approx(4 / 6)
    assert scores["las_universal"] == pytest.approx(6 / 6)
    out = tmp_path / "pred.conllu"
    task.write_predictions(splits["dev"], preds, vocabs, out)
    assert _official_las(gold, out) == pytest.approx(scores["las_universal"])


def test_las_universal_equals_the_official_rule_on_a_predict_output(tiny_bert, tmp_path) -> None:
    """A real --predict run on a file where subtypes matter: las_universal = the official scorer's LAS."""
    from subprobe.cli import main

    files = {}
    for split, text in (("train", (UD_SUBTYPES + CONLLU) * 4), ("dev", UD_SUBTYPES + CONLLU), ("test", UD_SUBTYPES)):
        files[split] = tmp_path / f"{split}.conllu"
        files[split].write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    argv = probe_argv(tiny_bert, files, out, "--predict", "--arc-dim", "16", "--label-dim", "8", task="dep", epochs=1)
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert metrics[split]["las_universal"] == pytest.approx(
            _official_las(files[split], out / f"predictions-{split}.conllu"), abs=1e-12
        )
        assert metrics[split]["las_universal"] >= metrics[split]["las"]


def test_deprel_universal_reads_relations_without_subtypes(tmp_path) -> None:
    gold = tmp_path / "gold.conllu"
    gold.write_text(UD_SUBTYPES, encoding="utf-8")
    task = DepTask()
    task.configure(resolve(ProbeConfig(task="dep", deprel="universal")))
    assert [s.deprels for s in task.read(gold)] == [["nmod", "amod", "root"], ["nsubj", "root", "obl"]]
    assert task.run_facts() == {"decoder": "mst", "deprel": "universal"}
    with pytest.raises(ConfigError, match="--deprel"):
        task.configure(dataclasses.replace(resolve(ProbeConfig(task="dep")), deprel="basic"))


def test_dep_write_predictions_reads_back(tiny_ud, tokenizer, tmp_path) -> None:
    task = DepTask()
    # max_length 8 drops sentence 2 (8 words + 2 specials): only encoded sentences are written
    splits = {k: encode_dataset(k, task.read(tiny_ud[k]), tokenizer, 8) for k in ("train", "test")}
    vocabs = {"rels": _vocab(r for s in read_conllu(tiny_ud["train"]) for r in s.deprels)}
    for ds in splits.values():
        task.attach_labels(ds, vocabs)
    test = splits["test"]
    assert test.dropped == 1 and [e.index for e in test.encoded] == [0, 2]
    idx = vocabs["rels"].index()
    preds = {
        0: {"heads": np.array([3, 3, 0, 2]), "rels": np.array([idx[r] for r in ["amod", "nsubj", "root", "punct"]])},
        2: {
            "heads": np.array([2, 0, 5, 5, 2, 5]),
            "rels": np.array([idx[r] for r in ["nsubj", "root", "case", "det", "obl", "obj"]]),
        },
    }
    for p in preds.values():
        p["rels_gold_head"] = p["rels"]
    out = tmp_path / f"predictions-test{task.prediction_suffix}"
    task.write_predictions(test, preds, vocabs, out)
    back = read_conllu(out)
    gold = read_conllu(tiny_ud["test"])
    assert len(back) == 2
    assert back[0].heads == [3, 3, 0, 2] and back[0].deprels == ["amod", "nsubj", "root", "punct"]
    assert back[1].heads == [2, 0, 5, 5, 2, 5] and back[1].deprels[-1] == "obj"
    for b, g in zip(back, [gold[0], gold[2]]):
        assert b.words == g.words and b.upos == g.upos and b.comments == g.comments
        assert [r[2] for r in b.rows] == [r[2] for r in g.rows]  # LEMMA copied
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- NER


def test_ner_labels_scheme_and_options(tiny_ner, tokenizer) -> None:
    task = NerTask()
    splits, vocabs = prepared(task, {"train": tiny_ner["train"], "dev": tiny_ner["dev"]}, tokenizer)
    # O plus both prefixes of every type in training (train has B-LOC only: B-MISC/ORG/PER are added)
    assert vocabs["ner"].labels == ("B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O")
    assert task.train_scheme == "iob1" and task.schemes[str(tiny_ner["dev"])] == "iob1"
    dev = splits["dev"]
    e = dev.encoded[0]
    assert [vocabs["ner"].labels[i] for i in e.labels["ner"]] == dev.sentences[e.index].ner
    assert len(dev.encoded) == 8  # one-token sentences kept by default

    task = NerTask()
    task.configure(ProbeConfig(task="ner", ner_scheme="iob1", keep_single_token=False))
    assert len(task.read(tiny_ner["dev"])) == 6
    task.configure(ProbeConfig(task="ner", ner_scheme="iob2", keep_single_token=True))
    with pytest.raises(DataError, match="IOB2"):
        task.read(tiny_ner["dev"])


def test_ner_unseen_prefix_of_a_seen_type_is_known(tiny_ner, tokenizer, tmp_path) -> None:
    # an IOB1 training slice without B-PER (B- only marks adjacent same-type entities) must still
    # score a dev file that has one: the first 3000 CoNLL-2003 sentences have no B-ORG, eng.testb has 5
    dev = tmp_path / "dev.txt"
    dev.write_text(NER_TEXT.replace("mary NNP I-NP I-PER", "mary NNP I-NP B-PER"), encoding="utf-8")
    splits, vocabs = prepared(NerTask(), {"train": tiny_ner["train"], "dev": dev}, tokenizer)
    e = splits["dev"].encoded[1]
    assert vocabs["ner"].labels[e.labels["ner"][0]] == "B-PER"


def test_ner_unseen_entity_type_is_a_data_error(tiny_ner, tokenizer, tmp_path) -> None:
    dev = tmp_path / "dev.txt"
    dev.write_text(NER_TEXT.replace("mary NNP I-NP I-PER", "mary NNP I-NP B-DATE"), encoding="utf-8")
    with pytest.raises(DataError, match=r"'B-DATE' \(1 tokens\)") as err:
        prepared(NerTask(), {"train": tiny_ner["train"], "dev": dev}, tokenizer)
    assert str(dev) in str(err.value)


def _ner_predictions(dataset, vocabs):
    """Sentence 0: 'york' missed (LOC span wrong); sentence 1: MISC missed; others as gold."""
    idx = vocabs["ner"].index()
    preds = {}
    for e in dataset.encoded:
        tags = list(dataset.sentences[e.index].ner)
        if e.index == 0:
            tags[3] = "O"
        if e.index == 1:
            tags[3] = "O"
        preds[e.index] = {"ner": np.array([idx[t] for t in tags])}
    return preds


def test_ner_metrics_hand_computed(tiny_ner, tokenizer, tmp_path) -> None:
    dev = tmp_path / "dev.txt"
    dev.write_text(NER_TEXT.split("\n\nlondon")[0] + "\n", encoding="utf-8")  # sentences 0 and 1
    task = NerTask()
    splits, vocabs = prepared(task, {"train": tiny_ner["train"], "dev": dev}, tokenizer)
    scores = task.metrics(splits["dev"], _ner_predictions(splits["dev"], vocabs), vocabs)
    p, r = 3 / 4, 3 / 5
    assert scores == pytest.approx(
        {
            "f1": 2 * p * r / (p + r),
            "precision": p,
            "recall": r,
            "accuracy": 11 / 13,
            "f1_PER": 1.0,
            "precision_PER": 1.0,
            "recall_PER": 1.0,
            "f1_LOC": 0.5,
            "precision_LOC": 0.5,
            "recall_LOC": 0.5,
            "f1_MISC": 0.0,
            "precision_MISC": 0.0,
            "recall_MISC": 0.0,
        }
    )
    assert all(isinstance(v, float) for v in scores.values())


def test_ner_write_predictions_format(tiny_ner, tokenizer, tmp_path) -> None:
    dev = tmp_path / "dev.txt"
    dev.write_text(NER_TEXT.split("\n\nlondon")[0] + "\n", encoding="utf-8")
    task = NerTask()
    splits, vocabs = prepared(task, {"train": tiny_ner["train"], "dev": dev}, tokenizer)
    out = tmp_path / f"predictions-dev{task.prediction_suffix}"
    task.write_predictions(splits["dev"], _ner_predictions(splits["dev"], vocabs), vocabs, out)
    text = out.read_text(encoding="utf-8")
    blocks = text.split("\n\n")
    assert text.endswith("\n\n") and blocks[-1] == ""
    assert blocks[0].split("\n") == [
        "john I-PER I-PER",
        "visited O O",
        "new I-LOC I-LOC",
        "york I-LOC O",
        ". O O",
    ]
    assert blocks[1].split("\n")[3] == "big I-MISC O"
    assert len(blocks) == 3
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("task_name", ["dep", "ner"])
def test_cli_end_to_end(task_name, tiny_bert, tiny_ud, tiny_ner, tmp_path, monkeypatch) -> None:
    from subprobe.cli import main

    monkeypatch.delenv("SUBPROBE_DATA", raising=False)
    files = tiny_ud if task_name == "dep" else tiny_ner
    out = tmp_path / "run"
    argv = probe_argv(tiny_bert, files, out, "--predict", task=task_name, epochs=1, batch_size=8)
    if task_name == "dep":
        argv += ["--arc-dim", "32", "--label-dim", "16", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
        if task_name == "dep":
            assert torch.get_num_threads() == 1  # --threads reached torch
    finally:
        torch.set_num_threads(threads)
    metrics = json.loads((out / "metrics.json").read_text())
    if task_name == "dep":
        assert metrics["primary_metric"] == "las"
        assert metrics["decoder"] == "mst"
        keys = {"las", "uas", "paper_las", "paper_uas"}
        back = read_conllu(out / "predictions-dev.conllu")
        assert len(back) == 6 and all(is_single_rooted_tree(np.array([-1, *s.heads])) for s in back)
    else:
        assert metrics["primary_metric"] == "f1"
        assert "decoder" not in metrics
        keys = {"f1", "precision", "recall", "accuracy"}
        assert (out / "predictions-test.txt").read_text().count("\n\n") == 4
    for split in ("dev", "test", "dev_soft"):
        assert keys <= set(metrics[split])
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in metrics[split].values())
