"""Bad input through the command line: one line `subprobe: error: ...` naming where and what to do, exit 2.

Every case runs `subprobe.cli.main([...])` as a user would and checks the whole of stderr: a single
line, no traceback, the file:line or flag, and the advice. Bugs (non-user exceptions) must still
raise with their traceback.
"""

from __future__ import annotations

import json

import pytest

from subprobe.cli import main
from tests.conftest import CONLLU, build_tiny_model


def row(i, form, upos="NOUN", head="0", deprel="root", ncols=10):
    cols = [str(i), form, form, upos, "_", "_", str(head), deprel, "_", "_"]
    return "\t".join(cols[:ncols])


def sentence(*rows):
    return "\n".join(rows) + "\n\n"


GOOD = sentence(row(1, "the", "DET", 2, "det"), row(2, "dog", "NOUN", 0, "root"))

#: name -> (text of the training file, substrings of the error line after the file name)
CONLLU_CASES = {
    "wrong-column-count": (
        GOOD + sentence(row(1, "a", "DET", 2, "det", ncols=9), row(2, "cat")),
        ":4: expected 10 tab-separated columns, found 9",
        "separated by single tabs",
    ),
    "spaces-not-tabs": (GOOD + "1 a a DET _ _ 0 root _ _\n", ":4: expected 10", "not spaces"),
    "head-not-integer": (
        sentence(row(1, "a", head="x"), row(2, "b", head=1)),
        ":1: HEAD 'x' of word 1 is not an integer",
        "every word needs one HEAD",
    ),
    "head-negative": (
        sentence(row(1, "a", head=-1), row(2, "b", head=1)),
        ":1: HEAD -1 of word 1 is negative",
        "every word needs one HEAD",
    ),
    "head-out-of-range": (
        sentence(row(1, "a"), row(2, "b", head=9)),
        ":2: HEAD 9 of word 2 is out of range",
        "from 1 to 2",
    ),
    "no-root": (sentence(row(1, "a", head=2), row(2, "b", head=1)), ":1: sentence has no root", "HEAD 0"),
    "two-roots": (sentence(row(1, "a"), row(2, "b")), ":2: sentence has 2 roots", "exactly one word with HEAD 0"),
    "cycle": (
        sentence(row(1, "a"), row(2, "b", head=3), row(3, "c", head=2)),
        ":2: HEADs form a cycle",
        "must reach the root",
    ),
    "empty-file": ("", ":1: file contains no sentences", "at least one sentence"),
    "duplicate-id": (sentence(row(1, "a"), row(1, "b", head=1)), ":2: duplicate word ID 1", "number the words"),
    "non-consecutive-id": (
        sentence(row(1, "a"), row(3, "b", head=1)),
        ":2: non-consecutive word ID 3 (expected 2)",
        "number the words",
    ),
    "no-upos": (
        sentence(row(1, "a", upos="_"), row(2, "b", upos="_", head=1)),
        ":1: sentence has no UPOS tags",
        "use a file with UPOS",
    ),
}


def run(argv, capsys) -> str:
    """Run the CLI; check exit 2 and a single-line error without traceback; return the line."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert err.count("\n") == 0, err
    assert err.startswith("subprobe: error: ")
    return err


def expect(argv, capsys, *needles):
    err = run(argv, capsys)
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


@pytest.fixture()
def probe_args(tiny_bert, tiny_ud, tmp_path):
    """A valid `probe` command line to which a case adds or overrides flags (argparse: last one wins)."""
    return [
        "probe",
        "--task",
        "upos",
        "--model",
        tiny_bert,
        "--train",
        tiny_ud["train"],
        "--dev",
        tiny_ud["dev"],
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-progress",
        "--precision",
        "fp32",
        "--out",
        tmp_path / "run",
    ]


@pytest.mark.parametrize("case", sorted(CONLLU_CASES))
def test_malformed_conllu_training_file(case, probe_args, tmp_path, capsys):
    text, *needles = CONLLU_CASES[case]
    bad = tmp_path / "bad.conllu"
    bad.write_text(text, encoding="utf-8")
    expect([*probe_args, "--train", bad], capsys, f"subprobe: error: {bad}:", *needles)


def test_conllu_not_utf8(probe_args, tmp_path, capsys):
    bad = tmp_path / "latin1.conllu"
    bad.write_bytes(GOOD.encode() + sentence(row(1, "caf\xe9"), row(2, "b", head=1)).encode("latin-1"))
    expect([*probe_args, "--dev", bad], capsys, f"{bad}:4: not valid UTF-8: byte 0xe9", "re-encode the file")


def test_conllu_missing_final_blank_line_is_accepted(tmp_path):
    from subprobe.data.conllu import read_conllu

    path = tmp_path / "no-final-newline.conllu"
    path.write_text(CONLLU.rstrip("\n"), encoding="utf-8")
    full = tmp_path / "full.conllu"
    full.write_text(CONLLU, encoding="utf-8")
    assert [s.words for s in read_conllu(path)] == [s.words for s in read_conllu(full)]


def test_dep_file_without_heads(probe_args, tmp_path, capsys):
    bad = tmp_path / "noheads.conllu"
    bad.write_text(sentence(row(1, "a", head="_"), row(2, "b", head="_")), encoding="utf-8")
    expect(
        [*probe_args, "--task", "dep", "--train", bad],
        capsys,
        f"{bad}:1: sentence has no dependency heads",
        "use a treebank file with HEAD",
    )


# -- CoNLL-2003 ------------------------------------------------------------------------------------

NER_GOOD = "-DOCSTART- -X- -X- O\n\nJohn NNP B-NP B-PER\nsaw VBD B-VP O\nLondon NNP B-NP B-LOC\n\n"


@pytest.mark.parametrize(
    "text, flags, needles",
    [
        (NER_GOOD + "Mary NNP B-PER\n", [], [":7: found 3 columns but line 3 has 4", "same number of columns"]),
        (NER_GOOD + "Mary NNP B-NP B_PER\n", [], [":7: invalid NER tag 'B_PER'", "O, B-TYPE or I-TYPE"]),
        (
            NER_GOOD + "Mary NNP B-NP I-PER\n",
            ["--ner-scheme", "iob2"],
            [":7: I-PER starts an entity, which IOB2 forbids", "use --ner-scheme iob1 or auto"],
        ),
    ],
    ids=["wrong-column-count", "invalid-tag", "iob1-in-iob2"],
)
def test_malformed_conll2003_file(text, flags, needles, probe_args, tmp_path, capsys):
    bad = tmp_path / "eng.train"
    bad.write_text(text, encoding="utf-8")
    dev = tmp_path / "eng.testa"
    dev.write_text(NER_GOOD, encoding="utf-8")
    expect([*probe_args, "--task", "ner", "--train", bad, "--dev", dev, *flags], capsys, f"{bad}", *needles)


# -- data that is well formed but does not fit ----------------------------------------------------


def test_dev_label_unseen_in_training(probe_args, tmp_path, capsys):
    dev = tmp_path / "dev.conllu"
    dev.write_text(sentence(row(1, "the", "DET", 2, "det"), row(2, "dog", "XYZ"), row(3, "cat", "XYZ", 2, "dep")))
    expect(
        [*probe_args, "--dev", dev],
        capsys,
        f"{dev}: upos label(s) not seen in the training data: 'XYZ' (2 tokens)",
        "train on data that has them",
    )


def test_training_budget_keeps_the_whole_training_files_labels(probe_args, tmp_path, capsys):
    # 'XYZ' is only in the 4th training sentence: --max-train-samples 3 must not make the dev 'XYZ' unseen
    train = tmp_path / "train.conllu"
    train.write_text(GOOD * 3 + sentence(row(1, "the", "DET", 2, "det"), row(2, "dog", "XYZ")))
    dev = tmp_path / "dev.conllu"
    dev.write_text(GOOD + sentence(row(1, "the", "DET", 2, "det"), row(2, "cat", "XYZ")))
    out = tmp_path / "run"
    argv = [*probe_args, "--train", train, "--dev", dev, "--max-train-samples", "3", "--out", out, "--overwrite"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert json.loads((out / "vocab.json").read_text())["upos"] == ["DET", "NOUN", "XYZ"]
    assert json.loads((out / "metrics.json").read_text())["sentences"]["train"] == 3


def test_sentence_longer_than_the_model(probe_args, tmp_path, capsys):
    long = tmp_path / "long.conllu"  # the tiny model takes 64 subwords
    long.write_text(GOOD + sentence(row(1, "dog"), *(row(i, "dog", head=1) for i in range(2, 71))))
    expect(
        [*probe_args, "--train", long, "--long-sentences", "error"],
        capsys,
        f"{long}:4: sentence of 70 words is 72 subwords long, over the model limit of 64",
        "use --long-sentences drop",
    )


# -- models ----------------------------------------------------------------------------------------


def test_model_path_does_not_exist(tmp_path, capsys):
    expect(
        ["probe", "--model", tmp_path / "nope", "--dry-run"],
        capsys,
        f"--model {tmp_path / 'nope'}: no such dir",
        "give an existing path or a Hub id",
    )


def test_model_directory_without_config(tmp_path, capsys):
    expect(
        ["probe", "--model", tmp_path, "--dry-run"],
        capsys,
        f"--model {tmp_path}: the directory has no config.json",
        "save_pretrained",
    )


def test_hub_id_while_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import time
    expect(
        ["probe", "--model", "some-org/no-such-model", "--dry-run"],
        capsys,
        "--model some-org/no-such-model",
        "the Hugging Face Hub is not reachable",
        "use a local path",
    )


def test_target_modules_that_match_nothing(tmp_path, capsys):
    gpt2 = build_tiny_model(tmp_path / "gpt2", family="gpt2")  # Conv1D and fused c_attn: masked since issue 12
    assert main(["probe", "--model", str(gpt2), "--dry-run"]) == 0
    capsys.readouterr()
    expect(
        ["probe", "--model", gpt2, "--dry-run", "--target-modules", "query_proj=q"],
        capsys,
        "--target-modules query_proj=q found no projection matrices to mask",
        "check the module names",
    )


def test_granularity_that_does_not_divide(tiny_bert, capsys):
    expect(
        ["probe", "--model", tiny_bert, "--dry-run", "--granularity", "5,1"],
        capsys,
        "--granularity 5,1: block (5,1) does not divide encoder.layer.0.attention.self.query (32x32)",
        "choose block sizes that divide every masked matrix (e.g. --granularity 4,1)",
    )


def test_unknown_granularity(tiny_bert, capsys):
    expect(
        ["probe", "--model", tiny_bert, "--dry-run", "--granularity", "paper-12"],
        capsys,
        "--granularity 'paper-12' is not known",
        "use weight, neuron, matrix",
    )


# -- flags and configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--task", "srl"], ["--task 'srl' is not known", "use one of upos, dep, ner"]),
        (["--probe", "svm"], ["--probe 'svm' is not known", "use one of"]),
        (["--setting", "shuffled"], ["--setting 'shuffled' is not known", "use one of"]),
        (["--epochs", "-1"], ["--epochs must be positive, got -1", "give a whole number >= 1"]),
        (["--checkpoint-every", "0"], ["--checkpoint-every must be positive, got 0"]),
        (["--task", "upos", "--decoder", "argmax"], ["--decoder only applies to --task dep", "drop it"]),
        (["--ner-scheme", "iob2"], ["--ner-scheme only applies to --task ner", "drop it or use --task ner"]),
        (["--dry-run", "--overwrite"], ["--overwrite contradicts it", "drop one of them"]),
        (["--threads", "0"], ["--threads must be at least 1, got 0"]),
        (["--probe", "linear", "--rank", "5"], ["--rank only applies to --probe mlp, not --probe linear"]),
        (["--probe", "mlp", "--granularity", "weight"], ["--granularity only applies to --probe subnetwork"]),
        (["--no-cache-features"], ["--cache-features only applies to --probe mlp or linear", "not --probe subnetwork"]),
    ],
    ids=[
        "task",
        "probe",
        "setting",
        "negative-epochs",
        "checkpoint-every",
        "decoder-upos",
        "scheme-upos",
        "dry-run-overwrite",
        "threads-zero",
        "rank-linear",
        "granularity-mlp",
        "cache-subnetwork",
    ],
)
def test_bad_flags(flags, needles, probe_args, capsys):
    expect([*probe_args, *flags], capsys, *needles)


def test_missing_training_file(probe_args, tmp_path, capsys):
    expect(
        [*probe_args, "--train", tmp_path / "nope.conllu"],
        capsys,
        f"--train {tmp_path / 'nope.conllu'}: no such",
        "check the path",
    )


def test_training_file_is_a_directory(probe_args, tmp_path, capsys):
    expect([*probe_args, "--train", tmp_path], capsys, f"--train {tmp_path}: is a directory", "check the path")


def test_no_data_directory_and_no_train_file(tiny_bert, monkeypatch, capsys, tmp_path):
    """NER has no embedded data (CoNLL-2003 cannot be shipped): one line saying how to get it, nothing written."""
    monkeypatch.delenv("SUBPROBE_DATA", raising=False)
    expect(
        ["probe", "--task", "ner", "--model", tiny_bert, "--out", tmp_path / "run"],
        capsys,
        "no --train file given and no data root: CoNLL-2003 English NER is not shipped with subprobe",
        "subprobe data get conll2003",
        "pass --data-dir DIR (or set SUBPROBE_DATA) or --train/--dev/--test PATH",
    )
    assert not (tmp_path / "run").exists()


def test_run_directory_exists(probe_args, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    expect(probe_args, capsys, f"--out {out}: run directory already exists", f"--resume {out}", "--overwrite")
    assert (out / "metrics.json").read_text() == "{}"  # nothing lost


@pytest.mark.parametrize(
    "text, needles",
    [
        ("task: upos\nepochz: 3\n", ["unknown configuration keys epochz", "remove them"]),
        ("task: upos\nepochs: [3\n", [":3: not valid YAML", "write one `key: value` per line"]),
        ("task: upos\n  epochs: 3\n", [":2: not valid YAML"]),
        ("epochs: three\n", [": epochs must be an integer or null, got 'three'", "fix the value"]),
        ("- upos\n- dep\n", ["expected `key: value` lines (a YAML mapping), found a list"]),
    ],
    ids=["unknown-key", "unclosed-bracket", "bad-indent", "wrong-type", "not-a-mapping"],
)
def test_malformed_config_file(text, needles, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text, encoding="utf-8")
    expect(["probe", "--config", cfg], capsys, str(cfg), *needles)


def test_missing_config_file(tmp_path, capsys):
    expect(
        ["probe", "--config", tmp_path / "nope.yaml"],
        capsys,
        f"--config {tmp_path / 'nope.yaml'}: no such file",
        "check the path",
    )


# -- --resume ----------------------------------------------------------------------------------------


def test_resume_flag_contradictions(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    expect(
        ["probe", "--resume", run_dir, "--overwrite"],
        capsys,
        "--resume and --overwrite contradict each other",
        "drop one of them",
    )
    expect(["probe", "--resume", run_dir, "--config", "x.yaml"], capsys, "--config contradicts it", "drop --config")
    expect(
        ["probe", "--resume", run_dir, "--epochs", "5"],
        capsys,
        "so --epochs cannot change",
        "drop --epochs",
        "--mask-lr",
    )


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    expect(["probe", "--resume", tmp_path / "nope"], capsys, f"--resume {tmp_path / 'nope'}: no such run directory")
    expect(
        ["probe", "--resume", tmp_path],
        capsys,
        f"--resume {tmp_path}: no config.yaml in it",
        "give the --out directory of an earlier run",
    )


@pytest.fixture()
def interrupted_run(probe_args, tmp_path, monkeypatch):
    """A run on its own copy of the training data, stopped after its first checkpoint (step 2 of 3)."""
    from subprobe.training import step

    train = tmp_path / "train.conllu"
    train.write_text(CONLLU * 8, encoding="utf-8")
    original = step.collate
    calls = {"n": 0}

    def stop(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "collate", stop)
    argv = [*probe_args, "--train", train, "--batch-size", "10", "--eval-every", "2"]
    assert main([str(a) for a in argv]) == 130
    monkeypatch.setattr(step, "collate", original)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    return tmp_path / "run"


def test_resume_after_the_training_data_changed(interrupted_run, tmp_path, capsys):
    train = tmp_path / "train.conllu"
    train.write_text(train.read_text() + GOOD, encoding="utf-8")
    capsys.readouterr()
    expect(
        ["probe", "--resume", interrupted_run],
        capsys,
        f"--train {train}: the file changed since this run started",
        "restore the original file",
    )


def test_resume_with_a_damaged_checkpoint(interrupted_run, capsys):
    ckpt = interrupted_run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    capsys.readouterr()
    expect(
        ["probe", "--resume", interrupted_run],
        capsys,
        f"{ckpt}: the checkpoint cannot be read",
        f"delete it and run `subprobe probe --resume {interrupted_run}`",
    )


def test_resume_python_api_refuses_another_configuration(interrupted_run):
    import subprobe
    from subprobe.errors import ConfigError

    config = subprobe.ProbeConfig.from_yaml(interrupted_run / "config.yaml")
    config.seed = 3  # the same --out with another seed: not this run
    with pytest.raises(ConfigError, match=r"started with a different configuration \(seed: 0 -> 3\)"):
        subprobe.probe(config, resume=True, echo=lambda *a, **k: None)


# -- bugs stay visible -------------------------------------------------------------------------------


def test_unexpected_exception_keeps_its_traceback(tiny_bert, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr("subprobe.api.dry_run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["probe", "--model", str(tiny_bert), "--dry-run"])
