"""Control tasks (--control): a seeded function of the word type; metrics.json, the selectivity table, the grid."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from subprobe.cli import main
from subprobe.data.control import (
    Distribution,
    apply_control,
    control_behaviour,
    control_heads,
    control_label,
    unit_draw,
)
from subprobe.data.pipeline import RawSplits
from subprobe.data.records import Sentence
from subprobe.experiments.grids import load_grid
from subprobe.experiments.store import Store
from subprobe.report.loading import load_results
from subprobe.report.selectivity import selectivity_rows
from subprobe.resolve import resolve
from subprobe.runs import default_out
from subprobe.tasks.registry import get_task
from tests.conftest import probe_argv
from tests.synthetic_runs import add_run


def test_unit_draw_is_the_documented_hash() -> None:
    digest = hashlib.sha256(b"label\x007\x00dog").digest()
    assert unit_draw("dog", 7, "label") == int.from_bytes(digest[:8], "big") / 2**64
    assert 0 <= unit_draw("dog", 7, "label") < 1


def test_inverse_cdf_by_hand() -> None:
    dist = Distribution(Counter({"B": 3, "A": 1}))  # sorted: A [0, 1/4), B [1/4, 1)
    assert [dist.draw(u) for u in (0.0, 0.2, 0.25, 0.9999)] == ["A", "A", "B", "B"]


def _raw() -> RawSplits:
    train = [Sentence(["the", "dog", "runs"], upos=["DET", "NOUN", "VERB"], heads=[2, 3, 0],
                      deprels=["det", "nsubj", "root"]),
             Sentence(["a", "dog", "sat", "."], upos=["DET", "NOUN", "VERB", "PUNCT"], heads=[2, 3, 0, 3],
                      deprels=["det", "nsubj", "root", "punct"])]
    dev = [Sentence(["dog", "zebra", "the"], upos=["NOUN", "NOUN", "DET"], heads=[0, 1, 2],
                    deprels=["root", "obj", "det"])]
    return RawSplits({"train": train, "dev": dev}, train)


def test_tagging_labels_are_a_function_of_the_word_type_only_and_seeded() -> None:
    raw = _raw()
    out = apply_control(get_task("upos"), raw, seed=3)
    dist = Distribution(Counter(t for s in raw.label_sentences for t in s.upos))
    by_word: dict[str, set] = {}
    for s in [*out.sentences["train"], *out.sentences["dev"], *out.label_sentences]:
        for w, t in zip(s.words, s.upos):
            by_word.setdefault(w, set()).add(t)
    assert all(len(v) == 1 for v in by_word.values())  # "dog" in train and dev, "the" in both: one label each
    assert {w: v.pop() for w, v in by_word.items()} == {w: control_label(w, 3, dist) for w in by_word}
    assert "zebra" in by_word  # an unseen dev word gets its own draw, from the training labels
    assert {t for s in out.sentences["dev"] for t in s.upos} <= set(dist.labels)
    assert out.sentences["train"][0].words == raw.sentences["train"][0].words  # words untouched
    assert apply_control(get_task("upos"), raw, seed=3) == out  # deterministic
    words = [f"w{i}" for i in range(50)]
    assert [control_label(w, 3, dist) for w in words] != [control_label(w, 4, dist) for w in words]


def test_dep_control_heads_and_relations() -> None:
    words = [f"w{i}" for i in range(30)]
    heads = control_heads(words, 1)
    n = len(words)
    for i, (word, head) in enumerate(zip(words, heads), start=1):
        expected = {"root": 0, "first": 1, "last": n}[control_behaviour(word, 1)]
        assert head == (0 if expected == i else expected) and head != i
    assert {control_behaviour(w, 1) for w in words} == {"root", "first", "last"}
    out = apply_control(get_task("dep"), _raw(), seed=1)
    for s in out.sentences["dev"]:
        assert s.heads == control_heads(s.words, 1)
        assert set(s.deprels) <= {"det", "nsubj", "root", "punct"}
    assert out.sentences["dev"][0].upos == ["NOUN", "NOUN", "DET"]  # only the task's labels change


def test_probe_control_records_it_and_names_the_run(tiny_bert, tiny_ud, tmp_path) -> None:
    out = tmp_path / "control"
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--probe", "linear", "--control", "--control-seed", "3",
                           epochs=1)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["control"] is True and metrics["control_seed"] == 3
    from subprobe.config import ProbeConfig

    name = default_out(ProbeConfig(control=True, control_seed=3)).name
    assert name == "upos-control3-subnetwork-neuron-pretrained-s0"


def test_selectivity_pairs_task_and_control_runs(tmp_path) -> None:
    store = Store(tmp_path / "store")
    base = {"task": "upos", "model": "tiny", "probe": "mlp", "rank": "1"}
    bits = {"lower": 1, "upper": 32}
    for seed, acc in ((0, 0.90), (1, 0.80)):
        add_run(store, {**base, "seed": seed}, {"dev": {"accuracy": acc}, "bits": bits})
    for rank, control_seed, acc in (("1", 0, 0.30), ("1", 1, 0.40), ("d", 0, 0.15)):
        run = add_run(store, {**base, "rank": rank, "control": True, "control_seed": control_seed},
                      {"dev": {"accuracy": acc}, "bits": bits})
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "control": True, "control_seed": control_seed}))
    add_run(store, {**base, "rank": "d"}, {"dev": {"accuracy": 0.95}, "bits": bits})
    add_run(store, {**base, "rank": "5"}, {"dev": {"accuracy": 0.93}, "bits": bits})  # no control: no row
    rows = selectivity_rows(load_results(store.root))
    # r=1: task (0.90 + 0.80) / 2 = 85.00, control (0.30 + 0.40) / 2 = 35.00, each ± 7.07 [t interval over the two
    # seeds, clipped to [0, 100]]; r=d: 95.00 - 15.00 (one run each: no interval without sentence statistics)
    assert rows == [["tiny", "upos", "mlp", "r=1", "pretrained", "accuracy", "85.00 ± 7.07 [21.47, 100.00]",
                     "35.00 ± 7.07 [0.00, 98.53]", "50.00", 2, 2],
                    ["tiny", "upos", "mlp", "r=d", "pretrained", "accuracy", "95.00", "15.00", "80.00", 1, 1]]
    out = tmp_path / "report"
    assert main(["report", str(store.root), "--report-dir", str(out)]) == 0
    assert (out / "selectivity.csv").read_text().splitlines()[1].endswith(
        '"85.00 ± 7.07 [21.47, 100.00]","35.00 ± 7.07 [0.00, 98.53]",50.00,2,2')
    table1 = (out / "table1-dev.csv").read_text()
    assert "95.00" in table1 and "55.00" not in table1  # the control run (15.00) is not averaged into MLP-1


def test_the_selectivity_grid_pairs_every_probe_with_its_control() -> None:
    points = load_grid("selectivity").points("quick")
    assert len(points) == 3 * 2 * 2
    assert Counter((p["task"], p["probe"], p["control"]) for p in points) == {
        (t, probe, c): 1 for t in ("upos", "dep", "ner") for probe in ("subnetwork", "mlp") for c in (False, True)
    }


def test_dep_control_runs_decode_each_word_and_refuse_mst() -> None:
    from subprobe.config import ProbeConfig
    from subprobe.errors import ConfigError

    assert resolve(ProbeConfig(task="dep", control=True)).decoder == "argmax"
    assert resolve(ProbeConfig(task="dep")).decoder == "mst"
    assert resolve(ProbeConfig(task="dep", decoder="argmax")).decoder == "argmax"
    with pytest.raises(ConfigError, match="--decoder mst cannot score the dependency control task"):
        resolve(ProbeConfig(task="dep", control=True, decoder="mst"))


def test_a_perfect_memoriser_of_the_dep_control_task_scores_one() -> None:
    """Arc scores that put all their mass on the control heads of 500 random sentences: the control run's decoder
    (argmax) gives UAS 1.0; a single-rooted tree (MST) cannot hold them (about 0.7)."""
    import random

    import torch

    from subprobe.config import ProbeConfig
    from subprobe.heads.biaffine import BiaffineHead, BiaffineOutput
    from subprobe.metrics.dep import attachment_scores
    from subprobe.tasks.registry import get_task

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(300)]
    sentences = [[rng.choice(vocab) for _ in range(rng.randint(2, 20))] for _ in range(500)]
    gold = [control_heads(words, 0) for words in sentences]
    task = get_task("dep")
    task.configure(resolve(ProbeConfig(task="dep", control=True)))
    width = 1 + max(map(len, sentences))
    arc = torch.full((len(sentences), width, width), -1e4)
    mask = torch.zeros(len(sentences), width, dtype=torch.bool)
    for b, heads in enumerate(gold):
        for i, h in enumerate(heads, start=1):
            arc[b, i, h] = 10.0
        mask[b, 1 : len(heads) + 1] = True
    out = BiaffineOutput(arc, torch.zeros(0), torch.zeros(0))

    def uas(method: str) -> float:
        pred = BiaffineHead.decode_heads(None, out, mask, method)
        predicted = [pred[b, 1 : len(h) + 1].tolist() for b, h in enumerate(gold)]
        return attachment_scores(gold, gold, predicted, gold)["uas"]

    assert uas(task.decoder) == 1.0
    assert uas("mst") < 0.8


def test_dep_selectivity_compares_per_word_heads_on_both_sides(tmp_path) -> None:
    """The task run (MST headline) pairs with its control run (argmax): both sides are read as las_argmax."""
    store = Store(tmp_path / "store")
    base = {"task": "dep", "model": "tiny", "probe": "mlp", "rank": "1"}
    bits = {"lower": 1, "upper": 32}
    add_run(store, base, {"dev": {"las": 0.80, "las_argmax": 0.78, "las_mst": 0.80}, "bits": bits})
    add_run(store, {**base, "control": True}, {"dev": {"las": 0.50, "las_argmax": 0.50, "las_mst": 0.30},
                                              "bits": bits})
    assert selectivity_rows(load_results(store.root)) == [
        ["tiny", "dep", "mlp", "r=1", "pretrained", "las_argmax", "78.00", "50.00", "28.00", 1, 1]]
