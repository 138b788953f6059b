"""A real sweep (tiny model, tiny data root) from the command line, fed to ``subprobe report``: every number the
report shows is the number in the runs' metrics.json; the keys the report reads exist in a real metrics.json."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from subprobe.cli import main
from subprobe.report.loading import REQUIRED

GRID = """\
name: tiny
description: a real sweep on the tiny model
axes:
  task: [upos]
  setting: [pretrained, reset-encoder]
  probe:
    - {probe: subnetwork, granularity: neuron}
    - {probe: subnetwork, granularity: neuron, lambda_max: 5}
    - {probe: subnetwork, granularity: matrix}
    - {probe: mlp, rank: 1}
    - {probe: mlp, rank: d}
    - {probe: finetune}
profiles:
  quick: {epochs: 2, batch_size: 8, eval_every: 3, precision: fp32, mask_lr: 1.0, head_lr: 0.01}
"""
N_RUNS = 12


def loud_copy(tiny_bert: Path, path: Path, scale: float = 10.0) -> Path:
    """The tiny BERT with its block matrices x ``scale``: the blocks, not the embeddings, then decide the
    predictions, so that a hard and a soft mask give different accuracies (they tie on the tiny BERT itself)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".layer." in name and p.dim() == 2:
                p.mul_(scale)
    model.save_pretrained(path)
    for f in tiny_bert.iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            (path / f.name).write_bytes(f.read_bytes())
    return path


@pytest.fixture(scope="module")
def swept(tiny_bert, tiny_data_root, tmp_path_factory):
    """``subprobe sweep GRID.yaml`` then ``subprobe report``; the runs' metrics.json by (setting, probe, unit)."""
    root = tmp_path_factory.mktemp("sweep")
    model = loud_copy(tiny_bert, root / "loud-bert")
    grid = root / "tiny.yaml"
    grid.write_text(GRID, encoding="utf-8")
    store = root / "store"
    argv = ["sweep", str(grid), "--store", str(store), "--model", str(model), "--data-dir", str(tiny_data_root)]
    with pytest.MonkeyPatch.context() as mp:
        printed = []
        mp.setattr("subprobe.cli._echo", lambda *a, **k: printed.append(" ".join(map(str, a))))
        assert main(argv) == 0
    assert main(["report", str(store), "--report-dir", str(root / "report")]) == 0
    runs = {}
    for path in sorted((store / "runs").glob("*/metrics.json")):
        m = json.loads(path.read_text())
        cfg = yaml.safe_load((path.parent / "config.yaml").read_text())
        units = {"subnetwork": f"{cfg['granularity']}@{cfg['lambda_max']:g}", "mlp": f"r{cfg['rank']}"}
        unit = units.get(m["probe"], "")
        runs[(m["setting"], m["probe"], unit)] = {**m, "dir": path.parent}
    return {"root": root, "store": store, "argv": argv, "report": root / "report", "runs": runs, "printed": printed}


def test_sweep_from_the_cli_runs_every_point_and_skips_them_again(swept, capsys):
    assert len(swept["runs"]) == N_RUNS
    assert sum("done in" in line for line in swept["printed"]) == N_RUNS
    index = json.loads((swept["store"] / "index.json").read_text())
    assert len(index) == N_RUNS and {e["status"] for e in index.values()} == {"done"}
    for entry in index.values():  # recorded relative to the store root (the store can move)
        assert not Path(entry["run_dir"]).is_absolute() and (swept["store"] / entry["run_dir"]).is_dir()
    # the data came from --data-dir: the EWT layout under the tiny root (24 / 6 / 2 sentences)
    m = swept["runs"][("pretrained", "subnetwork", "neuron@1")]
    assert m["sentences"] == {"train": 24, "dev": 6, "test": 2}
    env = json.loads((m["dir"] / "env.json").read_text())
    assert env["data"]["dev"]["path"].endswith("ud-english-ewt/en_ewt-ud-dev.conllu")
    assert main(swept["argv"]) == 0  # a restart: every point is finished
    assert f"sweep tiny: 0 done, {N_RUNS} skipped, 0 failed" in capsys.readouterr().out


def test_a_real_metrics_json_has_every_key_the_report_reads(swept):
    for (setting, probe, unit), m in swept["runs"].items():
        where = f"{setting} {probe} {unit}"
        for key in (*REQUIRED, "model", "dev", "test", "bits", "probe_params"):
            assert key in m, (where, key)
        assert m["model"] and m["primary_metric"] == "accuracy"
        assert m["num_attention_heads"] == 4, where  # the report's per-head localisation reads it
        assert set(m["bits"]) >= {"lower", "upper"}, where
        for split in ("dev", "test"):
            assert isinstance(m[split][m["primary_metric"]], float), (where, split)
        if probe == "subnetwork":
            for key in ("mask_params", "density", "density_by_layer", "density_by_role", "dev_soft", "test_soft"):
                assert key in m, (where, key)
            assert (m["dir"] / "masks.safetensors").is_file()
            assert m["bits"] == {"lower": m["mask_params"], "upper": m["mask_params"]}
        elif probe == "mlp":
            assert m["bits"] == {"lower": m["probe_params"], "upper": 32 * m["probe_params"]}, where


def rows_of(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def pct(value: float) -> str:
    return f"{value * 100:.2f}"


def cell(m: dict, key: str, metric: str) -> str:
    """A one-run table cell: the value [its bootstrap interval over sentences from metrics.json], in %."""
    lo, hi = m[f"{key}_ci"][metric]
    return f"{pct(m[key][metric])} [{pct(lo)}, {pct(hi)}]"


def headline(m: dict, split: str = "dev") -> str:
    return cell(m, split, "accuracy")


def comparable(m: dict, split: str = "dev") -> str:
    """The paper's UPOS value: sentence-macro accuracy, with the soft mask for subnetworks (report/tables.py)."""
    return cell(m, f"{split}_soft" if m.get(f"{split}_soft") else split, "accuracy_macro")


def test_tables_hold_the_runs_values(swept):
    runs, report = swept["runs"], swept["report"]
    table1 = {r["probe"]: r for r in rows_of(report / "table1-dev.csv") if r["task"] == "upos"}
    for label, probe, unit in (("Subnetworks", "subnetwork", "neuron@1"), ("MLP-1", "mlp", "rd"),
                               ("Fine-tuning", "finetune", "")):
        for setting in ("pretrained", "reset-encoder"):
            m = runs[(setting, probe, unit)]
            assert table1[label][f"{setting}_headline"] == headline(m), (label, setting)
            assert table1[label][f"{setting}_comparable"] == comparable(m), (label, setting)
        assert table1[label]["reset-all_headline"] == table1[label]["reset-all_comparable"] == "–"
    assert table1["Subnetworks"]["pretrained_paper"] == "93.39"  # Cao et al., Table 1
    sub = runs[("pretrained", "subnetwork", "neuron@1")]
    assert sub["dev"]["accuracy"] != sub["dev_soft"]["accuracy"]  # so the cells above tell the masks apart
    table1_test = {r["probe"]: r for r in rows_of(report / "table1-test.csv")}
    mlp = runs[("pretrained", "mlp", "rd")]
    assert table1_test["MLP-1"]["pretrained_headline"] == headline(mlp, "test")
    assert table1_test["MLP-1"]["pretrained_comparable"] == comparable(mlp, "test")
    table2 = {r["probe"]: r for r in rows_of(report / "table2-dev.csv")}
    lam5 = table2["Subnetworks λmax=5"]
    for setting in ("pretrained", "reset-encoder"):
        m = runs[(setting, "subnetwork", "neuron@5")]
        assert lam5[f"{setting}_headline"] == headline(m)
        assert lam5[f"{setting}_comparable"] == comparable(m)
    assert lam5["density_pretrained"] == f"{runs[('pretrained', 'subnetwork', 'neuron@5')]['density']:.2f}"


def test_pareto_points_are_the_pretrained_runs(swept):
    runs = swept["runs"]
    (entry,) = json.loads((swept["report"] / "pareto.json").read_text())
    assert entry["task"] == "upos"
    points = {curve: {p["label"]: p for p in pts} for curve, pts in entry["points"].items()}
    assert set(points["subnetwork"]) == {"neuron", "matrix"}  # lambda_max 5 and reset runs are not on the curve
    for label, unit, bits in (("neuron", "neuron@1", 2 * (4 * 32 + 64 + 64)), ("matrix", "matrix@1", 12)):
        m = runs[("pretrained", "subnetwork", unit)]
        assert m["mask_params"] == bits
        assert points["subnetwork"][label]["bits"] == bits
        assert points["subnetwork"][label]["accuracy"] == m["dev"]["accuracy"]
    assert set(points["mlp_lower"]) == {"r=1", "r=d"}
    for rank in ("1", "d"):
        m = runs[("pretrained", "mlp", f"r{rank}")]
        assert points["mlp_lower"][f"r={rank}"]["bits"] == m["bits"]["lower"] == m["probe_params"]
        assert points["mlp_upper"][f"r={rank}"]["bits"] == m["bits"]["upper"] == 32 * m["probe_params"]
        assert points["mlp_lower"][f"r={rank}"]["accuracy"] == m["dev"]["accuracy"]
    # MLP-1 rank 1 on hidden 32: Linear(32,1) + Linear(1,32) + LayerNorm(32) = 33 + 64 + 64 parameters
    assert runs[("pretrained", "mlp", "r1")]["probe_params"] == 33 + 64 + 64
    csv_points = rows_of(swept["report"] / "pareto-points.csv")
    assert len(csv_points) == 2 + 2 + 2
    neuron = next(r for r in csv_points if r["curve"] == "subnetwork" and r["label"] == "neuron")
    assert float(neuron["accuracy"]) == pytest.approx(runs[("pretrained", "subnetwork", "neuron@1")]["dev"]["accuracy"],
                                                      abs=1e-6)


def test_localisation_follows_the_rule_and_counts_the_saved_masks(swept):
    runs = swept["runs"]
    loc = json.loads((swept["report"] / "localisation.json").read_text())
    selections = {e["setting"]: e for e in loc["selections"]}
    assert set(selections) == {"pretrained", "reset-encoder"}
    for setting, e in selections.items():
        reference = runs[(setting, "finetune", "")]["dev"]["accuracy"]
        assert e["reference"] == {"setting": setting, "accuracy": reference}
        accs = {lam: runs[(setting, "subnetwork", f"neuron@{lam}")]["dev"]["accuracy"] for lam in (1, 5)}
        for c in e["candidates"]:
            m = runs[(setting, "subnetwork", f"neuron@{c['lambda_max']:g}")]
            assert c["accuracy"] == m["dev"]["accuracy"] and c["density"] == m["density"]
        passing = [lam for lam, acc in accs.items() if acc >= 0.9 * reference]
        assert e["selected_lambda"] == (max(passing) if passing else 1)
        selected = runs[(setting, "subnetwork", f"neuron@{e['selected_lambda']:g}")]
        assert Path(e["run_dir"]) == selected["dir"].resolve()
        # kept weights per layer, counted here from the saved logits: a neuron mask entry covers one column
        # (32 rows), or two row groups of the FFN-in (strided, 64 rows)
        kept = [0, 0]
        for name, log_alpha in load_file(str(selected["dir"] / "masks.safetensors")).items():
            layer = int(name.split(".")[2])
            kept[layer] += int(((torch.sigmoid(log_alpha) * 1.2 - 0.1).clamp(0, 1) >= 0.5).sum()) * 32
        assert e["localisation"]["layer"]["kept"] == kept
        assert e["localisation"]["layer"]["total"] == [4 * 32 * 32 + 2 * 32 * 64] * 2
        layers_csv = [r for r in rows_of(swept["report"] / "localisation-layers.csv") if r["setting"] == setting]
        assert [int(r["kept"]) for r in layers_csv] == kept


class RunsTable(HTMLParser):
    """Cells (text) of every body row of the table with id ``runs``."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._in, self._cell = False, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._in = dict(attrs).get("id") == "runs"
        elif self._in and tag == "tr":
            self.rows.append([])
        elif self._in and tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif self._in and tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None
        elif tag == "details" and self._cell is not None:
            self._cell = self._cell.split("config.yaml")[0]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_page_lists_every_run_with_its_metrics(swept):
    page = (swept["report"] / "index.html").read_text(encoding="utf-8")
    parser = RunsTable()
    parser.feed(page)
    rows = [r for r in parser.rows if r]
    assert len(rows) == N_RUNS
    by_name = {r[0]: r for r in rows}
    markdown = (swept["report"] / "report.md").read_text(encoding="utf-8")
    for m in swept["runs"].values():
        row = by_name[m["dir"].name]
        assert row[1:4] == [m["task"], m["probe"], m["setting"]]
        assert pct(m["dev"]["accuracy"]) in row and pct(m["test"]["accuracy"]) in row
        assert f"{m['bits']['lower']:,.0f}" in row and f"{m['bits']['upper']:,.0f}" in row
        if "density" in m:
            assert f"{m['density']:.4f}" in row
        assert f"| {m['dir'].name} | upos | {m['probe']} | {m['setting']} |" in markdown
