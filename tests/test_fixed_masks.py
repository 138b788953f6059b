"""--random-mask-like and --complement-of: the fixed masks by hand, and tiny runs that train only the head."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
import torch

from subprobe.cli import main
from subprobe.masking import counting
from subprobe.masking import hard_concrete as hc
from subprobe.masking.fixed import FIXED_LOGIT, complement, random_like
from subprobe.masking.subnetwork import MaskEntry, Subnetwork
from subprobe.report.mask_sources import controls_rows, controls_table, is_lambda_subnetwork, mask_source
from subprobe.report.tables import _row_key
from tests.conftest import probe_argv
from tests.synthetic_runs import tiny_subnetwork


def _kept(sub: Subnetwork) -> dict[str, int]:
    return {e.name: counting.kept_units(e.log_alpha) for e in sub.entries}


def test_random_like_keeps_exactly_the_per_matrix_counts_and_differs() -> None:
    source = tiny_subnetwork([0.3, 0.7], block=(1, 1), seed=1)
    rand = random_like(source, seed=0)
    assert _kept(rand) == _kept(source)
    assert [e.block for e in rand.entries] == [e.block for e in source.entries]
    assert rand.layout == source.layout and rand.granularity == source.granularity
    assert rand.density() == source.density()
    assert rand.agreement(source) < 0.8  # 2 x 0.3 x 0.7 + ... of units disagree by chance, not 0
    same = sum(int(torch.equal(hc.hard_mask(a.log_alpha), hc.hard_mask(b.log_alpha)))
               for a, b in zip(rand.entries, source.entries))
    assert same == 0  # no matrix of 1024+ units drawn identical


def test_random_like_is_seeded() -> None:
    source = tiny_subnetwork([0.5, 0.5], block=(1, 1))
    assert random_like(source, 3).agreement(random_like(source, 3)) == 1.0
    assert random_like(source, 3).agreement(random_like(source, 4)) < 1.0


def test_complement_is_exactly_the_dropped_units() -> None:
    source = tiny_subnetwork([0.3, 0.8], block=(32, 1), seed=2)
    comp = complement(source)
    for s, c in zip(source.entries, comp.entries):
        assert torch.equal(hc.hard_mask(c.log_alpha), 1.0 - hc.hard_mask(s.log_alpha))
    total = source.num_masked_weights
    assert comp.kept_weights() == total - source.kept_weights()
    assert comp.density() == pytest.approx(1.0 - source.density(), abs=1e-12)
    by_layer, theirs = comp.density_by("layer"), source.density_by("layer")
    assert all(by_layer[k] == pytest.approx(1.0 - theirs[k]) for k in theirs)
    assert complement(comp).agreement(source) == 1.0


def test_fixed_logits_give_exact_masks_in_every_mode() -> None:
    log_alpha = torch.tensor([FIXED_LOGIT, -FIXED_LOGIT] * 5000)
    expected = torch.tensor([1.0, 0.0] * 5000)
    assert torch.equal(hc.soft_mask(log_alpha), expected)
    assert torch.equal(hc.hard_mask(log_alpha), expected)
    for seed in range(3):  # the noise's extremes are clamped at NOISE_EPS: every sample is exactly 0 or 1
        assert torch.equal(hc.sample_mask(log_alpha, torch.Generator().manual_seed(seed)), expected)


@pytest.fixture(scope="module")
def source_run(tiny_bert, tiny_ud, tmp_path_factory):
    out = tmp_path_factory.mktemp("fixed") / "learnt"
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--lambda-max", "5", epochs=4)) == 0
    return out


def _counts(run) -> dict[str, int]:
    return _kept(Subnetwork.load(run / "masks.safetensors"))


def test_random_like_run_trains_only_the_head(tiny_bert, tiny_ud, tmp_path, source_run) -> None:
    out = tmp_path / "random"
    argv = probe_argv(tiny_bert, tiny_ud, out, "--random-mask-like", str(source_run), "--mask-seed", "7")
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    learnt = json.loads((source_run / "metrics.json").read_text())
    assert 0 < learnt["density"] < 1  # the source dropped some units and kept others
    assert metrics["mask_source"] == "random-like" and metrics["mask_source_run"] == str(source_run)
    assert metrics["mask_seed"] == 7
    assert metrics["density"] == learnt["density"]
    assert metrics["density_by_role"] == learnt["density_by_role"]
    assert _counts(out) == _counts(source_run)
    masks = Subnetwork.load(out / "masks.safetensors")
    assert all(set(e.log_alpha.abs().unique().tolist()) == {FIXED_LOGIT} for e in masks.entries)  # not trained
    assert masks.agreement(Subnetwork.load(source_run / "masks.safetensors")) < 1.0
    assert metrics["dev_soft"] == metrics["dev"]  # a fixed mask is its own soft mask
    assert _row_key({**metrics, "config": {}}) is None  # not a row of the paper's tables


def test_complement_run_keeps_the_dropped_units(tiny_bert, tiny_ud, tmp_path, source_run) -> None:
    out = tmp_path / "complement"
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--complement-of", str(source_run))) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    learnt = json.loads((source_run / "metrics.json").read_text())
    assert metrics["mask_source"] == "complement" and "mask_seed" not in metrics
    assert metrics["density"] == pytest.approx(1.0 - learnt["density"], abs=1e-12)
    ours, theirs = Subnetwork.load(out / "masks.safetensors"), Subnetwork.load(source_run / "masks.safetensors")
    for a, b in zip(ours.entries, theirs.entries):
        assert torch.equal(hc.hard_mask(a.log_alpha), 1.0 - hc.hard_mask(b.log_alpha))


def test_a_control_keeps_its_source_units(tiny_bert, tiny_ud, tmp_path, source_run, capsys) -> None:
    argv = probe_argv(tiny_bert, tiny_ud, tmp_path / "r", "--complement-of", str(source_run), "--granularity", "weight")
    assert main(argv) == 2
    assert "the source run" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(probe_argv(tiny_bert, tiny_ud, tmp_path / "r2", "--complement-of", str(tmp_path / "nothing"))) == 2
    assert "not a finished subnetwork run" in capsys.readouterr().err


def test_report_keeps_controls_and_density_targets_out_of_the_lambda_rows() -> None:
    base = {"probe": "subnetwork", "config": {"granularity": "neuron", "lambda_max": 1.0}}
    assert is_lambda_subnetwork(base) and _row_key(base) == "subnetwork@1"
    assert mask_source({**base, "config": {"complement_of": "runs/x"}}) == "complement"
    for extra in ({"mask_source": "random-like"}, {"mask_source": "complement"}, {"target_density": 0.3}):
        assert _row_key({**base, **extra}) is None


def _result(run_dir: str, source: str, acc: float, density: float, **extra) -> dict:
    return {"task": "upos", "probe": "subnetwork", "setting": "pretrained", "primary_metric": "accuracy",
            "run_dir": run_dir, "dev": {"accuracy": acc}, "density": density, "mask_source": source, **extra}


def test_controls_table_puts_each_control_beside_its_source() -> None:
    results = [
        _result("/runs/learnt", "learnt", 0.90, 0.25),
        _result("/runs/r0", "random-like", 0.50, 0.25, mask_source_run="/runs/learnt"),
        _result("/runs/r1", "random-like", 0.60, 0.25, mask_source_run="/runs/learnt"),
        _result("/runs/c", "complement", 0.40, 0.75, mask_source_run="learnt"),  # recorded relative: by name
        _result("/runs/other", "learnt", 0.80, 0.5),  # no controls: no row
    ]
    rows = controls_rows(results)
    # two random-like runs: mean ± sd [t interval, clipped]; no sentence statistics (no run directories): p is "–"
    assert rows == [["upos", "pretrained", "learnt", "accuracy", "90.00", "0.2500",
                     "55.00 ± 7.07 [0.00, 100.00] (n=2)", "0.2500", "–", "40.00", "0.7500", "–"]]
    table = controls_table(results)
    assert table.id == "mask-controls" and len(table.header) == len(rows[0])


def test_report_shows_learnt_random_like_and_complement(tiny_bert, tiny_ud, tmp_path, source_run) -> None:
    from subprobe.report.html import write_report

    runs = tmp_path / "runs"
    shutil.copytree(source_run, runs / "learnt")
    for flag, name in (("--random-mask-like", "random"), ("--complement-of", "complement")):
        assert main(probe_argv(tiny_bert, tiny_ud, runs / name, flag, str(runs / "learnt"))) == 0
    write_report(runs, tmp_path / "report", echo=lambda *a, **k: None)
    csv_rows = (tmp_path / "report" / "mask-controls.csv").read_text().splitlines()
    assert len(csv_rows) == 2 and csv_rows[1].startswith("upos,pretrained,learnt,accuracy,")
    row = next(csv.reader(io.StringIO(csv_rows[1])))
    # real runs save their per-sentence statistics: the paired tests have p-values in (0, 1]
    assert 0 < float(row[8]) <= 1 and 0 < float(row[11]) <= 1
    assert "Learnt vs random-like vs complement" in (tmp_path / "report" / "report.md").read_text()


def test_random_like_run_resumes_and_loads(tiny_bert, tiny_ud, tmp_path, monkeypatch, source_run) -> None:
    from subprobe.loaded import load_run
    from tests.test_resume import resumed_equals_uninterrupted

    extra = ("--random-mask-like", str(source_run), "--checkpoint-every", "4")
    out = resumed_equals_uninterrupted(tiny_bert, tiny_ud, tmp_path, monkeypatch, *extra)
    loaded = load_run(out)  # what `subprobe predict` uses: the saved frozen mask, without the source run
    assert loaded.subnetwork.agreement(Subnetwork.load(out / "masks.safetensors")) == 1.0


def test_random_like_draws_a_shared_mask_once_per_group() -> None:
    """--granularity head: Q's rows and O's columns of a head share one mask, so they share one draw."""
    heads = torch.tensor([3.0, -3.0, 3.0, -3.0])  # 2 of 4 heads kept
    source = Subnetwork((
        MaskEntry("q", "q", 0, (32, 32), (8, 32), heads.view(4, 1), group="layer.0.attention"),
        MaskEntry("o", "o", 0, (32, 32), (32, 8), heads.view(1, 4), group="layer.0.attention"),
        MaskEntry("f", "ffn_in", 0, (32, 32), (8, 32), heads.view(4, 1)),
    ), "contiguous", "head")
    for seed in range(5):
        rand = random_like(source, seed)
        q, o, f = (hc.hard_mask(e.log_alpha) for e in rand.entries)
        assert torch.equal(q.flatten(), o.flatten()) and int(q.sum()) == 2 and int(f.sum()) == 2


def test_a_control_refuses_a_source_of_other_weights(tiny_bert, tiny_ud, tmp_path, source_run, capsys) -> None:
    """Same shapes, other weights: another checkpoint (a copy of the tiny BERT re-initialised), another setting, or
    another reset seed of a reset model -- each one line, nothing written."""
    import shutil

    from transformers import AutoModel

    other = tmp_path / "other-bert"
    shutil.copytree(tiny_bert, other)
    torch.manual_seed(1)
    AutoModel.from_config(AutoModel.from_pretrained(tiny_bert).config).save_pretrained(other)
    cases = [
        (("--model", str(other)), "--model"),
        (("--setting", "reset-all"), "--setting pretrained, this run has --setting reset-all"),
    ]
    for flag in ("--random-mask-like", "--complement-of"):
        for extra, needle in cases:
            out = tmp_path / "control"
            argv = probe_argv(tiny_bert, tiny_ud, out, flag, str(source_run), *extra)
            if extra[0] == "--model":
                argv[argv.index("--model") + 1] = str(other)
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and needle in err and "a control keeps the weights" in err
            assert not out.exists()
    reset = tmp_path / "reset-source"
    assert main(probe_argv(tiny_bert, tiny_ud, reset, "--setting", "reset-all", "--reset-seed", "1", epochs=1)) == 0
    argv = probe_argv(tiny_bert, tiny_ud, tmp_path / "c", "--complement-of", str(reset), "--setting", "reset-all")
    assert main(argv) == 2
    assert "--reset-seed 1, this run has --reset-seed 0" in capsys.readouterr().err
    argv = probe_argv(tiny_bert, tiny_ud, tmp_path / "c", "--complement-of", str(reset), "--setting", "reset-all",
                      "--reset-seed", "1", epochs=1)
    assert main(argv) == 0
    same = probe_argv(tiny_bert, tiny_ud, tmp_path / "d", "--complement-of", str(source_run), epochs=1)
    same[same.index("--model") + 1] = str(tiny_bert) + "/"  # the same directory written another way
    assert main(same) == 0
