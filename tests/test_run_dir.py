"""RunDir (file names, status, reads and writes), Result.load and the one builder of metrics.json."""

from __future__ import annotations

import json

import pytest

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.runs import RunDir, run_status
from subprobe.runs.result import MaskFacts, Result, TrainFacts, build_metrics
from tests.synthetic_runs import tiny_subnetwork


def test_status_follows_the_files(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.status() == "missing"
    run.prepare(overwrite=False)
    assert run.status() == "empty"
    (run.path / "notes.txt").write_text("mine")
    assert run.status() == "foreign"
    run.write_config(ProbeConfig(task="upos"))
    assert run.status() == "started" and run_status(run.path) == "started"
    run.checkpoint_path.write_bytes(b"x")
    assert run.status() == "checkpoint"
    run.write_metrics({"task": "upos"})
    assert run.status() == "finished" and run.finished
    run.remove_checkpoint()
    assert not run.checkpoint_path.exists()
    assert run.predictions_path("dev", ".conllu") == run.path / "predictions-dev.conllu"
    assert run.missing_for_load() == ["vocab.json", "head.safetensors"]


def test_build_metrics_order_and_omissions():
    metrics = build_metrics(
        task="upos", probe="subnetwork", setting="pretrained", model="m", primary_metric="accuracy",
        task_facts={"decoder": "mst"}, scores={"dev": {"accuracy": 0.5}, "test": None},
        soft_scores={"dev": {"accuracy": 0.25}}, masks=MaskFacts(mask_params=12, density=0.75),
        probe_params=0, bits={"lower": 12, "upper": 12},
        train=TrainFacts(3, 4, True, 1.26, 10.04), wall_seconds=2.25,
    )
    assert list(metrics) == ["task", "probe", "setting", "model", "primary_metric", "decoder", "dev", "dev_soft",
                             "test", "mask_params", "density", "probe_params", "bits", "train", "wall_seconds"]
    assert metrics["train"] == {"steps": 3, "total_steps": 4, "stopped_early": True, "seconds": 1.3,
                                "words_per_second": 10.0}
    assert metrics["test"] is None and metrics["probe_params"] == 0 and metrics["wall_seconds"] == 2.2


def test_result_load_reads_back_a_finished_run(tmp_path):
    run = RunDir(tmp_path / "run").prepare(overwrite=False)
    sub = tiny_subnetwork([1.0, 0.0], seed=1)
    cfg = ProbeConfig(task="upos", probe="subnetwork")
    run.write_config(cfg)
    run.write_masks(sub)
    metrics = build_metrics(task="upos", probe="subnetwork", setting="pretrained", model="m",
                            primary_metric="accuracy", scores={"dev": {"accuracy": 0.5}}, masks=MaskFacts.of(sub))
    run.write_metrics(metrics)
    run.log_path.write_text(json.dumps({"step": 3}) + "\n", encoding="utf-8")
    result = Result.load(run.path)
    assert result.metrics == metrics and result.config == cfg and result.history == [{"step": 3}]
    assert result.subnetwork is not None and result.subnetwork.density() == sub.density() == 0.5
    assert metrics["mask_params"] == 2 * (4 * 32 + 2 * 64)  # q, k, v, o 1x32; ffn_in 2x32; ffn_out 1x64
    with pytest.raises(ConfigError, match="not a finished subprobe run"):
        Result.load(tmp_path / "nothing")
