"""Tasks and probe families are found through their registries: names, checks with a suggestion, and the facts
every other module reads (unit labels, run-directory names, which runs load and export)."""

from __future__ import annotations

import pytest

from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.probes.registry import PROBE_NAMES, families, probe_family
from subprobe.runs import default_out
from subprobe.tasks.registry import TASK_NAMES, get_task, path_name, task_order


def test_unknown_probe_is_one_line_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"^--probe 'mpl' is not known \(did you mean mlp\?\); use one of "
                                          r"subnetwork, mlp, linear, finetune$"):
        probe_family("mpl")
    assert [f.name for f in families()] == list(PROBE_NAMES)


def test_unit_labels_and_run_directory_names_by_hand():
    mlp = ProbeConfig(probe="mlp", rank="25")
    family = probe_family("mlp")
    assert (family.unit_label(mlp), family.run_dir_unit(mlp), family.store_units(mlp)) == ("r=25", "r25", ["r25"])
    assert family.table_row(mlp) is None and family.table_row(ProbeConfig(probe="mlp")) == "mlp"
    sub = ProbeConfig(granularity="2,1", lambda_max=5.0, target_density=0.1)
    family = probe_family("subnetwork")
    assert family.unit_label(sub) == "2,1" and family.run_label(sub) == "2,1, λmax=5"
    assert family.run_dir_unit(sub) == "2x1-p0.1"
    assert family.run_dir_unit(ProbeConfig(complement_of="x")) == "neuron-complement"
    assert family.store_units(sub) == ["2x1", "lam5"] and family.store_units(ProbeConfig()) == ["neuron"]
    assert family.table_row(sub) is None and family.table_row(ProbeConfig(lambda_max=25)) == "subnetwork@25"
    assert probe_family("linear").unit_label(ProbeConfig(probe="linear")) == ""


def test_what_each_family_saves_loads_and_exports():
    facts = {f.name: (f.masks, f.adapter, f.loads, f.exports, f.in_paper_tables) for f in families()}
    assert facts == {
        "subnetwork": (True, False, True, True, True),
        "mlp": (False, True, True, False, True),
        "linear": (False, False, True, False, False),
        "finetune": (False, False, False, False, True),
    }
    assert [f.title for f in families()] == ["Subnetworks", "MLP-1", "Linear", "Fine-tuning"]


def test_task_names_order_and_file_names():
    assert TASK_NAMES == ("upos", "dep", "ner", "xpos", "feats:KEY")
    names = ["feats:Tense", "ner", "feats:Number", "srl", "upos", "xpos", "dep"]
    assert sorted(names, key=task_order) == ["upos", "dep", "ner", "xpos", "feats:Number", "feats:Tense", "srl"]
    assert path_name("feats:Number") == "feats-Number" and path_name("upos") == "upos"
    assert default_out(ProbeConfig(task="feats:Number")).name == "feats-Number-subnetwork-neuron-pretrained-s0"


def test_every_task_says_what_the_report_and_predict_need():
    for name in TASK_NAMES:
        task = get_task(name.replace(":KEY", ":Number"))
        assert task.title and task.primary_metric and task.metric_title and task.dataset, name
        assert task.writes_predictions() and task.prediction_suffix.startswith("."), name
    paper = {name: get_task(name).paper_table1 for name in ("upos", "dep", "ner")}
    assert {title for rows in paper.values() for title in rows} == {"Subnetworks", "MLP-1", "Fine-tuning"}
    assert paper["dep"]["MLP-1"] == (76.65, 54.09, 42.81)  # Cao et al. 2021, Table 1


def test_every_built_in_experiment_has_a_writer_and_names_known_tasks_and_probes():
    from subprobe.experiments.grids import builtin_grids, load_grid
    from subprobe.experiments.writers import WRITERS
    from subprobe.probes.registry import probe_family

    assert builtin_grids() == ("density", "figure1", "figure2", "morphology", "selectivity", "table1", "table2")
    for name in builtin_grids():
        grid = load_grid(name)
        assert grid.name == name and grid.writer in WRITERS, name
        for point in grid.points("quick"):
            get_task(point["task"])
            probe_family(point["probe"])
    assert {p["task"] for p in load_grid("morphology").points()} == {
        "feats:Number", "feats:VerbForm", "feats:Person", "feats:Tense", "feats:Mood"}
