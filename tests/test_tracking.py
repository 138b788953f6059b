"""`--report-to tensorboard,mlflow,wandb`: what each tracker wrote, read back with its own reader."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml

from subprobe.cli import main
from subprobe.runs.tracking import flatten
from tests.conftest import probe_argv

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
pytest.importorskip("wandb", reason="the wandb extra is not installed")


@pytest.fixture(scope="module")
def run(tiny_bert, tiny_ud, tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_MODE", "WANDB_PROJECT", "WANDB_API_KEY"):
        mp.delenv(var, raising=False)
    out = tmp_path_factory.mktemp("tracked") / "run"
    try:
        assert main(probe_argv(tiny_bert, tiny_ud, out, "--report-to", "tensorboard,mlflow,wandb", epochs=2)) == 0
    finally:
        mp.undo()
    return out


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _expected(run: Path) -> dict[str, dict[int, float]]:
    """key -> step -> value of every numeric log.jsonl entry."""
    series: dict[str, dict[int, float]] = {}
    for record in _log(run):
        for key, value in flatten(record).items():
            if key != "step":
                series.setdefault(key, {})[record["step"]] = value
    return series


def _final(run: Path) -> dict[str, float]:
    return {f"final/{k}": v for k, v in flatten(json.loads((run / "metrics.json").read_text())).items()}


def test_tensorboard_event_files_hold_every_record_and_the_final_metrics(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    expected = _expected(run)
    assert {"loss", "lambda", "penalty", "density", "dev/accuracy", "words_per_s"} <= set(expected)
    for key, by_step in expected.items():
        got = {e.step: e.value for e in acc.Scalars(key)}
        assert got == pytest.approx(by_step, rel=1e-6, abs=1e-7), key  # stored as float32
    last = _log(run)[-1]["step"]
    for key, value in _final(run).items():
        (event,) = acc.Scalars(key)
        assert event.step == last and event.value == pytest.approx(value, rel=1e-6)
    config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "granularity: neuron" in config and "report_to: tensorboard,mlflow,wandb" in config
    assert set(acc.PluginTagToContent("hparams")) == {"_hparams_/experiment", "_hparams_/session_start_info",
                                                       "_hparams_/session_end_info"}


def test_mlflow_file_store_holds_params_metrics_and_history(run):
    from mlflow.tracking import MlflowClient

    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this
    try:
        client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
        experiment = client.get_experiment_by_name("subprobe")
        (found,) = client.search_runs([experiment.experiment_id])
        assert found.info.run_name == "run" and found.info.status == "FINISHED"
        params = found.data.params
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert params == {k: str("none" if v is None else v) for k, v in config.items()}
        for key, by_step in _expected(run).items():
            history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, key)}
            assert history == by_step, key
        final = {k: v for k, v in found.data.metrics.items() if k.startswith("final/")}
        assert final == _final(run)
    finally:
        mp.undo()


def _wandb_records(path: Path) -> list[bytes]:
    """Records of a W&B ``.wandb`` file (a LevelDB-style log: 7-byte header, 32 KiB blocks of
    ``crc32 | length u16 | type u8 | data`` chunks; types 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
    return records


def test_wandb_offline_run_files_hold_config_history_and_summary(run):
    from wandb.proto import wandb_internal_pb2 as pb

    (offline,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[str, dict[int, float]] = {}
    config: dict = {}
    summary: dict = {}
    for blob in _wandb_records(offline):
        record = pb.Record()
        record.ParseFromString(blob)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            for key, value in items.items():
                if not key.startswith("_"):
                    history.setdefault(key, {})[items["_step"]] = value
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            summary.update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.summary.update})
    assert history == _expected(run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert {k: v for k, v in config.items() if k != "_wandb"} == {
        k: ("none" if v is None else v) for k, v in saved.items()
    }
    assert {k: v for k, v in summary.items() if k.startswith("final/")} == _final(run)


def test_unknown_or_missing_tracker_is_one_error_line(tiny_bert, tiny_ud, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--report-to", "tensorboard,neptune")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "subprobe: error: --report-to 'tensorboard,neptune': neptune is not known; use any of tensorboard, mlflow, "
        "wandb separated by commas"
    )
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--report-to", "mlflow")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "subprobe: error: --report-to mlflow needs the mlflow extra, which is not installed: "
        "pip install 'subprobe[mlflow]' (or drop mlflow from --report-to)"
    )
    assert not out.exists()  # refused before anything was written


def test_no_tracker_by_default(tiny_bert, tiny_ud, tmp_path):
    out = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, out, epochs=1)) == 0
    assert not any((out / name).exists() for name in ("tensorboard", "mlruns", "wandb"))


def test_a_tracker_that_cannot_start_is_one_error_line(tiny_bert, tiny_ud, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus-scheme://nowhere")
    assert main(probe_argv(tiny_bert, tiny_ud, tmp_path / "run", "--report-to", "mlflow")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("subprobe: error: --report-to mlflow: the tracker could not start (") and "bogus" in err
