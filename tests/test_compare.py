"""``Subnetwork.compare`` and ``subprobe compare``: weight-level agreement and IoU, by hand."""

from __future__ import annotations

import json

import pytest
import torch

from subprobe.cli import main
from subprobe.errors import SubprobeError
from subprobe.masking.compare import Overlap
from subprobe.masking.subnetwork import MaskEntry, Subnetwork, mean_pairwise_iou
from subprobe.runs import RunDir
from tests.synthetic_runs import tiny_subnetwork

K, D = 60.0, -60.0  # kept, dropped


def _sub(entries: list[tuple], layout: str = "strided", model: str = "m") -> Subnetwork:
    return Subnetwork(tuple(MaskEntry(n, r, layer, s, b, torch.tensor(la)) for n, r, layer, s, b, la in entries),
                      layout, "mixed", model)


def _pair(layout_b: str) -> tuple[Subnetwork, Subnetwork]:
    # A at weight level keeps (0,0) (0,1) (1,0) (3,1) of the 4x2 matrix; B one mask per 2 rows, mask [[1,0],[0,0]]
    a = _sub([("q", "q", 0, (4, 2), (1, 1), [[K, K], [K, D], [D, D], [D, K]]),
              ("f", "ffn_in", 1, (2, 2), (2, 2), [[K]])])
    b = _sub([("q", "q", 0, (4, 2), (2, 1), [[K, D], [D, D]]),
              ("f", "ffn_in", 1, (2, 2), (2, 2), [[D]])], layout=layout_b)
    return a, b


def test_strided_block_against_weight_level_by_hand() -> None:
    # strided B keeps rows 0 and 2 of column 0: (0,0) (2,0); both keep (0,0) -> q: 1 both, 3 only A, 1 only B of 8
    a, b = _pair("strided")
    c = a.compare(b)
    assert c.by_layer["0"] == Overlap(1, 3, 1, 8) == c.by_role["q"]
    assert c.by_layer["0"].iou == pytest.approx(1 / 5) and c.by_layer["0"].agreement == pytest.approx(4 / 8)
    assert c.by_layer["1"] == Overlap(0, 4, 0, 4) == c.by_role["ffn_in"]
    assert c.by_layer["1"].iou == 0.0 and c.by_layer["1"].agreement == 0.0
    assert c.overall == Overlap(1, 7, 1, 12)
    assert c.overall.iou == pytest.approx(1 / 9) and c.overall.agreement == pytest.approx(4 / 12)


def test_contiguous_block_against_weight_level_by_hand() -> None:
    # contiguous B keeps rows 0 and 1 of column 0: (0,0) (1,0), both kept by A -> IoU 2/4, agreement 6/8
    a, b = _pair("contiguous")
    q = a.compare(b).by_role["q"]
    assert q == Overlap(2, 2, 0, 8)
    assert q.iou == pytest.approx(0.5) and q.agreement == pytest.approx(0.75)


@pytest.mark.parametrize("layout_b", ["strided", "contiguous"])
def test_compare_is_symmetric(layout_b: str) -> None:
    a, b = _pair(layout_b)
    ab, ba = a.compare(b), b.compare(a)
    assert ab.overall.iou == ba.overall.iou and ab.overall.agreement == ba.overall.agreement
    assert ab.overall.only_a == ba.overall.only_b and ab.overall.only_b == ba.overall.only_a
    for key in ab.by_layer:
        assert ab.by_layer[key].iou == ba.by_layer[key].iou


def test_identical_runs_compare_as_one_also_after_save_and_load(tmp_path) -> None:
    sub = tiny_subnetwork([0.3, 0.7], seed=4, model="tiny")
    path = tmp_path / "masks.safetensors"
    sub.save(path)
    c = sub.compare(Subnetwork.load(path))
    assert c.overall.iou == 1.0 and c.overall.agreement == 1.0
    assert all(o.iou == 1.0 for o in (*c.by_layer.values(), *c.by_role.values()))
    assert c.overall.both == sub.kept_weights() and c.overall.total == sub.num_masked_weights


def test_nothing_kept_by_either_is_iou_one() -> None:
    a = _sub([("q", "q", 0, (2, 2), (1, 1), [[D, D], [D, D]])])
    assert a.compare(a).overall.iou == 1.0


def test_different_granularities_of_random_masks_match_a_direct_count() -> None:
    a = tiny_subnetwork([0.5, 0.5], block=(32, 1), seed=1)
    b = tiny_subnetwork([0.5, 0.5], block=(1, 1), seed=2)
    both = either = 0
    for ea, eb in zip(a.entries, b.entries):
        ka = (ea.log_alpha > 0).repeat(32, 1)  # strided (32,1) blocks: the 1 x in mask tiled over 32 rows
        kb = eb.log_alpha > 0
        both += int((ka & kb).sum())
        either += int((ka | kb).sum())
    assert a.compare(b).overall.iou == pytest.approx(both / either)
    assert mean_pairwise_iou([a, b]) == pytest.approx(both / either)
    assert mean_pairwise_iou([a]) is None


def test_different_models_or_shapes_are_one_line_errors() -> None:
    a, b = _pair("strided")
    with pytest.raises(SubprobeError, match="one masks m, the other other"):
        a.compare(_sub([], model="other"))
    with pytest.raises(SubprobeError, match="matrix f is masked in one only"):
        a.compare(_sub([("q", "q", 0, (4, 2), (1, 1), [[K, K]] * 4)]))
    with pytest.raises(SubprobeError, match="matrix q is 4x2 in one and 2x2 in the other"):
        a.compare(_sub([("q", "q", 0, (2, 2), (1, 1), [[K, K]] * 2), ("f", "ffn_in", 1, (2, 2), (2, 2), [[K]])]))


def _run_with(tmp_path, name: str, sub: Subnetwork) -> str:
    path = tmp_path / name
    path.mkdir()
    RunDir(path).write_masks(sub)
    return str(path)


def test_cli_compare_json_and_text(tmp_path, capsys) -> None:
    a, b = _pair("strided")
    run_a, run_b = _run_with(tmp_path, "a", a), _run_with(tmp_path, "b", b)
    assert main(["compare", run_a, run_b, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overall"]["iou"] == pytest.approx(1 / 9) and out["overall"]["agreement"] == pytest.approx(1 / 3)
    assert out["by_layer"]["0"]["kept_both"] == 1 and out["by_role"]["ffn_in"]["kept_only_a"] == 4
    assert main(["compare", run_a, run_b]) == 0
    text = capsys.readouterr().out
    assert "overall           0.1111  0.3333" in text and "role ffn_in" in text


def test_cli_compare_errors_are_one_line(tmp_path, capsys) -> None:
    a, _ = _pair("strided")
    run_a = _run_with(tmp_path, "a", a)
    (tmp_path / "mlp").mkdir()
    assert main(["compare", run_a, str(tmp_path / "mlp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("subprobe: error: ") and "no masks.safetensors" in err and "\n" not in err
    run_c = _run_with(tmp_path, "c", _sub([], model="other"))
    assert main(["compare", run_a, run_c]) == 2
    assert "not comparable" in capsys.readouterr().err
