"""Every command's bad input (issue 28, item 1): one line ``subprobe: error: ...`` naming the file, line or flag
and what to do, exit status 2, no traceback, and nothing written or overwritten anywhere.

Each case has an id that is also a row of the table in ``docs/reliability.md``; a test keeps the two in step.
A few rows are not errors (the command does something sensible, said in the table): those cases check that.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from subprobe.cli import main
from tests.conftest import REPO, build_tiny_model, probe_argv

DOC = REPO / "docs" / "reliability.md"


@pytest.fixture(scope="module")
def runs(tiny_bert, tiny_ud, tiny_ner, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    wide = build_tiny_model(root / "wide-model", hidden=48, heads=4, intermediate=96)
    made = {}
    for name, model, extra in [("subnetwork", tiny_bert, ()), ("mlp", tiny_bert, ("--probe", "mlp", "--rank", "4")),
                               ("finetune", tiny_bert, ("--probe", "finetune")),
                               ("reset", tiny_bert, ("--setting", "reset-all")),
                               ("contiguous", tiny_bert, ("--layout", "contiguous", "--granularity", "4,4")),
                               ("wide", wide, ())]:
        made[name] = root / name
        assert main(probe_argv(model, tiny_ud, made[name], *extra, epochs=1, batch_size=8)) == 0
    made["ner"] = root / "ner"
    assert main(probe_argv(tiny_bert, tiny_ner, made["ner"], task="ner", epochs=1, batch_size=8)) == 0
    return made


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes (directories as entries too)."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def refused(argv, capsys, *needles: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err and err.count("\n") == 0 and err.startswith("subprobe: error: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def refused_by_argparse(argv, capsys, *needles: str) -> str:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0 and err.startswith("subprobe: error: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def copy(run: Path, where: Path) -> Path:
    return Path(shutil.copytree(run, where))


# ---------------------------------------------------------------------------------------------- the cases
# Each case: (setup(runs, tmp, tiny) -> (argv, needles)), run in a fresh tmp directory whose every file must be
# unchanged afterwards. ``tiny`` holds the tiny model and data paths.

def text_file(tmp: Path, text: str | bytes, name: str = "in.txt") -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def c_predict_missing_input(runs, tmp, tiny):
    return ["predict", runs["subnetwork"], "--input", tmp / "nope.txt", "--output", tmp / "p"], [
        f"--input {tmp / 'nope.txt'}: no such file"]


def c_predict_input_is_directory(runs, tmp, tiny):
    (tmp / "dir").mkdir()
    return ["predict", runs["subnetwork"], "--input", tmp / "dir", "--output", tmp / "p"], ["is a directory"]


def c_predict_empty_text(runs, tmp, tiny):
    path = text_file(tmp, "\n \n")
    return ["predict", runs["subnetwork"], "--input", path, "--output", tmp / "p"], [f"--input {path}: no sentences"]


def c_predict_not_utf8(runs, tmp, tiny):
    path = text_file(tmp, "the dog\ncaf\xe9 runs\n".encode("latin-1"))
    return ["predict", runs["subnetwork"], "--input", path, "--output", tmp / "p"], [
        f"{path}:2: not valid UTF-8", "re-encode"]


def c_predict_bad_conllu(runs, tmp, tiny):
    path = text_file(tmp, "1 The the DET _ _ 2 det _ _\n", "in.conllu")
    return ["predict", runs["subnetwork"], "--input", path, "--output", tmp / "p", "--input-format", "conllu"], [
        f"{path}:1: expected 10 tab-separated columns", "tabs, not spaces"]


def c_predict_bad_conllu_tree(runs, tmp, tiny):
    row = "\t".join
    path = text_file(tmp, row(["1", "a", "a", "DET", "_", "_", "2", "det", "_", "_"]) + "\n"
                     + row(["2", "b", "b", "NOUN", "_", "_", "1", "dep", "_", "_"]) + "\n\n", "in.conllu")
    return ["predict", runs["subnetwork"], "--input", path, "--output", tmp / "p"], [f"{path}:1: sentence has no root"]


def c_predict_conll2003_to_upos_run(runs, tmp, tiny):
    path = text_file(tmp, "-DOCSTART- -X- O O\n\nJohn NNP I-NP I-PER\n")
    return ["predict", runs["subnetwork"], "--input", path, "--output", tmp / "p"], [
        "--input: a upos run reads CoNLL-U or plain text, not CoNLL-2003 columns"]


def c_predict_bad_conll2003(runs, tmp, tiny):
    path = text_file(tmp, "-DOCSTART- -X- O O\n\nJohn NNP I-NP I-PER\nsaw VBD I-VP Q\n")
    return ["predict", runs["ner"], "--input", path, "--output", tmp / "p"], [
        f"{path}:4: invalid NER tag 'Q'", "tags must be O, B-TYPE or I-TYPE"]


def c_predict_conllu_to_ner_run(runs, tmp, tiny):
    row = "\t".join(["1", "John", "john", "PROPN", "_", "_", "0", "root", "_", "_"])
    path = text_file(tmp, row + "\n\n", "in.conllu")
    return ["predict", runs["ner"], "--input", path, "--output", tmp / "p"], [
        "--input: a ner run reads CoNLL-2003 columns or plain text, not CoNLL-U"]


def c_predict_unfinished_run(runs, tmp, tiny):
    run = copy(runs["subnetwork"], tmp / "run")
    (run / "metrics.json").unlink()
    return ["predict", run, "--input", text_file(tmp, "the dog\n"), "--output", tmp / "p"], [
        f"{run}: not a finished subprobe run (no metrics.json)", f"subprobe probe --resume {run}"]


def c_predict_finetune_run(runs, tmp, tiny):
    return ["predict", runs["finetune"], "--input", text_file(tmp, "the dog\n"), "--output", tmp / "p"], [
        "a finetune run does not save its fine-tuned encoder weights", "use a subnetwork, mlp or linear run"]


def c_predict_head_vocabulary_mismatch(runs, tmp, tiny):
    run = copy(runs["subnetwork"], tmp / "run")
    vocab = json.loads((run / "vocab.json").read_text())
    vocab["upos"].append("EXTRA")
    (run / "vocab.json").write_text(json.dumps(vocab))
    return ["predict", run, "--input", text_file(tmp, "the dog\n"), "--output", tmp / "p"], [
        f"{run / 'head.safetensors'}: does not fit the probe that config.yaml and vocab.json describe",
        "train the run again"]


def c_predict_out_is_input(runs, tmp, tiny):
    path = text_file(tmp, "the dog runs\n")
    return ["predict", runs["subnetwork"], "--input", path, "--output", path], [
        f"--output {path}: is the --input file"]


def c_predict_out_in_missing_directory(runs, tmp, tiny):
    return ["predict", runs["subnetwork"], "--input", text_file(tmp, "the dog\n"), "--output", tmp / "no" / "p"], [
        "does not exist; create it first"]


def c_predict_no_run(runs, tmp, tiny):
    return ["predict", tmp / "nope", "--input", text_file(tmp, "the dog\n"), "--output", tmp / "p"], [
        f"{tmp / 'nope'}: no such run directory"]


def c_export_existing_out(runs, tmp, tiny):
    (tmp / "out").mkdir()
    (tmp / "out" / "mine.txt").write_text("keep")
    return ["export", runs["subnetwork"], "--model-dir", tmp / "out"], ["directory is not empty; pass --overwrite"]


def c_export_overwrite_not_a_model(runs, tmp, tiny):
    (tmp / "out").mkdir()
    (tmp / "out" / "mine.txt").write_text("keep")
    return ["export", runs["subnetwork"], "--model-dir", tmp / "out", "--overwrite"], [
        "not an exported model (no config.json), so --overwrite will not delete it"]


def c_export_out_holds_run(runs, tmp, tiny):
    run = copy(runs["subnetwork"], tmp / "runs" / "run")
    return ["export", run, "--model-dir", tmp / "runs", "--overwrite"], [
        "holds the run directory", "choose another --model-dir"]


def c_export_unfinished_run(runs, tmp, tiny):
    run = copy(runs["subnetwork"], tmp / "run")
    (run / "metrics.json").unlink()
    return ["export", run, "--model-dir", tmp / "out"], [
        "not a finished subprobe run", f"subprobe probe --resume {run}"]


def c_export_not_a_subnetwork(runs, tmp, tiny):
    return ["export", runs["mlp"], "--model-dir", tmp / "out"], ["a --probe mlp run has no mask to bake"]


def c_compare_different_models(runs, tmp, tiny):
    return ["compare", runs["subnetwork"], runs["wide"]], ["subnetworks are not comparable"]


def c_compare_run_without_masks(runs, tmp, tiny):
    return ["compare", runs["subnetwork"], runs["mlp"]], [
        f"{runs['mlp']}: no masks.safetensors; compare needs two subnetwork-probe runs"]


def c_report_empty_store(runs, tmp, tiny):
    (tmp / "store" / "runs").mkdir(parents=True)
    (tmp / "store" / "index.json").write_text("{}")
    return ["report", tmp / "store", "--report-dir", tmp / "report"], ["no finished runs to report"]


def c_report_only_failed_points(runs, tmp, tiny):
    (tmp / "store").mkdir()
    (tmp / "store" / "index.json").write_text(json.dumps(
        {"k": {"status": "failed", "error": "boom", "run_dir": "runs/x", "config": {}}}))
    return ["report", tmp / "store", "--report-dir", tmp / "report"], [
        "no finished runs to report (1 left out, the first: ", "point k failed (boom)"]


def c_report_out_is_a_file(runs, tmp, tiny):
    return ["report", runs["subnetwork"].parent, "--report-dir", text_file(tmp, "x")], ["exists and is not a directory"]


def c_report_no_directory(runs, tmp, tiny):
    return ["report", tmp / "nope", "--report-dir", tmp / "report"], ["no such directory"]


def grid_case(text: str, *needles: str):
    def case(runs, tmp, tiny):
        grid = text_file(tmp, text, "grid.yaml")
        return ["sweep", grid, "--store", tmp / "store", *tiny], [str(grid) + needles[0], *needles[1:]]
    return case


c_grid_yaml_syntax = grid_case("axes:\n  task: [upos\n  probe: [mlp]\n", ":3: not valid YAML")
c_grid_unknown_axis_value = grid_case("axes:\n  setting: [pretrained]\n  task: [upos, srl]\n",
                                      ":3: axis task: task 'srl' is not known", "use one of upos, dep, ner")
c_grid_unknown_key = grid_case("axes:\n  probe:\n    - {probe: mlp, rnak: 2}\n",
                               ":3: axis probe: unknown configuration key 'rnak'")
c_grid_wrong_type = grid_case("axes:\n  probe: [mlp]\nprofiles:\n  quick: {epochs: three}\n",
                              ":4: profile quick: epochs must be an integer or null, got 'three'")
c_grid_not_a_mapping = grid_case("- upos\n- dep\n", ":1: a grid is a YAML mapping with 'axes'")
def c_grid_unknown_profile(runs, tmp, tiny):
    grid = text_file(tmp, "axes:\n  probe: [mlp]\n", "grid.yaml")
    return ["sweep", grid, "--store", tmp / "store", "--profile", "fast", *tiny], [
        "--profile 'fast' is not defined by grid grid"]


def c_sweep_axis_override(runs, tmp, tiny):
    grid = text_file(tmp, "axes:\n  probe: [mlp, linear]\n", "grid.yaml")
    return ["sweep", grid, "--store", tmp / "store", "--probe", "mlp", *tiny], ["--probe: an axis of grid grid"]


def c_sweep_executor_extra_missing(runs, tmp, tiny):
    sys.modules["ray"] = None  # as if the [ray] extra were not installed (undone by the test)
    grid = text_file(tmp, "axes:\n  probe: [mlp]\n", "grid.yaml")
    return ["sweep", grid, "--store", tmp / "store", "--executor", "ray", *tiny], [
        "--executor ray needs Ray: pip install 'subprobe[ray]'"]


def c_sweep_slurm_without_slurm(runs, tmp, tiny):
    if shutil.which("srun"):
        pytest.skip("this machine has SLURM")
    grid = text_file(tmp, "axes:\n  probe: [mlp]\n", "grid.yaml")
    return ["sweep", grid, "--store", tmp / "store", "--executor", "slurm", *tiny], [
        "--executor slurm: this machine is not part of a SLURM cluster (no srun command)"]


def c_sweep_missing_grid(runs, tmp, tiny):
    return ["sweep", tmp / "nope.yaml", "--store", tmp / "store"], ["no such grid file"]


def config_case(text: str, *needles: str):
    def case(runs, tmp, tiny):
        config = text_file(tmp, text, "config.yaml")
        return ["probe", "--config", config, "--out", tmp / "run"], [str(config) + needles[0], *needles[1:]]
    return case


c_config_unknown_key = config_case("task: upos\nepochz: 3\n", ":2: unknown configuration keys epochz")
c_config_wrong_type = config_case("task: upos\nbatch_size: '32'\n", ":2: batch_size must be an integer, got '32'")
c_config_wrong_choice = config_case("probe: svm\n", ":1: probe 'svm' is not known")
c_config_not_finite = config_case("lambda_max: .nan\n", ":1: lambda_max must be a finite number, got nan")
c_config_python_tag = config_case("task: !!python/object/apply:os.getcwd []\n", ":1: not valid YAML")


def c_probe_overwrite_foreign_directory(runs, tmp, tiny):
    (tmp / "out").mkdir()
    (tmp / "out" / "thesis.tex").write_text("years of work")
    return ["probe", *tiny, "--out", tmp / "out", "--overwrite", "--epochs", "1", "--precision", "fp32"], [
        "holds files but no subprobe run (no config.yaml), so --overwrite will not delete it"]


CASES = {name[2:]: case for name, case in dict(globals()).items() if name.startswith("c_") and callable(case)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, runs, tiny_bert, tiny_ud, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", sys.modules.get("ray"))  # restored after c_sweep_executor_extra_missing
    tiny = ["--model", tiny_bert, "--train", tiny_ud["train"], "--dev", tiny_ud["dev"]]
    before_runs = {name: snapshot(path) for name, path in runs.items()}
    argv, needles = CASES[case](runs, tmp_path, tiny)
    before = snapshot(tmp_path)
    refused(argv, capsys, *needles)
    assert snapshot(tmp_path) == before, "something was written or changed"
    assert {name: snapshot(path) for name, path in runs.items()} == before_runs


def test_reproduce_unknown_task_is_one_argparse_line(tmp_path, capsys):
    refused_by_argparse(["reproduce", "table1", "--tasks", "srl", "--store", tmp_path / "s"], capsys,
                        "argument --tasks: 'srl' is not known; use one of upos, dep", "see `subprobe reproduce --help`")
    refused_by_argparse(["predict", "x"], capsys, "the following arguments are required: --input")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ rows that are not errors


def test_compare_of_two_layouts_compares_kept_weights(runs, capsys):
    assert main(["compare", str(runs["subnetwork"]), str(runs["contiguous"]), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    overall = numbers["overall"]
    assert overall["weights"] == 2 * (4 * 32 * 32 + 2 * 32 * 64)  # every masked weight of the tiny BERT, once
    assert overall["kept_both"] + overall["kept_only_a"] + overall["kept_only_b"] <= overall["weights"]
    assert 0 <= overall["agreement"] <= 1 and set(numbers) >= {"by_layer", "by_role"}


def test_export_of_a_reset_run_bakes_the_seeded_reinitialised_model(runs, tmp_path):
    import torch
    from safetensors.torch import load_file

    for out in ("a", "b"):
        assert main(["export", str(runs["reset"]), "--model-dir", str(tmp_path / out)]) == 0
    assert main(["export", str(runs["subnetwork"]), "--model-dir", str(tmp_path / "pretrained")]) == 0
    a, b, pre = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("a", "b", "pretrained"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same seeded draw
    word = next(k for k in a if "word_embeddings" in k)
    assert not torch.equal(a[word], pre[word])  # reset-all: embeddings re-initialised too


def test_report_leaves_out_a_failed_point_and_says_so(runs, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(runs["subnetwork"], store / "runs" / "ok")
    (store / "index.json").write_text(json.dumps({
        "a": {"status": "done", "run_dir": "runs/ok", "config": {}},
        "b": {"status": "failed", "error": "subprobe: CUDA out of memory", "run_dir": "runs/bad", "config": {}}}))
    assert main(["report", str(store), "--report-dir", str(tmp_path / "report")]) == 0
    err = capsys.readouterr().err
    assert f"subprobe: note: {store / 'index.json'}: point b failed (subprobe: CUDA out of memory)" in err
    assert "1 finished run(s)" in (tmp_path / "report" / "index.html").read_text()


def test_a_metrics_file_of_the_first_version_is_reported_and_resumed(runs, tmp_path, capsys):
    """metrics.json as the first subprobe wrote it (no coverage, heads, decoder, mask source, ...)."""
    run = copy(runs["subnetwork"], tmp_path / "old" / "run")
    first = ("task", "probe", "setting", "model", "primary_metric", "dev", "test", "dev_soft", "test_soft",
             "mask_params", "masked_weights", "density", "density_by_layer", "density_by_role", "probe_params",
             "bits", "bits_note", "head_params", "sentences", "dropped_long", "train", "wall_seconds")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({k: metrics[k] for k in first if k in metrics}))
    assert main(["report", str(tmp_path / "old"), "--report-dir", str(tmp_path / "report")]) == 0
    assert "1 finished run(s)" in (tmp_path / "report" / "index.html").read_text()
    assert main(["probe", "--resume", str(run)]) == 0
    assert "already finished" in capsys.readouterr().out
    bare = {k: metrics[k] for k in ("task", "probe", "setting", "model", "primary_metric", "dev")}
    (run / "metrics.json").write_text(json.dumps(bare))  # older still: the summary shows what there is
    assert main(["probe", "--resume", str(run)]) == 0
    # not a probing run at all: left out with a note
    (run / "metrics.json").write_text(json.dumps({"matrices": 12}))
    assert main(["report", str(tmp_path / "old"), "--report-dir", str(tmp_path / "r2")]) == 2
    assert "metrics.json: no task, probe, setting, primary_metric" in capsys.readouterr().err


def test_every_case_is_a_row_of_the_docs_table():
    """docs/reliability.md lists the cases by id (`case-id` in the first column), and only those."""
    rows = set(re.findall(r"^\| `([a-z0-9_]+)`", DOC.read_text(encoding="utf-8"), flags=re.M))
    tested = set(CASES) | {"reproduce_unknown_task", "compare_two_layouts", "export_reset_run", "report_failed_point",
                           "report_old_metrics"}
    assert rows == tested, (sorted(rows - tested), sorted(tested - rows))
