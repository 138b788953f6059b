"""The UD morphology tasks (``--task feats:KEY``) and XPOS tagging (``--task xpos``): each one module under
subprobe/tasks, with control tasks, prediction files, ``subprobe predict`` and the report working for them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from subprobe.cli import main
from subprobe.data.conllu import read_conllu
from subprobe.data.control import Distribution, apply_control, control_label
from subprobe.data.pipeline import RawSplits
from subprobe.errors import ConfigError, DataError
from subprobe.tasks.feats import format_feats, parse_feats
from subprobe.tasks.registry import get_task
from tests.conftest import CONLLU, probe_argv

#: FEATS of the words of conftest's CONLLU (UD English style); words not listed have none (``_``).
FEATS = {
    "The": "Definite=Def|PronType=Art", "the": "Definite=Def|PronType=Art", "a": "Definite=Ind|PronType=Art",
    "dog": "Number=Sing", "house": "Number=Sing", "mat": "Number=Sing", "york": "Number=Sing",
    "Mary": "Number=Sing", "John": "Number=Sing", "big": "Degree=Pos", "new": "Degree=Pos",
    "runs": "Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin",
    "saw": "Mood=Ind|Tense=Past|VerbForm=Fin", "sat": "Mood=Ind|Tense=Past|VerbForm=Fin",
}


def _with_feats(text: str) -> str:
    lines = []
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) == 10:
            cols[5] = FEATS.get(cols[1], "_")
        lines.append("\t".join(cols))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def morph_ud(tmp_path_factory) -> dict[str, Path]:
    """conftest's tiny UD files with FEATS filled in."""
    root = tmp_path_factory.mktemp("morph")
    paths = {}
    for split, repeat in (("train", 8), ("dev", 2), ("test", 1)):
        paths[split] = root / f"{split}.conllu"
        paths[split].write_text(_with_feats(CONLLU) * repeat, encoding="utf-8")
    return paths


def _value(feats: str, key: str) -> str:
    """The value of ``key`` in a FEATS string, by hand (``_`` when absent)."""
    for item in feats.split("|"):
        if item.startswith(key + "="):
            return item[len(key) + 1:]
    return "_"


def test_feats_strings_by_hand():
    assert parse_feats("Mood=Ind|Number=Sing") == {"Mood": "Ind", "Number": "Sing"}
    assert parse_feats("_") == {}
    # UD order: by feature name, case-insensitively
    assert format_feats({"Number": "Sing", "Definite": "Def", "abbr": "Yes"}) == "abbr=Yes|Definite=Def|Number=Sing"
    assert format_feats({}) == "_"


def test_feats_labels_vocabulary_and_relabelling(morph_ud):
    task = get_task("feats:Number")
    assert task.name == "feats:Number" and task.title == "Morphology: Number"
    first = task.read(morph_ud["dev"])[0]  # The dog runs .
    assert task.labels_of(first) == ["_", "Sing", "Sing", "_"]
    assert task.build_vocabs(task.read(morph_ud["train"]))[task.field].labels == ("Sing", "_")
    # a new value of the key replaces the old one; "_" removes it; the other features stay
    relabelled = task.with_labels(first, ["Plur", "_", "Sing", "_"])
    assert relabelled.feats == ["Definite=Def|Number=Plur|PronType=Art", "_",
                                "Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin", "_"]
    assert get_task("xpos").labels_of(first) == ["DT", "NN", "VBZ", "."]


def test_feats_control_task_is_a_function_of_the_word_type(morph_ud):
    task = get_task("feats:Tense")
    train, dev = task.read(morph_ud["train"]), task.read(morph_ud["dev"])
    out = apply_control(task, RawSplits({"train": train, "dev": dev}, train), seed=4)
    # by hand: Tense over the training words (24 sentences: 3 present, 6 past verbs per copy)
    dist = Distribution(Counter(_value(FEATS.get(w, "_"), "Tense") for s in train for w in s.words))
    assert dist.labels == ["Past", "Pres", "_"]
    for s in out.sentences["dev"]:
        assert task.labels_of(s) == [control_label(w, 4, dist) for w in s.words]


def test_bad_task_names_are_one_line_with_a_suggestion(tiny_bert, morph_ud, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"--task 'fets:Number' is not known \(did you mean feats:Number\?\)"):
        get_task("fets:Number")
    with pytest.raises(ConfigError, match=r"did you mean xpos\?"):
        get_task("xpo")
    with pytest.raises(ConfigError, match=r"did you mean feats:KEY\?.*use one of upos, dep, ner, xpos, feats:KEY"):
        get_task("feats")  # the parameter is missing
    with pytest.raises(ConfigError, match=r"'number' is not a UD feature name; did you mean feats:Number\?"):
        get_task("feats:number")
    with pytest.raises(DataError, match=r"no word has the feature Numbr .*Definite, .*Number.*did you mean "
                                        r"--task feats:Number\?"):
        get_task("feats:Numbr").read(morph_ud["train"])
    assert main(probe_argv(tiny_bert, morph_ud, tmp_path / "r", task="fets:Number")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("subprobe: error: --task 'fets:Number' is not known")
    assert not (tmp_path / "r").exists()


def _others(feats: str, key: str) -> list[str]:
    """The features of a FEATS string other than ``key``."""
    return [x for x in feats.split("|") if x != "_" and not x.startswith(key + "=")]


def _accuracy(gold: list[str], pred: list[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def test_feats_run_predictions_and_scores(tiny_bert, morph_ud, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(probe_argv(tiny_bert, morph_ud, out, "--predict", task="feats:Tense")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["task"], metrics["primary_metric"]) == ("feats:Tense", "accuracy")
    assert json.loads((out / "vocab.json").read_text()) == {"feats:Tense": ["Past", "Pres", "_"]}
    # the prediction file: FEATS holds the predicted Tense beside the input's other features
    gold_rows = [row for s in read_conllu(morph_ud["dev"]) for row in s.rows]
    pred_rows = [row for s in read_conllu(out / "predictions-dev.conllu") for row in s.rows]
    gold = [_value(r[5], "Tense") for r in gold_rows]
    pred = [_value(r[5], "Tense") for r in pred_rows]
    assert metrics["dev"]["accuracy"] == pytest.approx(_accuracy(gold, pred), abs=1e-12)
    for g, p in zip(gold_rows, pred_rows):
        assert _others(g[5], "Tense") == _others(p[5], "Tense")
        assert g[:5] + g[6:] == p[:5] + p[6:]
    # subprobe predict on the dev file writes the same file and scores exactly what metrics.json says
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(morph_ud["dev"]), "--output", str(tmp_path / "p.conllu")]) == 0
    assert (tmp_path / "p.conllu").read_text() == (out / "predictions-dev.conllu").read_text()
    assert capsys.readouterr().out.splitlines()[0] == f"accuracy {metrics['dev']['accuracy']!r}"
    # the Python API tags plain sentences: FEATS with the predicted Tense only
    from subprobe.runs.loaded import load_run

    tagged = load_run(out).predict(["the dog runs .", "mary saw a big house"])
    assert [len(s.feats) for s in tagged] == [4, 5]
    assert all(f == "_" or (f.startswith("Tense=") and "|" not in f) for s in tagged for f in s.feats)
    assert tagged[0].upos is None and tagged[0].heads is None


def test_xpos_control_run_scores_the_control_labels(tiny_bert, morph_ud, tmp_path):
    out = tmp_path / "xpos"
    assert main(probe_argv(tiny_bert, morph_ud, out, "--predict", "--control", "--control-seed", "2",
                           "--probe", "linear", task="xpos")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["task"], metrics["control"], metrics["control_seed"]) == ("xpos", True, 2)
    train = read_conllu(morph_ud["train"])
    dist = Distribution(Counter(t for s in train for t in s.xpos))
    dev = read_conllu(morph_ud["dev"])
    gold = [control_label(w, 2, dist) for s in dev for w in s.words]  # the control task's labels, by hand
    pred = [row[4] for s in read_conllu(out / "predictions-dev.conllu") for row in s.rows]
    assert metrics["dev"]["accuracy"] == pytest.approx(_accuracy(gold, pred), abs=1e-12)
    assert set(json.loads((out / "vocab.json").read_text())["xpos"]) <= set(dist.labels)


def test_report_tables_list_the_new_tasks(tiny_bert, tmp_path):
    from subprobe.experiments.store import Store
    from subprobe.report import tables
    from subprobe.report.html import write_report
    from tests.synthetic_runs import add_run

    store = Store(tmp_path / "store")
    for task, value in (("feats:Number", 0.9), ("xpos", 0.8), ("upos", 0.7)):
        add_run(store, {"task": task, "model": str(tiny_bert), "probe": "mlp", "rank": "d"},
                {"dev": {"accuracy": value, "accuracy_macro": value}, "probe_params": 100,
                 "bits": {"lower": 100, "upper": 3200}})
    from subprobe.report.loading import load_results

    markdown, csv_text = tables.table1(load_results(store.root), "dev", "tiny")
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "MLP-1" in line]
    # the registry's order and titles; no paper numbers for the new tasks
    assert [r.split(" | ")[0] for r in rows] == ["| Part-of-speech tagging", "| Language-specific POS tagging",
                                                 "| Morphology: Number"]
    assert rows[1].split(" | ")[2:5] == ["80.00", "–", "80.00"]
    assert "feats:Number,MLP-1,90.00,–,90.00" in csv_text
    index = write_report(store.root, tmp_path / "report", echo=lambda *a, **k: None)
    assert "Morphology: Number" in index.read_text()


def test_reproduce_morphology_runs_the_grid_and_writes_its_table(tiny_bert, morph_ud, tmp_path):
    """``reproduce morphology --tasks feats:Number`` on a tiny data root: four runs (two settings x two probes), and
    every cell of its table is the run's dev accuracy from metrics.json."""
    from subprobe.experiments.reproduce import reproduce

    root = tmp_path / "data" / "ud-english-ewt"
    root.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (root / f"en_ewt-ud-{split}.conllu").write_text(morph_ud[split].read_text(), encoding="utf-8")
    out = tmp_path / "store"
    overrides = {"epochs": 1, "batch_size": 8, "eval_every": 3, "precision": "fp32", "max_train_samples": 16}
    result = reproduce("morphology", model=str(tiny_bert), tasks=["feats:Number"], data_dir=str(tmp_path / "data"),
                       out=str(out), overrides=overrides, echo=lambda *a: None)
    assert result["counts"] == {"done": 4, "skipped": 0, "failed": 0}
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*/metrics.json")]
    by = {(m["probe"], m["setting"]): f"{100 * m['dev']['accuracy']:.2f}" for m in runs}
    assert {m["task"] for m in runs} == {"feats:Number"} and len(by) == 4
    assert result["rows"] == [
        ["feats:Number", "Subnetworks (neuron, λmax=1)", by[("subnetwork", "pretrained")],
         by[("subnetwork", "reset-encoder")], "dev", str(tiny_bert)],
        ["feats:Number", "MLP-1 (r=d)", by[("mlp", "pretrained")], by[("mlp", "reset-encoder")], "dev",
         str(tiny_bert)],
    ]
    assert "| Morphology: Number | MLP-1 (r=d) |" in (out / "morphology.md").read_text()
    assert (out / "morphology.csv").read_text().splitlines()[0] == "task,probe,pretrained,reset-encoder,split,series"
