"""The embedded UD English-EWT r2.1 (package data) and how a run finds its files: explicit paths > a data
root (either EWT naming, either folder name) > the embedded release; env.json records what was read."""

from __future__ import annotations

import json
import lzma
from fnmatch import fnmatch
from pathlib import Path

import pytest

from subprobe.cli import main
from subprobe.data.conllu import read_conllu
from subprobe.data.datasets import CONLL2003, EMBEDDED_ROOT, SPLITS, UD_ENGLISH_EWT
from subprobe.data.download import KNOWN_SHA256
from subprobe.data.sources import embedded_note, file_record, find_splits, sha256_of
from subprobe.errors import ConfigError, DataError
from tests.conftest import CONLLU, REPO
from tests.http_mirror import TINY_CONLLU

EMBEDDED = UD_ENGLISH_EWT.embedded
#: UD English-EWT r2.1 (its stats.xml and SOURCE.md): sentences and words per split.
COUNTS = {"train": (12_543, 204_585), "dev": (2_002, 25_148), "test": (2_077, 25_096)}


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("SUBPROBE_DATA", raising=False)


def test_embedded_counts_and_checksums():
    for split in SPLITS:
        path = EMBEDDED.path(split)
        sentences = read_conllu(path)
        assert (len(sentences), sum(len(s) for s in sentences)) == COUNTS[split]
        assert sentences[0].source == str(path)
        # decompressed, the files are the release files: their SHA-256 is the release's
        assert sha256_of(path) == KNOWN_SHA256[("UD_English-EWT", "2.1")][f"en-ud-{split}.conllu"]


def test_embedded_files_are_small_licensed_and_packaged():
    folder = EMBEDDED.directory
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["LICENSE.txt", "README.treebank.md", "SOURCE.md", *EMBEDDED.files.values()])
    assert all(p.stat().st_size < 2_000_000 for p in folder.iterdir())
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_900_000
    assert "Attribution-ShareAlike 4.0" in (folder / "LICENSE.txt").read_text(encoding="utf-8")
    source = (folder / "SOURCE.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in source and "tag `r2.1`" in source
    # setuptools ships every one of them (pyproject's package-data patterns, relative to subprobe/data)
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data_patterns = patterns["subprobe.data"]
    for path in folder.iterdir():
        relative = path.relative_to(EMBEDDED_ROOT.parent).as_posix()
        assert any(fnmatch(relative, p) for p in data_patterns), relative
    assert EMBEDDED.package_path("train") == "subprobe/data/embedded/ud-english-ewt-r2.1/en-ud-train.conllu.xz"


def test_xz_reads_like_the_plain_file(tmp_path):
    plain, packed = tmp_path / "a.conllu", tmp_path / "a.conllu.xz"
    plain.write_text(CONLLU)
    packed.write_bytes(lzma.compress(CONLLU.encode()))
    a, b = read_conllu(plain), read_conllu(packed)
    assert [s.words for s in a] == [s.words for s in b] and [s.heads for s in a] == [s.heads for s in b]
    assert sha256_of(plain) == sha256_of(packed)
    (tmp_path / "bad.conllu.xz").write_bytes(b"not xz at all")
    with pytest.raises(DataError, match=r"bad\.conllu\.xz: not a valid xz file"):
        read_conllu(tmp_path / "bad.conllu.xz")
    (tmp_path / "cut.conllu.xz").write_bytes(packed.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"cut\.conllu\.xz: .*(truncated|not a valid xz)"):
        read_conllu(tmp_path / "cut.conllu.xz")


def test_nothing_given_reads_the_embedded_release():
    paths = find_splits(UD_ENGLISH_EWT, {}, None)
    assert paths == {split: EMBEDDED.path(split) for split in SPLITS}
    note = embedded_note(paths)
    assert note.startswith("data: UD English-EWT r2.1, embedded in subprobe (github.com/UniversalDependencies/")
    assert "CC BY-SA 4.0" in note and "\n" not in note
    record = file_record(paths["dev"])
    assert record["sha256"] == KNOWN_SHA256[("UD_English-EWT", "2.1")]["en-ud-dev.conllu"]
    assert record["package_path"] == "subprobe/data/embedded/ud-english-ewt-r2.1/en-ud-dev.conllu.xz"
    assert "UD English-EWT r2.1" in record["embedded"]


def test_explicit_and_root_files_are_not_embedded(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "ud-english-ewt").mkdir(parents=True)
    for split in SPLITS:
        (root / "ud-english-ewt" / f"en_ewt-ud-{split}.conllu").write_text(TINY_CONLLU)
    monkeypatch.setenv("SUBPROBE_DATA", str(root))
    paths = find_splits(UD_ENGLISH_EWT, {}, None)
    assert paths == {s: root / "ud-english-ewt" / f"en_ewt-ud-{s}.conllu" for s in SPLITS}
    assert embedded_note(paths) is None and "embedded" not in file_record(paths["train"])
    # explicit paths without --data-dir: the root and the embedded data both stay out
    explicit = {"train": str(paths["train"]), "dev": str(paths["dev"])}
    assert find_splits(UD_ENGLISH_EWT, explicit, None) == {"train": paths["train"], "dev": paths["dev"], "test": None}
    monkeypatch.delenv("SUBPROBE_DATA")
    with pytest.raises(ConfigError, match="no --dev file given; pass --dev PATH with the other explicit paths"):
        find_splits(UD_ENGLISH_EWT, {"train": str(paths["train"])}, None)


@pytest.mark.parametrize("folder", ["ud-english-ewt", "UD_English-EWT"])
@pytest.mark.parametrize("prefix", ["en_ewt", "en"])
def test_both_ewt_namings_in_both_folders(tmp_path, folder, prefix):
    (tmp_path / folder).mkdir()
    for split in ("train", "dev"):  # no test file: it is optional
        (tmp_path / folder / f"{prefix}-ud-{split}.conllu").write_text(TINY_CONLLU)
    paths = find_splits(UD_ENGLISH_EWT, {}, str(tmp_path))
    assert paths == {"train": tmp_path / folder / f"{prefix}-ud-train.conllu",
                     "dev": tmp_path / folder / f"{prefix}-ud-dev.conllu", "test": None}


def test_a_root_without_the_dataset_is_one_line(tmp_path):
    (tmp_path / "conll2003").mkdir()
    with pytest.raises(ConfigError) as info:
        find_splits(UD_ENGLISH_EWT, {}, str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: no UD English-EWT files under this data root (--data-dir (or unset it")
    assert "ud-english-ewt/en_ewt-ud-train.conllu" in message and "UD_English-EWT/en-ud-train.conllu" in message
    (tmp_path / "ud-english-ewt").mkdir()
    (tmp_path / "ud-english-ewt" / "en-ud-train.conllu").write_text(TINY_CONLLU)
    with pytest.raises(ConfigError, match="has no dev file of the UD English-EWT files it holds; add it, or pass"):
        find_splits(UD_ENGLISH_EWT, {}, str(tmp_path))
    with pytest.raises(ConfigError, match="--data-dir .*nope: no such directory"):
        find_splits(UD_ENGLISH_EWT, {}, str(tmp_path / "nope"))


def test_ner_without_data_says_how_to_get_it():
    with pytest.raises(ConfigError) as info:
        find_splits(CONLL2003, {}, None)
    assert str(info.value) == (
        "no --train file given and no data root: CoNLL-2003 English NER is not shipped with subprobe (CoNLL-2003 "
        "cannot be redistributed; `subprobe data get conll2003` says where it comes from); pass --data-dir DIR "
        "(or set SUBPROBE_DATA) or --train/--dev/--test PATH"
    )


def test_a_run_on_the_embedded_data(tiny_bert, tmp_path, capsys):
    """No data flags: the run reads the embedded treebank, says so once on stderr, and env.json records it; a
    resume checks the decompressed content's SHA-256 like any other file's."""
    from subprobe.resume import _check_data

    out = tmp_path / "run"
    argv = ["probe", "--task", "upos", "--probe", "linear", "--model", str(tiny_bert), "--epochs", "1",
            "--batch-size", "8", "--max-train-samples", "16", "--max-eval-samples", "8", "--out", str(out),
            "--no-progress", "--precision", "fp32"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("data: UD English-EWT r2.1, embedded in subprobe") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sentences"] == {"train": 16, "dev": 8, "test": 8}
    data = json.loads((out / "env.json").read_text())["data"]
    assert {s: data[s]["sha256"] for s in SPLITS} == {
        s: KNOWN_SHA256[("UD_English-EWT", "2.1")][f"en-ud-{s}.conllu"] for s in SPLITS
    }
    assert data["train"]["package_path"] == EMBEDDED.package_path("train")
    paths = {split: Path(data[split]["path"]) for split in SPLITS}
    _check_data(out, paths)  # unchanged: accepted
    env = json.loads((out / "env.json").read_text())
    env["data"]["dev"]["sha256"] = "0" * 64
    (out / "env.json").write_text(json.dumps(env))
    with pytest.raises(ConfigError, match="--dev .*en-ud-dev.conllu.xz: the file changed since this run started"):
        _check_data(out, paths)
