"""A CLI that forgives (issue 25): every case is one line ``subprobe: error: ...``, a non-zero exit and nothing
written; or, where the case is not an error, the right result (lists, booleans, profiles, --list, show, dry run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import socket
from pathlib import Path

import pytest
import yaml

from subprobe.cli import build_parser, main
from tests.conftest import probe_argv


def snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns if p.is_file() else 0 for p in root.rglob("*")}


def one_line_error(argv, capsys, *needles: str, code: int = 2) -> str:
    """Run ``argv``: exit status ``code`` (from main or argparse), one error line holding every needle."""
    try:
        got = main([str(a) for a in argv])
    except SystemExit as stop:
        got = stop.code
    err = capsys.readouterr().err.strip()
    assert got == code, (argv, got, err)
    assert err.startswith("subprobe: error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty directory whose contents are compared afterwards (default run dirs land here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SUBPROBE_DATA", raising=False)
    return tmp_path


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command parser by its words: ``probe``, ..., ``data get``."""
    found, todo = {}, [((), build_parser())]
    while todo:
        words, parser = todo.pop()
        if parser._subparsers is None:
            found[" ".join(words)] = parser
            continue
        for name, child in parser._subparsers._group_actions[0].choices.items():
            todo.append(((*words, name), child))
    return found


# ------------------------------------------------------------------------------------------ flags and choices

def test_flags_are_never_abbreviated(in_tmp, capsys):
    one_line_error(["probe", "--ep", "1"], capsys, "unknown flag --ep (did you mean --epochs?)",
                   "see `subprobe probe --help`")
    one_line_error(["probe", "--lambda", "5"], capsys, "unknown flag --lambda (did you mean --lambda-end or "
                   "--lambda-max or --lambda-start?)")
    one_line_error(["probe", "--tasks", "upos,dep"], capsys, "unknown flag --tasks (did you mean --task?)")
    one_line_error(["reproduce", "table1", "--task", "upos", "--lis"], capsys, "unknown flag --lis (did you mean "
                   "--list?)", "see `subprobe reproduce --help`")
    assert list(in_tmp.iterdir()) == []
    assert all(not p.allow_abbrev for p in subcommands().values())


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_an_unknown_flag_of_every_command_is_one_line_with_the_closest(command, in_tmp, capsys):
    parser = subcommands()[command]
    words = command.split()
    positionals = ["table1" if a.dest == "what" else "x" for a in parser._actions
                   if not a.option_strings and a.dest != "help"]
    positionals += [x for a in parser._actions if a.required and a.option_strings for x in (a.option_strings[0], "x")]
    flags = sorted(o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and a.help is not argparse.SUPPRESS and o != "--help")
    typo = flags[0][:-1] + "x" + flags[0][-1] if flags else "--bogus"  # one letter added near the end
    err = one_line_error([*words, *positionals, typo, "1"], capsys, f"unknown flag {typo}",
                         f"see `subprobe {command} --help`")
    assert ("did you mean" in err) == bool(flags)
    assert list(in_tmp.iterdir()) == []


def test_bad_choices_name_the_closest(in_tmp, capsys):
    one_line_error(["reproduce", "tabel1"], capsys, "argument EXPERIMENT: 'tabel1' is not known (did you mean "
                   "table1?); use one of density")
    one_line_error(["probe", "--layout", "strided2", "--dry-run"], capsys,
                   "--layout 'strided2' is not known (did you mean strided?); use one of strided, contiguous")
    one_line_error(["report", ".", "--split", "tset"], capsys, "'tset' is not known (did you mean test?)")
    one_line_error(["probe", "--task", "upso", "--dry-run"], capsys, "(did you mean upos?)")
    one_line_error(["sweep", "table1", "--profile", "papr", "--list"], capsys,
                   "--profile 'papr' is not defined by grid table1 (did you mean paper?); use quick, paper")
    one_line_error(["reproduce", "table1", "--tasks", "upos,dpe", "--list"], capsys,
                   "argument --tasks: 'dpe' is not known (did you mean dep?)")
    assert list(in_tmp.iterdir()) == []


def test_rank_is_checked_before_anything_is_written(in_tmp, capsys):
    for extra in ([], ["--dry-run"]):
        one_line_error(["probe", "--probe", "mlp", "--rank", "full", *extra], capsys,
                       "--rank 'full' is not a rank; give a positive whole number", "or d for the model width")
    one_line_error(["probe", "--granularity", "nueron", "--dry-run"], capsys, "--granularity 'nueron' is not known")
    assert list(in_tmp.iterdir()) == []


# --------------------------------------------------------------------------------------- one syntax for each kind

def test_lists_take_commas_spaces_or_both():
    parse = build_parser().parse_args
    spellings = (["upos,dep"], ["upos", "dep"], ["upos,", "dep"], ["upos", ",dep"])
    assert {tuple(parse(["reproduce", "table1", "--tasks", *s]).tasks) for s in spellings} == {("upos", "dep")}
    for flag in ("--report-to", "--target-modules"):
        values = {parse(["probe", flag, *s]).__dict__[flag[2:].replace("-", "_")]
                  for s in (["tensorboard,mlflow"], ["tensorboard", "mlflow"], ["tensorboard, mlflow"])}
        assert values == {"tensorboard,mlflow"}, flag
    assert parse(["sweep", "g.yaml", "--report-to", "wandb", "tensorboard"]).report_to == "wandb,tensorboard"


def test_every_boolean_is_a_pair_and_a_model_runs_where_device_is():
    for command, parser in subcommands().items():
        for action in parser._actions:
            if action.nargs == 0 and not isinstance(action, argparse._HelpAction | argparse._VersionAction):
                assert isinstance(action, argparse.BooleanOptionalAction), (command, action.option_strings)
                assert len(action.option_strings) == 2, (command, action.option_strings)  # --x and --no-x
    with_device = {c for c, p in subcommands().items() if any("--device" in a.option_strings for a in p._actions)}
    assert with_device == {"probe", "mdl", "sweep", "reproduce", "predict", "export"}


def test_predict_on_a_device_that_is_not_there_is_one_line(tiny_bert, tiny_ud, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, run, "--probe", "linear", epochs=1)) == 0
    out = tmp_path / "pred.conllu"
    one_line_error(["predict", run, "--input", tiny_ud["dev"], "--output", out, "--device", "cuda"], capsys,
                   "--device cuda")
    assert not out.exists()
    assert main(["predict", str(run), "--input", str(tiny_ud["dev"]), "--output", str(out), "--device", "cpu"]) == 0
    assert out.is_file()


# ---------------------------------------------------------------------------------------------------- dry run

def test_dry_run_prints_settings_with_their_sources_data_run_dir_and_steps(tiny_bert, tiny_ud, in_tmp, capsys):
    config = in_tmp / "c.yaml"
    config.write_text("batch_size: 8\nseed: 3\n")
    argv = ["probe", "--dry-run", "--model", tiny_bert, "--train", tiny_ud["train"], "--dev", tiny_ud["dev"],
            "--probe", "mlp", "--rank", "4", "--epochs", "2", "--config", config]
    before = snapshot(in_tmp)
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["rank"] == ["4", "flag --rank"] and rows["epochs"] == ["2", "flag --epochs"]
    assert rows["batch_size"] == ["8", f"config file {config}"] and rows["seed"] == ["3", f"config file {config}"]
    assert rows["head_lr"] == ["0.001", "profile quick"] and rows["patience"] == ["4", "profile quick"]
    assert rows["task"] == ["upos", "default"]
    assert f"train {tiny_ud['train']}" in out and f"dev   {tiny_ud['dev']}" in out
    assert "run directory: runs/upos-mlp-r4-pretrained-s3 (new)" in out
    steps = math.ceil(24 / 8) * 2  # 24 training sentences, batches of 8, 2 epochs
    assert f"estimated steps: {steps} (2 epoch(s) x 3 batches of 8 from 24 training sentences" in out
    assert "masks: none (--probe mlp" in out and "mask parameters" not in out
    assert snapshot(in_tmp) == before  # nothing written


def test_dry_run_of_a_subnetwork_counts_its_masks_and_names_the_embedded_data(tiny_bert, in_tmp, capsys):
    assert main(["probe", "--dry-run", "--model", str(tiny_bert), "--max-train-samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "data: UD English-EWT r2.1, embedded in subprobe" in out and "en-ud-train.conllu.xz" in out
    assert "estimated steps: 12 (3 epoch(s) x 4 batches of 32 from 100 training sentences" in out  # quick: 3 epochs
    # neuron masks of the tiny BERT, per layer: Q, K, V, O (32 x 32) one per column, 32 each; FFN-in (64 x 32) one
    # per column in each of its 2 row groups of 32, 64; FFN-out (32 x 64) one per column, 64
    masks = 2 * (4 * 32 + 2 * 32 + 64)
    assert f"12 matrices, {2 * (4 * 32 * 32 + 2 * 32 * 64):,} masked weights, {masks:,} mask parameters" in out
    assert list(in_tmp.iterdir()) == []


# ------------------------------------------------------------------------------- profiles and a saved config

def test_a_saved_config_with_another_profile_takes_that_profiles_values(tiny_bert, tiny_ud, tmp_path, capsys):
    from subprobe.config import PROFILES

    run = tmp_path / "quick"
    assert main(["probe", "--probe", "linear", "--model", str(tiny_bert), "--train", str(tiny_ud["train"]), "--dev",
                 str(tiny_ud["dev"]), "--epochs", "1", "--head-lr", "0.01", "--out", str(run), "--no-progress"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["profile"], saved["patience"], saved["head_lr"], saved["epochs"], saved["eval_every"]) == (
        "quick", 4, 0.01, 1, 200)
    capsys.readouterr()
    assert main(["probe", "--config", str(run / "config.yaml"), "--profile", "paper", "--dry-run",
                 "--out", str(tmp_path / "paper")]) == 0
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ")}
    paper = PROFILES["paper"]
    assert rows["patience"] == [str(paper["patience"]), "profile paper"]  # quick's 4 was the profile's: replaced
    assert rows["eval_every"] == [str(paper["eval_every"]), "profile paper"]
    assert rows["head_lr"] == ["0.01", f"config file {run / 'config.yaml'}"]  # given in the first run: kept
    assert rows["epochs"] == ["1", f"config file {run / 'config.yaml'}"]  # given (quick would be 3): kept
    assert rows["profile"] == ["paper", "flag --profile"]


def test_a_grid_may_name_its_profiles_anything(tiny_bert, tiny_ud, tmp_path, capsys):
    from subprobe.experiments.grids import load_grid

    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\naxes:\n  probe: [linear]\nprofiles:\n  smoke: {epochs: 1, batch_size: 8}\n"
                    "  long: {epochs: 5}\n  paper: {}\n")
    loaded = load_grid(str(grid))
    assert loaded.profile_named(None) == "smoke"  # no quick: the first
    assert loaded.points("smoke") == [{"epochs": 1, "batch_size": 8, "probe": "linear"}]
    assert loaded.points("paper") == [{"profile": "paper", "probe": "linear"}]  # the run profile of that name
    common = ["sweep", str(grid), "--model", str(tiny_bert), "--train", str(tiny_ud["train"]), "--dev",
              str(tiny_ud["dev"]), "--store", str(tmp_path / "store")]
    assert main([*common, "--profile", "smoke", "--precision", "fp32"]) == 0
    (entry,) = json.loads((tmp_path / "store" / "index.json").read_text()).values()
    assert (entry["config"]["epochs"], entry["config"]["batch_size"], entry["status"]) == (1, 8, "done")
    capsys.readouterr()
    one_line_error([*common, "--profile", "lon"], capsys, "--profile 'lon' is not defined by grid g (did you mean "
                   "long?); use smoke, long, paper")


# ----------------------------------------------------------------------------- sweep --list, show, report

POINT_LINE = re.compile(r"^  \[(\d+)/(\d+)\] (done|running|failed|to go) +(\S+)(.*)$")


def listed(text: str) -> dict[str, tuple[str, str]]:
    """``--list``'s point lines as run directory name -> (state, detail)."""
    rows = [POINT_LINE.match(line) for line in text.splitlines()[1:-1]]
    assert all(rows), text
    return {m[4]: (m[3], m[5]) for m in rows}


def test_sweep_list_shows_every_point_and_its_state_without_writing(tiny_bert, tiny_ud, tmp_path, capsys):
    from subprobe.experiments.store import Store

    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\naxes:\n  probe: [linear, mlp]\nprofiles:\n  quick: {epochs: 1, batch_size: 8, "
                    "precision: fp32}\n")
    common = ["sweep", str(grid), "--model", str(tiny_bert), "--train", str(tiny_ud["train"]), "--dev",
              str(tiny_ud["dev"]), "--store", str(tmp_path / "store")]
    assert main(common) == 0  # seed 0 of both points
    capsys.readouterr()
    assert main([*common, "--seeds", "2", "--list"]) == 0
    rows = listed(capsys.readouterr().out)
    assert sorted(state for state, _ in rows.values()) == ["done", "done", "to go", "to go"]
    # seed 1 of mlp failed in an earlier sweep; seed 1 of linear runs in a process of this machine (this one)
    store = Store(tmp_path / "store")
    names = {name.split("-pretrained-")[0].split("-")[1] + name.split("-pretrained-")[1][:2]: name for name in rows}
    failed, running = names["mlps1"], names["linears1"]
    store.record(failed.rsplit("-", 1)[1], {"status": "failed", "error": "boom", "run_dir": f"runs/{failed}"})
    store.record(running.rsplit("-", 1)[1], {"status": "running", "host": socket.gethostname(), "pid": os.getpid(),
                                             "run_dir": f"runs/{running}"})
    before = snapshot(tmp_path / "store")
    assert main([*common, "--seeds", "2", "--list"]) == 0
    text = capsys.readouterr().out
    rows = listed(text)
    assert rows[failed] == ("failed", " -- boom") and rows[running][0] == "running"
    assert rows[names["mlps0"]][0] == rows[names["linears0"]][0] == "done"
    assert text.splitlines()[0] == f"grid g, profile quick: 4 point(s) in store {tmp_path / 'store'}"
    assert text.splitlines()[-1] == "2 done, 1 running, 1 failed, 0 to go"
    assert snapshot(tmp_path / "store") == before  # --list wrote nothing
    # a "running" entry whose process is gone is a point to go
    store.record(running.rsplit("-", 1)[1], {"pid": 2 ** 22 + 12345})
    assert main([*common, "--seeds", "2", "--list"]) == 0
    assert listed(capsys.readouterr().out)[running][0] == "to go"


def test_reproduce_list_counts_points_to_go_without_a_store(in_tmp, capsys):
    assert main(["reproduce", "table1", "--tasks", "upos", "dep", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "grid table1, profile quick: 18 point(s) in store results"  # 2 tasks x 3 settings x 3 probes
    assert lines[-1] == "0 done, 0 running, 0 failed, 18 to go" and len(lines) == 20
    assert list(in_tmp.iterdir()) == []


def test_show_summarises_a_finished_and_an_unfinished_run(tiny_bert, tiny_ud, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, run, "--seed", "2", epochs=1)) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"dev  accuracy hard mask {metrics['dev']['accuracy']:.4f}" in out
    assert f"density {metrics['density']:.4f}" in out and "seed=2" in out and f"run directory {run}" in out
    (run / "metrics.json").unlink()
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    last = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]
    assert "unfinished" in out and f"last dev check at step {last['step']}" in out
    assert f"subprobe probe --resume {run}" in out
    one_line_error(["show", tmp_path / "nope"], capsys, "no such run directory")


def test_report_writes_beside_the_runs_by_default_and_refuses_nothing_to_report(tiny_bert, tiny_ud, tmp_path,
                                                                                capsys):
    runs = tmp_path / "runs"
    assert main(probe_argv(tiny_bert, tiny_ud, runs / "a", "--probe", "linear", epochs=1)) == 0
    assert main(["report", str(runs)]) == 0
    assert (runs / "report" / "index.html").is_file()
    (tmp_path / "empty").mkdir()
    one_line_error(["report", tmp_path / "empty"], capsys, "no finished runs to report")
    assert list((tmp_path / "empty").iterdir()) == []


def test_the_old_out_spelling_still_works_with_one_note(tiny_bert, tiny_ud, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(probe_argv(tiny_bert, tiny_ud, runs / "a", "--probe", "linear", epochs=1)) == 0
    capsys.readouterr()
    assert main(["report", str(runs), "--out", str(tmp_path / "old")]) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "old" / "index.html").is_file()
    notes = [line for line in err.splitlines() if "--out" in line]
    assert notes == ["subprobe: note: `subprobe report --out` is now `--report-dir` (the old spelling still works "
                     "for now)"]
    parse = build_parser().parse_args
    assert parse(["sweep", "g", "--out", "s"]).store == "s" and parse(["sweep", "g"]).store == "results"
    assert parse(["predict", "r", "--input", "i", "--out", "o"]).output == "o"
    assert parse(["export", "r", "--out", "m"]).model_dir == "m"
