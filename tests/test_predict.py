"""Predictions: `probe --predict` for every task, `subprobe predict`, `subprobe.load_run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import subprobe
from subprobe.cli import main
from subprobe.data.conllu import read_conllu
from subprobe.tasks.base import Task
from subprobe.tasks.upos import UposTask
from tests.conftest import probe_argv

DEP_FLAGS = ("--arc-dim", "32", "--label-dim", "16")


def _train(model, files, out, task, *extra) -> Path:
    flags = DEP_FLAGS if task == "dep" else ()
    assert main(probe_argv(model, files, out, *flags, *extra, task=task, epochs=2, batch_size=8)) == 0
    return out


@pytest.fixture(scope="module")
def runs(tiny_bert, tiny_ud, tiny_ner, tmp_path_factory) -> dict[str, Path]:
    """One finished tiny run per task (upos with --predict), plus MLP-1 and linear upos runs."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "upos": _train(tiny_bert, tiny_ud, root / "upos", "upos", "--predict"),
        "dep": _train(tiny_bert, tiny_ud, root / "dep", "dep"),
        "ner": _train(tiny_bert, tiny_ner, root / "ner", "ner"),
        "mlp": _train(tiny_bert, tiny_ud, root / "mlp", "upos", "--probe", "mlp", "--rank", "4"),
        "linear": _train(tiny_bert, tiny_ud, root / "linear", "upos", "--probe", "linear", "--no-cache-features"),
    }


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_upos_predict_flag_writes_conllu_whose_accuracy_is_the_reported_one(runs, tiny_ud):
    for split in ("dev", "test"):
        written = read_conllu(runs["upos"] / f"predictions-{split}.conllu")
        gold = read_conllu(tiny_ud[split])
        assert [s.words for s in written] == [s.words for s in gold]
        assert [s.heads for s in written] == [s.heads for s in gold]  # other columns copied
        pairs = [(p, g) for w, s in zip(written, gold) for p, g in zip(w.upos, s.upos)]
        assert sum(p == g for p, g in pairs) / len(pairs) == _metrics(runs["upos"])[split]["accuracy"]


def test_metrics_are_written_before_predictions(tiny_bert, tiny_ud, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full while writing predictions")

    monkeypatch.setattr(UposTask, "write_predictions", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        main(probe_argv(tiny_bert, tiny_ud, out, "--predict", epochs=1))
    assert _metrics(out)["dev"]["accuracy"] >= 0
    assert not (out / "checkpoint.pt").exists()  # finished: --resume reports it instead of crashing again


def test_a_predict_flag_that_cannot_be_honoured_is_refused_before_training(tiny_bert, tiny_ud, tmp_path, capsys):
    original = UposTask.write_predictions
    UposTask.write_predictions = Task.write_predictions
    try:
        out = tmp_path / "run"
        assert main(probe_argv(tiny_bert, tiny_ud, out, "--predict", epochs=1)) == 2
    finally:
        UposTask.write_predictions = original
    err = capsys.readouterr().err.strip()
    assert err == "subprobe: error: --predict is not available for --task upos; drop --predict"
    assert not out.exists()


def _scores(printed: str) -> dict[str, float]:
    return {k: float(v) for k, v in (line.split() for line in printed.strip().splitlines())}


@pytest.mark.parametrize("name", ["upos", "dep", "ner", "mlp", "linear"])
def test_predict_on_the_dev_file_reproduces_the_reported_dev_scores(name, runs, tiny_ud, tiny_ner, tmp_path, capsys):
    dev = (tiny_ner if name == "ner" else tiny_ud)["dev"]
    out = tmp_path / "pred"
    capsys.readouterr()
    assert main(["predict", str(runs[name]), "--input", str(dev), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert _scores(printed) == _metrics(runs[name])["dev"]
    assert printed.split()[0] == _metrics(runs[name])["primary_metric"]
    if name == "upos":  # the same file --predict wrote
        assert out.read_text() == (runs["upos"] / "predictions-dev.conllu").read_text()
    if name == "dep":
        back = read_conllu(out)
        assert len(back) == 6 and all(len(s.heads) == len(s.words) for s in back)
    if name == "ner":
        blocks = out.read_text().strip().split("\n\n")
        assert blocks[0].splitlines()[0].split()[:2] == ["john", "I-PER"]  # word, gold, predicted


def test_plain_text_in_conllu_or_columns_out_without_scores(runs, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("the dog runs .\n\nmary saw a big house in new york\n", encoding="utf-8")
    run = subprobe.load_run(runs["upos"])
    expected = run.predict(["the dog runs .", "mary saw a big house in new york"])
    out = tmp_path / "upos.conllu"
    assert main(["predict", str(runs["upos"]), "--input", str(text), "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""  # no gold, no scores
    back = read_conllu(out)
    assert [s.words for s in back] == [["the", "dog", "runs", "."], "mary saw a big house in new york".split()]
    assert [s.upos for s in back] == [s.upos for s in expected]
    out_ner = tmp_path / "ner.txt"
    assert main(["predict", str(runs["ner"]), "--input", str(text), "--output", str(out_ner)]) == 0
    lines = out_ner.read_text().split("\n\n")[0].splitlines()
    labels = set(json.loads((runs["ner"] / "vocab.json").read_text())["ner"])
    assert [line.split()[0] for line in lines] == ["the", "dog", "runs", "."]
    assert all(len(line.split()) == 2 and line.split()[1] in labels for line in lines)


def test_load_run_gives_predict_metrics_subnetwork_config(runs, tiny_ud):
    run = subprobe.load_run(runs["dep"])
    assert run.metrics == _metrics(runs["dep"])
    assert run.config.task == "dep" and run.config.arc_dim == 32
    assert run.subnetwork.density() == run.metrics["density"]
    gold = read_conllu(tiny_ud["dev"])
    tagged = run.predict(gold[:2])
    assert [s.words for s in tagged] == [s.words for s in gold[:2]]
    rels = set(json.loads((runs["dep"] / "vocab.json").read_text())["rels"])
    for s in tagged:
        assert s.upos is None and len(s.heads) == len(s.words) and set(s.deprels) <= rels
        assert all(0 <= h <= len(s.words) for h in s.heads)
    assert run.predict([]) == []
    assert subprobe.load_run(runs["mlp"]).subnetwork is None


def test_finetune_and_unfinished_runs_are_refused_in_one_line(tiny_bert, tiny_ud, tmp_path, capsys):
    run = _train(tiny_bert, tiny_ud, tmp_path / "ft", "upos", "--probe", "finetune")
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(tiny_ud["dev"]), "--output", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "finetune run does not save its fine-tuned encoder weights" in err
    (run / "metrics.json").unlink()
    assert main(["predict", str(run), "--input", str(tiny_ud["dev"]), "--output", str(tmp_path / "p")]) == 2
    assert "not a finished subprobe run (no metrics.json)" in capsys.readouterr().err


def test_predict_input_errors(runs, tiny_ud, tmp_path, capsys):
    assert main(["predict", str(runs["ner"]), "--input", str(tiny_ud["dev"]), "--output", str(tmp_path / "p")]) == 2
    assert "a ner run reads CoNLL-2003 columns or plain text, not CoNLL-U" in capsys.readouterr().err
    missing = tmp_path / "nope.conllu"
    assert main(["predict", str(runs["upos"]), "--input", str(missing), "--output", str(tmp_path / "p")]) == 2
    assert f"--input {missing}: no such file" in capsys.readouterr().err
