"""``subprobe data get``: UD naming rules, downloads from a local mirror on the loopback address (laid out
like GitHub's raw files), checksums, the one-line errors (offline, unknown, mismatch, broken off) and that
nothing partial is ever left behind."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from subprobe.cli import main
from subprobe.data import download
from subprobe.data.datasets import UD_ENGLISH_EWT
from subprobe.data.download import KNOWN_SHA256, get, split_file_names
from subprobe.data.sources import find_splits
from subprobe.errors import ConfigError, SubprobeError
from tests.http_mirror import TINY_CONLLU, ewt_r21_release, fake_release, serve

FAKE = "UD_Welsh-Fake"  # Welsh: cy -> cy_fake-ud-*.conllu
SPLITS = ("train", "dev", "test")


def quiet(*args, **kwargs) -> None:
    pass


def sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch):
    monkeypatch.delenv(download.URL_ENV, raising=False)


def test_file_names_follow_the_ud_rules():
    assert split_file_names("UD_English-EWT", "2.16")["train"] == ["en_ewt-ud-train.conllu"]
    assert split_file_names("UD_English-EWT", "2.2")["dev"] == ["en_ewt-ud-dev.conllu"]
    # up to r2.1 a language's main treebank was <lcode>-ud-*; other treebanks already <lcode>_<tb>
    assert split_file_names("UD_English-EWT", "2.1")["test"] == ["en-ud-test.conllu", "en_ewt-ud-test.conllu"]
    assert split_file_names("UD_French-GSD", "2.16")["train"] == ["fr_gsd-ud-train.conllu"]
    assert split_file_names("UD_Old_Church_Slavonic-PROIEL", "2.16")["test"] == ["cu_proiel-ud-test.conllu"]
    assert split_file_names("UD_Klingon-X", "2.16", prefix="tlh_x")["dev"] == ["tlh_x-ud-dev.conllu"]
    with pytest.raises(ConfigError, match="does not know the UD language code of 'Klingon'; pass --prefix"):
        split_file_names("UD_Klingon-X", "2.16")


def test_names_and_releases():
    assert download.treebank_name("ud-ewt") == "UD_English-EWT"
    assert download.treebank_name("UD_French-GSD") == "UD_French-GSD"
    assert [download.parse_release(r) for r in ("2.16", "r2.1", "v2.10")] == ["2.16", "2.1", "2.10"]
    with pytest.raises(ConfigError, match="unknown dataset"):
        download.treebank_name("french")
    with pytest.raises(ConfigError, match="not a UD release"):
        download.parse_release("latest")


def test_fake_treebank_from_the_local_mirror(tmp_path):
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    dev = TINY_CONLLU.replace("mary", "john")
    fake_release(mirror, FAKE, "2.16", {"cy_fake-ud-train.conllu": TINY_CONLLU * 3, "cy_fake-ud-dev.conllu": dev,
                                        "cy_fake-ud-test.conllu": TINY_CONLLU, "LICENSE.txt": "CC0\n"})
    printed = []
    with serve(mirror) as url:
        got = get(FAKE, "2.16", data, base_url=url, progress=False, echo=lambda *a, **k: printed.append(a[0]))
    folder = data / FAKE
    assert got.directory == folder and got.root == data
    assert {s: p.name for s, p in got.files.items()} == {s: f"cy_fake-ud-{s}.conllu" for s in SPLITS}
    assert (folder / "cy_fake-ud-train.conllu").read_text() == TINY_CONLLU * 3
    assert (folder / "cy_fake-ud-dev.conllu").read_text() == dev
    assert [p.name for p in got.extras] == ["LICENSE.txt"]  # README.md / README.txt absent: skipped
    sums = dict(reversed(line.split("  ")) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sums == {"LICENSE.txt": sha("CC0\n"), "cy_fake-ud-dev.conllu": sha(dev),
                    "cy_fake-ud-test.conllu": sha(TINY_CONLLU), "cy_fake-ud-train.conllu": sha(TINY_CONLLU * 3)}
    assert (folder / "SOURCE.txt").read_text().splitlines()[0] == f"{FAKE} r2.16"
    names = [f"cy_fake-ud-{s}.conllu" for s in SPLITS]
    assert files_under(folder) == sorted(["LICENSE.txt", "SHA256SUMS", "SOURCE.txt", *names])
    # not EWT: a run reads it with explicit paths, printed in full
    assert got.probe_args() == ["--train", str(folder / "cy_fake-ud-train.conllu"),
                                "--dev", str(folder / "cy_fake-ud-dev.conllu"),
                                "--test", str(folder / "cy_fake-ud-test.conllu")]
    assert any(f"subprobe probe --task upos --train {folder / 'cy_fake-ud-train.conllu'}" in line for line in printed)


def test_a_treebank_without_train_or_dev(tmp_path):
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    fake_release(mirror, FAKE, "2.16", {"cy_fake-ud-test.conllu": TINY_CONLLU})
    with serve(mirror) as url:
        got = get(FAKE, "2.16", data, base_url=url, progress=False, echo=quiet)
    assert got.files == {"train": None, "dev": None, "test": data / FAKE / "cy_fake-ud-test.conllu"}
    text = got.instructions()
    assert "has no train and dev file" in text and "subprobe predict" in text and "subprobe probe" not in text


def test_ewt_r21_under_its_release_names_then_a_run_finds_it(tmp_path, capsys, monkeypatch):
    """The real r2.1 files (en-ud-*, served from the embedded copy) pass the known checksums, and the data
    root that `data get` prints gives a run exactly those files."""
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    ewt_r21_release(mirror)
    with serve(mirror) as url:
        monkeypatch.setenv(download.URL_ENV, url)  # the mirror setting of the docs
        assert main(["data", "get", "ud-ewt", "--release", "2.1", "--dir", str(data), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"subprobe probe --task upos --data-dir {data}" in out
    assert "checked against the known SHA-256" in out
    folder = data / "UD_English-EWT"
    for split in SPLITS:
        path = folder / f"en-ud-{split}.conllu"
        assert sha(path.read_bytes()) == KNOWN_SHA256[("UD_English-EWT", "2.1")][path.name]
    monkeypatch.delenv("SUBPROBE_DATA", raising=False)
    assert find_splits(UD_ENGLISH_EWT, {}, str(data)) == {s: folder / f"en-ud-{s}.conllu" for s in SPLITS}


def test_default_directory_is_per_release_in_the_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    home = download.user_data_dir()
    if not str(home).startswith(str(tmp_path)):
        pytest.skip("platformdirs does not follow XDG_DATA_HOME on this platform")
    mirror = tmp_path / "mirror"
    fake_release(mirror, "UD_English-EWT", "2.16", {f"en_ewt-ud-{s}.conllu": TINY_CONLLU for s in SPLITS})
    monkeypatch.setitem(KNOWN_SHA256, ("UD_English-EWT", "2.16"), {})  # tiny stand-ins of the real files
    with serve(mirror) as url:
        got = get("ud-ewt", base_url=url, progress=False, echo=quiet)  # release: the default, 2.16
    assert got.release == download.DEFAULT_RELEASE == "2.16"
    assert got.root == home / "ud-2.16"
    assert got.probe_args() == ["--data-dir", str(home / "ud-2.16")]
    assert (home / "ud-2.16" / "UD_English-EWT" / "en_ewt-ud-dev.conllu").read_text() == TINY_CONLLU


def test_offline_is_one_line_and_leaves_nothing(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    with pytest.raises(SubprobeError, match=r"cannot download http://127\.0\.0\.1:\d+/UD_English-EWT/r2\.16/"
                                            r"en_ewt-ud-train\.conllu: .*check the network connection"):
        get("ud-ewt", "2.16", data, base_url=f"http://127.0.0.1:{port}", progress=False, echo=quiet)
    assert not data.exists()


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(download.URL_ENV, f"http://127.0.0.1:{port}")
    for argv, needle in (
        (["data", "get", "ud-ewt", "--dir", str(tmp_path / "d")], "check the network connection"),
        (["data", "get", "UD_Nowhere"], "does not know the UD language code of 'Nowhere'"),
        (["data", "get", "ud-ewt", "--release", "latest"], "--release 'latest': not a UD release"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("subprobe: error: ") and needle in err, err
    assert not (tmp_path / "d").exists()


def test_unknown_treebank_or_release_is_one_line(tmp_path):
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    fake_release(mirror, FAKE, "2.16", {"cy_fake-ud-test.conllu": TINY_CONLLU})
    with serve(mirror) as url:
        with pytest.raises(SubprobeError, match=r"UD_Welsh-Fake r2\.15: not found at .*check the treebank's name"):
            get(FAKE, "2.15", data, base_url=url, progress=False, echo=quiet)
    assert not data.exists()


def test_checksum_mismatch_keeps_nothing(tmp_path):
    """A mirror serving other content under EWT r2.16's names: refused, no file, no folder."""
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    fake_release(mirror, "UD_English-EWT", "2.16", {f"en_ewt-ud-{s}.conllu": TINY_CONLLU for s in SPLITS})
    with serve(mirror) as url:
        with pytest.raises(SubprobeError, match=f"en_ewt-ud-train.conllu: SHA-256 {sha(TINY_CONLLU)} differs from the "
                                                "release's 3fb78e2b.*nothing was kept"):
            get("ud-ewt", "2.16", data, base_url=url, progress=False, echo=quiet)
    assert not data.exists()


def test_a_later_failure_removes_earlier_files_too(tmp_path):
    """train downloads, dev breaks off mid-file: neither is left (nor the folder)."""
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    fake_release(mirror, FAKE, "2.16", {f"cy_fake-ud-{s}.conllu": TINY_CONLLU for s in SPLITS})
    with serve(mirror, short={"cy_fake-ud-dev.conllu"}) as url:
        with pytest.raises(SubprobeError, match="cy_fake-ud-dev.conllu: .*nothing was kept|the download broke off"):
            get(FAKE, "2.16", data, base_url=url, progress=False, echo=quiet)
    assert not data.exists()
    # into an existing root: the root stays, nothing is added to it
    data.mkdir()
    (data / "mine.txt").write_text("x")
    with serve(mirror, short={"cy_fake-ud-test.conllu"}) as url:
        with pytest.raises(SubprobeError):
            get(FAKE, "2.16", data, base_url=url, progress=False, echo=quiet)
    assert files_under(data) == ["mine.txt"]


def test_again_keeps_checked_files_and_refuses_another_release(tmp_path):
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    files = {f"cy_fake-ud-{s}.conllu": TINY_CONLLU for s in SPLITS}
    fake_release(mirror, FAKE, "2.16", files)
    fake_release(mirror, FAKE, "2.15", files)
    printed = []
    with serve(mirror) as url:
        get(FAKE, "2.16", data, base_url=url, progress=False, echo=quiet)
        get(FAKE, "2.16", data, base_url=url, progress=False, echo=lambda *a, **k: printed.append(a[0]))
        assert sum("already there" in line for line in printed) == 3
        with pytest.raises(ConfigError, match=r"holds UD_Welsh-Fake r2\.16, not UD_Welsh-Fake r2\.15; choose another"):
            get(FAKE, "2.15", data, base_url=url, progress=False, echo=quiet)
        # a folder of the user's own files is never overwritten
        (tmp_path / "own" / FAKE).mkdir(parents=True)
        (tmp_path / "own" / FAKE / "cy_fake-ud-train.conllu").write_text("mine")
        with pytest.raises(ConfigError, match="holds files that subprobe data get did not write"):
            get(FAKE, "2.16", tmp_path / "own", base_url=url, progress=False, echo=quiet)
    assert (tmp_path / "own" / FAKE / "cy_fake-ud-train.conllu").read_text() == "mine"


def test_file_url_mirror(tmp_path):
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    fake_release(mirror, FAKE, "2.16", {"cy_fake-ud-dev.conllu": TINY_CONLLU, "cy_fake-ud-test.conllu": TINY_CONLLU})
    got = get(FAKE, "2.16", data, base_url=mirror.as_uri(), progress=False, echo=quiet)
    assert got.files["train"] is None and got.files["test"].read_text() == TINY_CONLLU


def test_conll2003_says_where_it_comes_from(capsys):
    assert main(["data", "get", "conll2003"]) == 1
    out = capsys.readouterr().out
    for needle in ("cannot be downloaded", "NIST", "RCV1", "DIR/conll2003/", "eng.testa", "--data-dir DIR"):
        assert needle in out
    with pytest.raises(ConfigError, match="CoNLL-2003 cannot be downloaded"):
        get("conll2003")
