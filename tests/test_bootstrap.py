"""The paired bootstrap over sentences, intervals over seeds and the tests of claims, by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from subprobe.metrics import bootstrap
from subprobe.metrics.ner import ner_scores, ner_scores_of, ner_statistics
from subprobe.metrics.statistics import SentenceStats
from subprobe.metrics.tagging import accuracy_scores, accuracy_statistics
from subprobe.runs import RunDir


def _a(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_resample_counts_are_seeded_and_the_same_for_every_system() -> None:
    counts = bootstrap.resample_counts(7, resamples=50, seed=3)
    assert counts.shape == (50, 7) and counts.dtype == np.int32
    assert (counts.sum(axis=1) == 7).all()  # each resample draws n sentences
    assert np.array_equal(counts, bootstrap.resample_counts(7, resamples=50, seed=3))  # reproducible: the pairing
    assert not np.array_equal(counts, bootstrap.resample_counts(7, resamples=50, seed=4))
    # the counts are those of rng.integers(0, n, (R, n)) with numpy's default generator, nothing else
    draws = np.random.default_rng(3).integers(0, 7, size=(50, 7))
    assert np.array_equal(counts, np.stack([np.bincount(row, minlength=7) for row in draws]))


def test_a_hand_computed_bootstrap_of_token_accuracy() -> None:
    # sentence 0: 2 of 3 words right; sentence 1: 0 of 1
    stats = accuracy_statistics([_a(1, 2, 3), _a(4)], [_a(1, 2, 0), _a(0)])
    counts = np.array([[2, 0], [1, 1], [0, 2]])  # {s0, s0}, {s0, s1}, {s1, s1}
    scores = bootstrap.resampled_scores(stats, accuracy_scores, counts)
    assert scores["accuracy"] == pytest.approx([4 / 6, 2 / 4, 0 / 2])  # micro: correct words / words
    assert scores["accuracy_macro"] == pytest.approx([2 / 3, (2 / 3 + 0) / 2, 0.0])  # a mean over drawn sentences
    # the 50% percentile interval of (0, 0.5, 2/3): numpy's linear quantiles at positions 0.5 and 1.5
    assert bootstrap.percentile_interval(scores["accuracy"], level=0.5) == pytest.approx((0.25, (0.5 + 2 / 3) / 2))


def test_ner_f1_is_recomputed_from_chunk_counts_not_averaged_over_sentences() -> None:
    gold = [["I-PER", "O", "I-LOC"], ["I-ORG", "I-ORG", "O"]]
    pred = [["I-PER", "O", "O"], ["I-ORG", "I-ORG", "O"]]  # s0: 1 of 2 gold found, 1 predicted; s1: 1 of 1
    stats = ner_statistics(gold, pred)
    one_each = bootstrap.resampled_scores(stats, ner_scores_of, np.array([[1, 1]]))
    assert one_each["f1"][0] == pytest.approx(ner_scores(gold, pred)["f1"])  # corpus F1: 2 * 2 / (2 + 3) = 0.8
    assert one_each["f1"][0] == pytest.approx(0.8)
    mean_of_sentence_f1 = (ner_scores(gold[:1], pred[:1])["f1"] + ner_scores(gold[1:], pred[1:])["f1"]) / 2
    assert mean_of_sentence_f1 == pytest.approx((2 / 3 + 1) / 2) != pytest.approx(0.8)
    # s0 drawn three times, s1 once: correct 3 + 1, predicted 3 + 1, gold 6 + 1 -> F1 = 2 * 4 / (4 + 7)
    assert bootstrap.resampled_scores(stats, ner_scores_of, np.array([[3, 1]]))["f1"][0] == pytest.approx(8 / 11)
    assert one_each["f1_LOC"][0] == 0.0 and one_each["recall_PER"][0] == 1.0


def test_confidence_intervals_are_reproducible_and_hold_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    gold = [rng.integers(0, 5, size=rng.integers(1, 20)) for _ in range(200)]
    pred = [np.where(rng.random(len(g)) < 0.8, g, 0) for g in gold]
    stats = accuracy_statistics(gold, pred)
    first = bootstrap.confidence_intervals(stats, accuracy_scores)
    assert first == bootstrap.confidence_intervals(stats, accuracy_scores)
    assert set(first) == {"accuracy", "accuracy_macro"}
    point = accuracy_scores(stats.totals())
    for name, (lo, hi) in first.items():
        assert lo < float(point[name]) < hi < 1
    wider = bootstrap.confidence_intervals(stats, accuracy_scores, level=0.99)["accuracy"]
    assert wider[0] < first["accuracy"][0] and wider[1] > first["accuracy"][1]
    assert bootstrap.confidence_intervals(accuracy_statistics([], []), accuracy_scores) == {}


def test_claim_p_value_is_the_share_of_resamples_where_the_claim_fails() -> None:
    assert bootstrap.claim_p_value(np.array([0.1, -0.2, 0.0, 0.3])) == pytest.approx((1 + 2) / (4 + 1))
    assert bootstrap.claim_p_value(np.full(999, 0.5)) == pytest.approx(1 / 1000)
    assert bootstrap.claim_p_value(np.full(999, -0.5)) == 1.0


def test_seed_interval_by_hand() -> None:
    spread = bootstrap.seed_interval([0.8, 0.9])
    sd = math.sqrt(2 * 0.05**2)
    half = 12.7062 * sd / math.sqrt(2)  # t(0.975, df 1)
    assert spread == pytest.approx({"n": 2, "mean": 0.85, "sd": sd, "lo": 0.85 - half, "hi": 0.85 + half})
    assert bootstrap.seed_interval([0.5]) == {"n": 1, "mean": 0.5, "sd": None, "lo": None, "hi": None}
    assert bootstrap.t_quantile_975(30) == 2.0423
    assert bootstrap.t_quantile_975(31) == pytest.approx(2.0395, abs=1e-4)  # the expansion beyond the table
    assert bootstrap.t_quantile_975(10_000) == pytest.approx(1.9602, abs=1e-4)


def test_permutation_test_over_seeds_by_hand() -> None:
    # pooled 1, 2, 3, 4 into two groups of two: 6 splits; only {3, 4} reaches the observed difference 3.5 - 1.5
    assert bootstrap.permutation_p_value([3, 4], [1, 2]) == pytest.approx(1 / 6)
    assert bootstrap.permutation_p_value([1, 2], [3, 4]) == 1.0
    assert bootstrap.permutation_p_value([3], [1, 2]) is None  # one seed: nothing to permute


def _stats_run(tmp_path, name: str, correct: list[int], words: int = 2) -> dict:
    """A fake finished UPOS run whose dev sentences (``words`` words each) have ``correct`` right words."""
    run = RunDir(tmp_path / name)
    run.path.mkdir()
    stats = accuracy_statistics([np.zeros(words, dtype=np.int64)] * len(correct),
                                [np.array([0] * c + [1] * (words - c)) for c in correct])
    run.write_sentence_stats({"dev": stats})
    return {"task": "upos", "run_dir": str(run.path), "primary_metric": "accuracy",
            "dev": {k: float(v) for k, v in accuracy_scores(stats.totals()).items()}}


def test_paired_claims_across_runs_from_their_saved_statistics(tmp_path) -> None:
    from subprobe.report import significance

    good = _stats_run(tmp_path, "good", [2, 2, 2, 1])
    bad = _stats_run(tmp_path, "bad", [0, 0, 1, 0])
    same = _stats_run(tmp_path, "same", [2, 2, 2, 1])

    def source(m):
        return "dev", "accuracy"

    # good is better on every sentence: better in every resample, p = 1 / (R + 1)
    assert significance.claim([([good], [bad])], source) == pytest.approx(1 / (bootstrap.RESAMPLES + 1))
    assert significance.claim([([good], [same])], source) == 1.0  # a tie fails in every resample
    # a compound claim fails as soon as one part fails
    assert significance.claim([([good], [bad]), ([bad], [good])], source) == 1.0
    # the resampled values are the task metric of each resample (here: the runs' own counts, by hand)
    resampler = significance.Resampler(source, resamples=3)
    counts = bootstrap.resample_counts(4, 3, bootstrap.SEED)
    expected = counts @ np.array([2, 2, 2, 1]) / (counts.sum(axis=1) * 2)
    assert resampler.values([good]) == pytest.approx(expected)
    assert resampler.values([good, bad]) == pytest.approx((expected + counts @ np.array([0, 0, 1, 0]) / 8) / 2)
    # other sentences (a different dev set) cannot be paired, nor can a run without statistics
    other = _stats_run(tmp_path, "other", [2, 2, 2])
    assert significance.claim([([good], [other])], source) is None
    assert significance.claim([([good], [{"task": "upos", "run_dir": str(tmp_path / "none")}])], source) is None


def test_statistics_round_trip_through_the_run_directory(tmp_path) -> None:
    stats = SentenceStats(("a", "b"), np.array([[1.0, 0.5], [2.0, 0.25]]), np.array([3, 7]))
    run = RunDir(tmp_path)
    run.write_sentence_stats({"dev": stats, "dev_soft": stats})
    back = run.read_sentence_stats()
    assert set(back) == {"dev", "dev_soft"}
    assert back["dev"].names == ("a", "b") and np.array_equal(back["dev"].values, stats.values)
    assert np.array_equal(back["dev"].ids, [3, 7])
    assert RunDir(tmp_path / "missing").read_sentence_stats() == {}


def test_a_run_writes_intervals_from_its_own_sentence_statistics(tiny_bert, tiny_ud, tmp_path) -> None:
    from subprobe.cli import main
    from subprobe.tasks.registry import get_task
    from tests.conftest import probe_argv

    out = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, out, task="dep", epochs=1)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    saved = RunDir(out).read_sentence_stats()
    assert set(saved) == {"dev", "dev_soft", "test", "test_soft"}
    assert metrics["ci"] == {**bootstrap.method(), "resamples": 1000, "seed": 0, "level": 0.95}
    task = get_task("dep")
    for key, stats in saved.items():
        assert stats.n == metrics["sentences"][key.split("_")[0]]
        # the saved statistics give back exactly the scores and the intervals of metrics.json
        assert {k: float(v) for k, v in task.score(stats.totals()).items()} == metrics[key]
        assert bootstrap.confidence_intervals(stats, task.score) == metrics[f"{key}_ci"]
        assert set(metrics[f"{key}_ci"]) == set(metrics[key])
        for name, (lo, hi) in metrics[f"{key}_ci"].items():
            assert 0 <= lo <= hi <= 1, name


def _table_run(tmp_path, name: str, probe: str, setting: str, correct: list[int], **config) -> dict:
    """A result as load_results gives it, with dev sentence statistics (2 words per sentence)."""
    run = _stats_run(tmp_path, name, correct)
    return {**run, "probe": probe, "setting": setting, "model": "m", "series": "m",
            "config": {"granularity": "neuron", "rank": "d", "lambda_max": 1.0, **config}}


def test_table1_claims_carry_paired_bootstrap_p_values(tmp_path) -> None:
    from subprobe.report.tables import claims

    results = [
        _table_run(tmp_path, "sub-pre", "subnetwork", "pretrained", [2, 2, 2, 2]),
        _table_run(tmp_path, "mlp-pre", "mlp", "pretrained", [1, 1, 1, 1]),  # below on every sentence
        _table_run(tmp_path, "sub-enc", "subnetwork", "reset-encoder", [0, 1, 1, 1]),
        _table_run(tmp_path, "mlp-enc", "mlp", "reset-encoder", [1, 2, 1, 1]),  # above: sentences 0 and 1
        _table_run(tmp_path, "sub-all", "subnetwork", "reset-all", [1, 1, 1, 1]),
        _table_run(tmp_path, "mlp-all", "mlp", "reset-all", [1, 1, 1, 1]),  # a tie: the claim fails
    ]
    found = claims(results)["upos"]["headline"]
    assert found["subnetwork_above_mlp_pretrained"] is True
    assert found["p_values"]["subnetwork_above_mlp_pretrained"] == pytest.approx(1 / 1001)
    assert found["subnetwork_below_mlp_reset"] is False  # reset-all is a tie
    assert found["p_values"]["subnetwork_below_mlp_reset"] == 1.0  # the tie fails in every resample
    results[-1] = _table_run(tmp_path, "mlp-all2", "mlp", "reset-all", [1, 1, 1, 2])
    found = claims(results)["upos"]["headline"]
    # reset-all: MLP-1 is above only through sentence 3, reset-encoder through sentences 0 and 1: the compound
    # claim holds in a resample iff it draws sentence 3 and (sentence 0 or 1) -- by hand from the same draws
    counts = bootstrap.resample_counts(4)
    holds = (counts[:, 3] > 0) & ((counts[:, 0] + counts[:, 1]) > 0)
    assert found["p_values"]["subnetwork_below_mlp_reset"] == pytest.approx((1 + (~holds).sum()) / 1001)
    assert found["p_values_seeds"]["subnetwork_below_mlp_reset"] is None  # one seed per cell


def test_pareto_dominance_p_value_rebuilds_the_frontier_in_every_resample(tmp_path) -> None:
    from subprobe.report.pareto import dominance_p_value

    def point(label: str, bits: float, name: str, correct: list[int]) -> tuple[dict, dict]:
        run = _stats_run(tmp_path, name, correct)
        return {"label": label, "bits": bits, "runs": [run["run_dir"]]}, run

    cheap, r1 = point("matrix", 10, "cheap", [1, 1, 1, 1])
    dear, r2 = point("neuron", 100, "dear", [2, 2, 2, 2])
    mlp, r3 = point("r=1", 50, "mlp", [1, 1, 1, 2])  # better than the cheap subnetwork on sentence 3 only
    runs = {r["run_dir"]: {**r} for r in (r1, r2, r3)}
    curves = {"subnetwork": [cheap, dear], "mlp_lower": [mlp], "mlp_upper": []}
    # at 50 bits the frontier is the cheap point (the dear one costs 100): it never beats MLP-1, p = 1
    assert dominance_p_value(curves, "lower", runs, "dev") == 1.0
    assert dominance_p_value(curves, "upper", runs, "dev") is None  # no points on that curve
    mlp2, r4 = point("r=d", 200, "mlp2", [1, 1, 1, 1])
    runs[r4["run_dir"]] = r4
    curves["mlp_lower"] = [mlp2]  # at 200 bits the dear point is on the frontier and wins everywhere
    assert dominance_p_value(curves, "lower", runs, "dev") == pytest.approx(1 / 1001)
