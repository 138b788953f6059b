"""The whole pipeline on a tiny random BERT: CLI, Python API, run directory, reproducibility."""

import json

import pytest
import torch
from safetensors.torch import load_file

import subprobe
from subprobe.cli import main
from tests import oracle
from tests.conftest import probe_argv


def run_cli(tiny_bert, tiny_ud, out, *extra):
    return main(probe_argv(tiny_bert, tiny_ud, out, *extra))


def test_cli_run_writes_the_run_directory(tiny_bert, tiny_ud, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(tiny_bert, tiny_ud, out) == 0
    printed = capsys.readouterr().out
    assert "dev  accuracy hard mask" in printed and "density" in printed
    for name in (
        "config.yaml",
        "env.json",
        "log.jsonl",
        "masks.safetensors",
        "metrics.json",
        "vocab.json",
        "head.safetensors",
    ):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "upos" and m["probe"] == "subnetwork" and m["setting"] == "pretrained"
    assert m["primary_metric"] == "accuracy"
    for key in ("dev", "test", "dev_soft", "test_soft"):
        assert 0.0 <= m[key]["accuracy"] <= 1.0
    # tiny model: hidden 32, 2 layers; neuron = (32, 1): Q,K,V,O 32 each, FFN-in 64x32 -> 2x32, FFN-out 32x64 -> 64
    assert m["mask_params"] == 2 * (4 * 32 + 64 + 64)
    assert m["bits"] == {"lower": m["mask_params"], "upper": m["mask_params"]}
    assert 0.0 <= m["density"] <= 1.0
    vocab = json.loads((out / "vocab.json").read_text())["upos"]
    assert vocab == sorted(vocab)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log and all("lambda" in r and "dev" in r for r in log)


def test_density_in_metrics_equals_count_from_saved_masks(tiny_bert, tiny_ud, tmp_path):
    out = tmp_path / "run"
    assert run_cli(tiny_bert, tiny_ud, out, "--mask-lr", "2.0", "--lambda-max", "5") == 0
    m = json.loads((out / "metrics.json").read_text())
    logits = load_file(str(out / "masks.safetensors"))
    kept = total = 0
    for la in logits.values():
        hard = oracle.hard_mask_tensor(la)
        # neuron granularity: each mask entry covers 32 rows of one column
        kept += hard.sum().item() * 32
        total += la.numel() * 32
    assert m["density"] == pytest.approx(kept / total)
    assert m["masked_weights"] == total


def test_seeded_run_reproduces_metrics_and_masks(tiny_bert, tiny_ud, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(tiny_bert, tiny_ud, a) == 0
    assert run_cli(tiny_bert, tiny_ud, b) == 0
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("dev", "test", "dev_soft", "test_soft", "density", "mask_params"):
        assert ma[key] == mb[key], key
    la, lb = load_file(str(a / "masks.safetensors")), load_file(str(b / "masks.safetensors"))
    assert la.keys() == lb.keys()
    assert all(torch.equal(la[k], lb[k]) for k in la)


def test_python_api_returns_subnetwork_that_round_trips(tiny_bert, tiny_ud, tmp_path):
    config = subprobe.ProbeConfig(
        task="upos",
        model=str(tiny_bert),
        train=str(tiny_ud["train"]),
        dev=str(tiny_ud["dev"]),
        epochs=1,
        batch_size=4,
        out=str(tmp_path / "api"),
        progress=False,
        precision="fp32",
        granularity="paper-3",
    )
    result = subprobe.probe(config, echo=lambda *a, **k: None)
    sub = result.subnetwork
    assert isinstance(sub, subprobe.Subnetwork)
    assert sub.num_mask_params == result.metrics["mask_params"]
    assert result.metrics["test"] is None  # no test file given
    loaded = subprobe.Subnetwork.load(tmp_path / "api" / "masks.safetensors")
    assert loaded.density() == sub.density() and loaded.agreement(sub) == 1.0
    assert set(sub.density_by("layer")) == {"0", "1"}
    # that the saved masks reproduce the trained encoder is held by tests/test_integration_masks.py


def test_dry_run_prints_counts(tiny_bert, capsys):
    assert main(["probe", "--model", str(tiny_bert), "--dry-run", "--granularity", "weight"]) == 0
    out = capsys.readouterr().out
    # 2 layers x (4 x 32x32 + 2 x 32x64) weights, one mask each
    assert "12 matrices, 16,384 masked weights, 16,384 mask parameters" in out


@pytest.mark.parametrize("family", ["roberta", "distilbert", "electra"])
def test_other_families_find_six_matrices_per_layer(tmp_path, family):
    from subprobe.models.loading import load_encoder
    from subprobe.models.targets import find_targets
    from tests.conftest import build_tiny_model

    path = build_tiny_model(tmp_path / family, family=family)
    model, _ = load_encoder(str(path))
    targets = find_targets(model, model.config.model_type)
    assert len(targets) == 12
    assert [t.role for t in targets[:6]] == ["q", "k", "v", "o", "ffn_in", "ffn_out"]


def test_user_errors_are_one_line_with_exit_2(tiny_bert, tiny_ud, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert run_cli(tiny_bert, tiny_ud, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == "{}"  # nothing lost
    assert main(["probe", "--task", "srl", "--train", str(tiny_ud["train"])]) == 2
    assert "--task 'srl' is not known" in capsys.readouterr().err
    assert main(["probe", "--model", str(tmp_path / "nope"), "--dry-run"]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["probe", "--model", str(tiny_bert), "--dry-run", "--granularity", "5,1"]) == 2
    assert "does not divide" in capsys.readouterr().err
