"""A newcomer anywhere: a fresh ``git clone`` with no ``../shared`` beside it, no ``$SUBPROBE_DATA`` and an
empty home runs the README's main command on the embedded data, fetches a release with ``data get`` from
a mirror and runs on what that printed.

The clone is of the committed HEAD of this checkout (uncommitted changes are not in it). The model is a
tiny random one (the packaged default model takes over a minute for the same run on a busy 2-core machine).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from subprobe.data.download import KNOWN_SHA256, URL_ENV
from tests.conftest import REPO
from tests.http_mirror import ewt_r21_release, serve

TINY = ("--max-train-samples", "40", "--max-eval-samples", "20", "--epochs", "1", "--threads", "1",
        "--no-progress", "--precision", "fp32")


def readme_main_command() -> list[str]:
    """The ``subprobe probe ...`` of the README's first "Two commands" line, as arguments after ``subprobe``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text[text.index("## Two commands"):].split("```bash", 1)[1].split("```", 1)[0]
    line = next(line for line in block.splitlines() if "subprobe probe" in line)
    command = line[line.index("subprobe probe"):]
    assert "SUBPROBE_DATA" not in line and "--data-dir" not in command and "--train" not in command, line
    return shlex.split(command)[1:]


def run(args: list[str], clone: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "subprobe", *args], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_fresh_clone_runs_on_the_embedded_data_and_fetches_a_release(tmp_path, tiny_bert):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = tmp_path / "work" / "subprobe"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone.parent / "shared").exists() and not (clone.parent.parent / "shared").exists()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUBPROBE_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(clone), HF_HUB_OFFLINE="1")

    # 1. the README's main command, on a tiny model and a slice of the embedded treebank
    out = clone / "runs" / "readme"
    done = run([*readme_main_command(), "--model", str(tiny_bert), *TINY, "--out", str(out)], clone, env)
    assert done.stderr.count("data: UD English-EWT r2.1, embedded in subprobe") == 1
    embedded = clone / "subprobe" / "data" / "embedded" / "ud-english-ewt-r2.1"
    data = json.loads((out / "env.json").read_text())["data"]
    assert data["train"]["path"] == str(embedded / "en-ud-train.conllu.xz")  # the clone's own package data
    assert json.loads((out / "metrics.json").read_text())["sentences"] == {"train": 40, "dev": 20, "test": 20}

    # 2. data get from a mirror into the user data directory, then a run with exactly what it printed
    mirror = tmp_path / "mirror"
    ewt_r21_release(mirror)
    with serve(mirror) as url:
        done = run(["data", "get", "ud-ewt", "--release", "2.1", "--no-progress"], clone, {**env, URL_ENV: url})
    printed = re.search(r"^  subprobe probe --task upos (.+)$", done.stdout, re.M)
    assert printed, done.stdout
    args = shlex.split(printed[1])
    root = home / ".local" / "share" / "subprobe" / "ud-2.1"
    assert args == ["--data-dir", str(root)]
    out = clone / "runs" / "fetched"
    run(["probe", "--task", "upos", *args, "--model", str(tiny_bert), "--probe", "linear", *TINY, "--out", str(out)],
        clone, env)
    data = json.loads((out / "env.json").read_text())["data"]
    for split in ("train", "dev", "test"):
        name = f"en-ud-{split}.conllu"
        assert data[split]["path"] == str(root / "UD_English-EWT" / name)
        assert data[split]["sha256"] == KNOWN_SHA256[("UD_English-EWT", "2.1")][name]
