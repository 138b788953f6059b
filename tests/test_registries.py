"""Tasks and probe families are found through their registries: names, checks with a suggestion, and the facts
every other module reads (unit labels, run-directory names, which runs load and export)."""

from __future__ import annotations

from pathlib import Path

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

    assert builtin_grids() == ("density", "figure1", "figure2", "mdl", "morphology", "selectivity", "table1", "table2")
    for name in builtin_grids():
        grid = load_grid(name)
        assert grid.name == name and grid.writer in WRITERS, name
        for point in grid.points("quick"):
            get_task(point["task"])
            probe_family(point["probe"])
    assert {p["task"] for p in load_grid("morphology").points()} == {
        "feats:Number", "feats:VerbForm", "feats:Person", "feats:Tense", "feats:Mood"}


PACKAGE = Path(__file__).resolve().parents[1] / "subprobe"


def _spelt(names: set[str], parametrised: set[str], outside: str, package: Path = PACKAGE) -> dict[str, list[int]]:
    """Modules of the package outside ``subprobe/<outside>/`` with a string constant that is one of ``names`` (or
    ``BASE:PARAM`` for a parametrised base): module -> line numbers. Only whole constants count: a name inside
    prose (a docstring, a --help line, a message) is not a use of it."""
    import ast
    import re

    pattern = re.compile(rf"({'|'.join(map(re.escape, parametrised))}):\S+") if parametrised else None
    found: dict[str, list[int]] = {}
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == outside:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value in names or (pattern is not None and pattern.fullmatch(node.value))):
                found.setdefault(str(path.relative_to(package.parent)), []).append(node.lineno)
    return found


def test_no_module_outside_the_tasks_spells_a_task_name_or_outside_the_probes_a_probe_name():
    """One place per concept (DESIGN.md section 3): a task's name is spelt in its module under subprobe/tasks (and
    the registry there), a probe family's under subprobe/probes; everything else asks the registries."""
    bases = {name.partition(":")[0] for name in TASK_NAMES}
    parametrised = {name.partition(":")[0] for name in TASK_NAMES if ":" in name}
    assert _spelt(bases, parametrised, "tasks") == {}
    assert _spelt(set(PROBE_NAMES), set(), "probes") == {}


def test_the_name_scan_finds_a_spelt_name(tmp_path):
    """The scan above on a package that does spell names (so its empty answer means something); prose is not a use."""
    package = tmp_path / "subprobe"
    (package / "report").mkdir(parents=True)
    (package / "tasks").mkdir()
    (package / "report" / "x.py").write_text(
        '"""Prose about upos and mlp."""\nX = {"upos": 1, "feats:Number": 2}\nY = "subnetwork"\nZ = "dep: prose"\n'
    )
    (package / "tasks" / "y.py").write_text('NAME = "upos"\nOTHER = "linear"\n')
    bases = {name.partition(":")[0] for name in TASK_NAMES}
    assert _spelt(bases, {"feats"}, "tasks", package) == {"subprobe/report/x.py": [2, 2]}
    assert _spelt(set(PROBE_NAMES), set(), "probes", package) == {"subprobe/report/x.py": [3],
                                                                  "subprobe/tasks/y.py": [2]}
