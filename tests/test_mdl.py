"""MDL probing (online code): block boundaries, the codes of each task, a two-block online code by hand, the
command end to end on tiny data, and its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from subprobe.cli import main
from subprobe.config import ProbeConfig
from subprobe.errors import ConfigError
from subprobe.metrics.online_code import BOUNDARIES, assemble, block_ends, smallest_size

#: Four sentences of the tiny BERT's words: sentences 0-1 (10 words) are MDL's first block, 2-3 (5 words) the second.
FOUR = [
    [("the", "DET"), ("dog", "NOUN"), ("runs", "VERB"), (".", "PUNCT")],
    [("mary", "PROPN"), ("saw", "VERB"), ("a", "DET"), ("big", "ADJ"), ("house", "NOUN"), ("!", "PUNCT")],
    [("john", "PROPN"), ("sat", "VERB"), (".", "PUNCT")],
    [("the", "DET"), ("cat", "NOUN")],
]


def conllu(sentences) -> str:
    """CoNLL-U text of (word, UPOS) sentences; each word heads on the next, the last on ROOT."""
    blocks = []
    for words in sentences:
        n = len(words)
        lines = [f"{i}\t{w}\t{w}\t{tag}\t_\t_\t{i + 1 if i < n else 0}\t{'root' if i == n else 'dep'}\t_\t_"
                 for i, (w, tag) in enumerate(words, start=1)]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks) + "\n"


def test_block_ends_are_the_papers_boundaries_rounded_half_up() -> None:
    assert block_ends(10_000) == [10, 20, 40, 80, 160, 320, 625, 1250, 2500, 5000, 10_000]
    # 12,543 EWT sentences: 0.1% = 12.543 -> 13, 6.25% = 783.9375 -> 784, 50% = 6271.5 -> 6272
    assert block_ends(12_543) == [13, 25, 50, 100, 201, 401, 784, 1568, 3136, 6272, 12_543]
    assert smallest_size() == 750 and block_ends(750)[:3] == [1, 2, 3]
    with pytest.raises(ConfigError, match="749 training sentences are too few .* at least 750 training sentences"):
        block_ends(749)
    assert block_ends(4, (50, 100)) == [2, 4]


def test_assemble_the_online_code_by_hand() -> None:
    # two blocks at 50 / 100 %: block 1 (2 sentences, 10 words) uniform, block 2 coded by the probe
    block = {"block": [2, 4], "code": "c", "labels": 6, "sentences": 2, "dropped_long": 0, "words": 5, "bits": 4.0,
             "uniform_bits": 5 * math.log2(6),
             "prefix": {"sentences": 2, "dropped_long": 0, "words": 10, "uniform_bits": 10 * math.log2(6)}}
    found = assemble([block], (50, 100))
    assert found["uniform_bits"] == pytest.approx(15 * math.log2(6))
    assert found["online_bits"] == pytest.approx(10 * math.log2(6) + 4.0)
    assert found["compression"] == pytest.approx(15 * math.log2(6) / (10 * math.log2(6) + 4.0))
    assert [(b["start"], b["end"], b["coded_with"]) for b in found["blocks"]] == [(0, 2, "uniform"), (2, 4, "probe")]
    assert found["complete"] and found["missing_blocks"] == [] and found["sentences"] == 4 and found["words"] == 15
    # a missing block: no totals, and it says which
    first = {**block, "block": [1, 2], "prefix": {**block["prefix"], "sentences": 1}}
    gap = assemble([first], (25, 50, 100), n=4)
    assert not gap["complete"] and gap["missing_blocks"] == [[2, 4]] and gap["online_bits"] is None
    # without n, the blocks found must be those of the largest end's boundaries: [1, 2] is not a block of 2 sentences
    assert not assemble([first], (25, 50, 100))["complete"]


def test_tagging_codelength_is_minus_log2_of_the_gold_label() -> None:
    from subprobe.data.batching import IGNORE, Batch
    from subprobe.tasks.registry import get_task

    task = get_task("upos")
    q = torch.tensor([0.5, 0.25, 0.25])
    output = torch.log(q).expand(1, 4, 3).clone()  # slot 0 ([CLS]) and three words, any logits = log q
    labels = torch.tensor([[IGNORE, 0, 1, 2]])
    batch = Batch(*(torch.zeros(1, 4, dtype=torch.long),) * 4, torch.tensor([[False, True, True, True]]),
                  {"upos": labels}, [0], 3)
    assert task.codelength(None, output, batch)[0].tolist() == pytest.approx([0.0, 1.0, 2.0, 2.0])


def test_dependency_codelength_is_the_biaffine_factorisation() -> None:
    from subprobe.heads.biaffine import BiaffineHead

    torch.manual_seed(0)
    head = BiaffineHead(8, 5, arc_dim=6, label_dim=4, dropout=0.0).eval()
    with torch.no_grad():
        head.arc_weight.normal_()
        head.rel_weight.normal_()
    features = torch.randn(2, 5, 8)
    mask = torch.tensor([[False, True, True, True, True], [False, True, True, False, False]])
    heads = torch.tensor([[-100, 2, 0, 2, 3], [-100, 0, 1, -100, -100]])
    rels = torch.tensor([[-100, 1, 0, 4, 2], [-100, 3, 1, -100, -100]])
    out = head(features, mask)
    nll = head.word_nll(out, heads, rels, mask)
    # independently: log-softmax over candidate heads, and over relations given the gold head (label_scores)
    arc = torch.log_softmax(out.arc_scores.float(), dim=-1)
    rel = torch.log_softmax(head.label_scores(out, heads).float(), dim=-1)
    for b in range(2):
        for i in range(5):
            expected = 0.0 if not mask[b, i] else -(arc[b, i, heads[b, i]] + rel[b, i, rels[b, i]]).item()
            assert nll[b, i].item() == pytest.approx(expected, abs=1e-5)


def test_uniform_codes_by_hand(tiny_bert, tmp_path) -> None:
    from tests.conftest import tiny_upos_splits

    path = tmp_path / "four.conllu"
    path.write_text(conllu(FOUR))
    task, _, _, splits, vocabs = tiny_upos_splits(tiny_bert, {"train": path, "dev": path})
    assert len(vocabs["upos"]) == 6  # ADJ DET NOUN PROPN PUNCT VERB
    assert task.uniform_bits(splits["train"], vocabs) == pytest.approx(15 * math.log2(6))  # N log2 K
    from subprobe.data.pipeline import prepare_splits, read_splits
    from subprobe.models.loading import load_encoder
    from subprobe.tasks.registry import get_task

    dep = get_task("dep")
    _, tokenizer = load_encoder(str(tiny_bert))
    dep_splits, dep_vocabs = prepare_splits(dep, read_splits(dep, {"train": path}), tokenizer, 64)
    assert len(dep_vocabs["rels"]) == 2  # dep, root
    # heads: log2 n per word of an n-word sentence; relations: log2 K per word
    heads = 4 * math.log2(4) + 6 * math.log2(6) + 3 * math.log2(3) + 2 * math.log2(2)
    assert dep.uniform_bits(dep_splits["train"], dep_vocabs) == pytest.approx(heads + 15 * math.log2(2))


def test_two_block_online_code_with_a_probe_of_known_probabilities(tiny_bert, tmp_path, monkeypatch) -> None:
    """The whole path (block run, next block coded in the run, mdl.json) with the probe's distribution fixed: the
    linear head's weights zeroed and its bias log q, so every word gets q whatever the features."""
    import subprobe.api as api
    from subprobe.complexity.mdl import mdl
    from subprobe.training.trainer import TrainOutcome

    path = tmp_path / "four.conllu"
    path.write_text(conllu(FOUR))
    labels = ["ADJ", "DET", "NOUN", "PROPN", "PUNCT", "VERB"]
    q = np.array([0.05, 0.1, 0.2, 0.15, 0.3, 0.2])

    def fixed(cfg, task, built, data, run, checkpoint, tracker, ranks, echo):
        with torch.no_grad():
            built.model.head.linear.weight.zero_()
            built.model.head.linear.bias.copy_(torch.log(torch.tensor(q, dtype=torch.float32)))
        return TrainOutcome(0, 1, False, 0.0, 0.0)

    monkeypatch.setattr(api, "train_probe", fixed)
    cfg = ProbeConfig(task="upos", probe="linear", model=str(tiny_bert), train=str(path), dev=str(path),
                      out=str(tmp_path / "mdl"), progress=False, precision="fp32", epochs=1)
    found = mdl(cfg, boundaries=(50, 100), echo=lambda *a, **k: None)
    block2 = [t for words in FOUR[2:] for _, t in words]  # PROPN VERB PUNCT DET NOUN
    bits = sum(-math.log2(q[labels.index(t)]) for t in block2)
    assert found["blocks"][1]["bits"] == pytest.approx(bits, rel=1e-6)
    assert found["uniform_bits"] == pytest.approx(15 * math.log2(6), rel=1e-12)
    assert found["online_bits"] == pytest.approx(10 * math.log2(6) + bits, rel=1e-6)
    assert found["compression"] == pytest.approx(15 * math.log2(6) / (10 * math.log2(6) + bits), rel=1e-6)
    assert found["labels"] == 6 and found["code"].startswith("-log2 p(label | sentence)")
    assert json.loads((tmp_path / "mdl" / "mdl.json").read_text()) == found
    block_run = found["blocks"][1]["run_dir"]
    metrics = json.loads((tmp_path / "mdl" / "blocks" / "000002-000004" / "metrics.json").read_text())
    assert block_run.endswith("000002-000004") and metrics["codelength"]["block"] == [2, 4]
    assert metrics["sentences"] == {"train": 2, "dev": 4, "next": 2}  # trained on the prefix only


def _many(n: int) -> str:
    rng = np.random.default_rng(0)
    words = [("the", "DET"), ("a", "DET"), ("dog", "NOUN"), ("cat", "NOUN"), ("runs", "VERB"), ("sat", "VERB"),
             ("big", "ADJ"), ("red", "ADJ"), ("mary", "PROPN"), ("john", "PROPN")]
    return conllu([[words[i] for i in rng.integers(0, len(words), size=rng.integers(2, 4))] for _ in range(n)])


def test_mdl_command_end_to_end_and_continues(tiny_bert, tmp_path, capsys) -> None:
    train = tmp_path / "train.conllu"
    train.write_text(_many(800))
    dev = tmp_path / "dev.conllu"
    dev.write_text(_many(20))
    out = tmp_path / "mdl"
    argv = ["mdl", "--task", "upos", "--probe", "linear", "--model", str(tiny_bert), "--train", str(train), "--dev",
            str(dev), "--max-train-samples", "760", "--batch-size", "32", "--epochs", "1", "--min-steps", "3",
            "--head-lr", "0.05", "--precision", "fp32", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    found = json.loads((out / "mdl.json").read_text())
    ends = block_ends(760)
    assert [(b["start"], b["end"]) for b in found["blocks"]] == list(zip([0, *ends], ends))
    assert found["complete"] and found["sentences"] == 760 and found["labels"] == 5
    words = sum(b["words"] for b in found["blocks"])
    assert found["uniform_bits"] == pytest.approx(words * math.log2(5))
    assert found["online_bits"] == pytest.approx(sum(b["bits"] for b in found["blocks"]))
    assert found["compression"] == pytest.approx(found["uniform_bits"] / found["online_bits"])
    assert found["compression"] > 2  # the tags are a function of the word: learnt from a few sentences (4.2 here)
    # the smallest prefix (1 sentence, 1 batch per epoch) trains --min-steps epochs
    from subprobe.runs import RunDir

    assert RunDir(out / "blocks" / f"{ends[0]:06d}-{ends[1]:06d}").read_config().epochs == 3
    assert "compression" in capsys.readouterr().out
    # again: every block is finished and kept, the same mdl.json
    stamp = (out / "blocks" / f"{ends[-2]:06d}-{ends[-1]:06d}" / "metrics.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert json.loads((out / "mdl.json").read_text()) == found
    assert (out / "blocks" / f"{ends[-2]:06d}-{ends[-1]:06d}" / "metrics.json").stat().st_mtime_ns == stamp


def test_mdl_bad_input_is_one_line(tiny_bert, tmp_path, capsys) -> None:
    small = tmp_path / "small.conllu"
    small.write_text(conllu(FOUR))
    base = ["mdl", "--task", "upos", "--model", str(tiny_bert), "--train", str(small), "--dev", str(small),
            "--out", str(tmp_path / "out")]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "4 training sentences are too few" in err and "at least 750" in err
    one = tmp_path / "one.conllu"
    one.write_text(conllu([[(w, "NOUN") for w, _ in s] for s in FOUR]))
    assert main([*base[:6], str(one), "--dev", str(one), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "one label (NOUN)" in err
    with pytest.raises(SystemExit) as exit_:  # not a flag of mdl (it sets it per block): one line, no usage
        main([*base, "--mdl-block-end", "3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err == "subprobe: error: unknown flag --mdl-block-end (see `subprobe mdl --help`)\n"
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_probe_run_refuses_a_block_end_it_cannot_code(tiny_bert, tiny_ud, tmp_path, capsys) -> None:
    from tests.conftest import probe_argv

    assert main(probe_argv(tiny_bert, tiny_ud, tmp_path / "a", "--mdl-block-end", "5")) == 2
    assert "needs --max-train-samples N with N < --mdl-block-end" in capsys.readouterr().err
    assert main(probe_argv(tiny_bert, tiny_ud, tmp_path / "b", "--max-train-samples", "5",
                           "--mdl-block-end", "500")) == 2
    assert "the training file has only 24 sentences" in capsys.readouterr().err


def test_boundaries_of_the_paper() -> None:
    assert BOUNDARIES == (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25.0, 50.0, 100.0)


def test_reproduce_mdl_expands_points_into_block_runs(tiny_bert, tmp_path) -> None:
    from subprobe.complexity.mdl import expand_points
    from subprobe.experiments.grids import load_grid

    train = tmp_path / "train.conllu"
    train.write_text(_many(800))
    points = load_grid("mdl").points("quick", task=["upos"])
    assert len(points) == 2 * 3  # pretrained, reset-all x subnetwork, MLP-1, linear
    assert {p["max_train_samples"] for p in points} == {3000}
    values = [{**p, "train": str(train), "dev": str(train), "model": str(tiny_bert)} for p in points[:1]]
    blocks = expand_points(values)
    ends = block_ends(800)  # the file holds 800 < 3000 sentences: N = 800
    assert [(b["max_train_samples"], b["mdl_block_end"]) for b in blocks] == list(zip(ends, ends[1:]))
    # epochs: the profile's 3, or enough for 50 steps of 32-sentence batches: 1 sentence -> 50 epochs
    assert [b["epochs"] for b in blocks] == [max(3, math.ceil(50 / math.ceil(t / 32))) for t in ends[:-1]]
    assert all(b["probe"] == "subnetwork" and b["task"] == "upos" for b in blocks)


def test_reproduce_mdl_and_the_report(tiny_bert, tmp_path, monkeypatch) -> None:
    """A one-probe MDL grid run into a store: mdl.md/json and the plot, and the report's MDL table; the block runs
    stay out of Table 1 and the run list."""
    import subprobe.experiments.reproduce as reproduce_module
    from subprobe.experiments.grids import Grid
    from subprobe.report.html import write_report

    data = tmp_path / "data" / "ud-english-ewt"
    data.mkdir(parents=True)
    for split, n in (("train", 760), ("dev", 10), ("test", 10)):
        (data / f"en_ewt-ud-{split}.conllu").write_text(_many(n))
    grid = Grid("mdl", "", {"task": ["upos"], "setting": ["pretrained"], "probe": [{"probe": "linear"}]},
                {"quick": {"epochs": 1, "batch_size": 32, "head_lr": 0.05, "precision": "fp32", "progress": False}})
    monkeypatch.setattr(reproduce_module, "load_grid", lambda name: grid)
    store = tmp_path / "store"
    result = reproduce_module.reproduce("mdl", model=str(tiny_bert), out=str(store), data_dir=str(tmp_path / "data"),
                                        echo=lambda *a, **k: None)
    assert result["counts"] == {"done": 10, "skipped": 0, "failed": 0}
    (entry,) = result["report"]
    assert entry["complete"] and entry["sentences"] == 760 and entry["probe"] == "linear"
    assert entry["compression"] == pytest.approx(entry["uniform_bits"] / entry["online_bits"])
    assert (store / "mdl.md").is_file() and (store / "figures" / "mdl-upos.png").stat().st_size > 1000
    assert json.loads((store / "mdl.json").read_text())[0]["online_bits"] == pytest.approx(entry["online_bits"])
    row = result["rows"][0]
    assert row[:8] == ["upos", tiny_bert.name, "pretrained", "linear", "", 5, 760, entry["words"]]
    assert row[10] == f"{entry['compression']:.2f}" and row[11] == "10/10"
    out = tmp_path / "report"
    write_report(store, out, echo=lambda *a, **k: None)
    page = (out / "index.html").read_text()
    assert 'id="mdl"' in page and "figures/mdl-upos.png" in page
    from tests.synthetic_runs import parse

    assert parse(page).rows["mdl"] == 1
    assert parse(page).rows["runs"] == 0  # the block runs are the MDL table's, not probes of their own
    assert "Minimum description length" in (out / "report.md").read_text()


def test_the_mdl_plot_draws_one_line_per_point_not_per_probe_name(monkeypatch, tmp_path) -> None:
    """Two points of one probe and setting that differ in another setting (a learning rate) are two lines, not
    one average; seeds of one point (the same ``row``) are one line."""
    from subprobe.report import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, stem: drawn.append(fig) or [])
    blocks = [{"coded_with": "uniform", "bits": 10.0, "words": 5, "trained_on": 0},
              {"coded_with": "probe", "bits": 5.0, "words": 5, "trained_on": 3}]
    point = dict(probe="linear", unit="", setting="pretrained", control=False, complete=True, blocks=blocks,
                 uniform_bits=20.0, words=10)
    points = [{**point, "row": ("lr", 0.001)}, {**point, "row": ("lr", 0.01)}, {**point, "row": ("lr", 0.01)}]
    plots.mdl_plot({"task": "upos", "model": "m", "points": points}, tmp_path / "mdl")
    probe_lines = [line for line in drawn[0].axes[0].get_lines() if line.get_marker() == "o"]
    assert len(probe_lines) == 2
