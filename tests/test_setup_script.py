"""scripts/setup.sh installs torch from PyTorch's CPU index (a PyPI ``torch`` is the multi-GB CUDA build on Linux)
and falls back to the configured indexes when that index cannot be reached; ``pip`` is replaced by a recorder."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def install_torch(tmp_path, reachable: bool, env: dict | None = None) -> list[str]:
    """Run setup.sh's ``install_torch`` with a ``python`` that records its arguments; PyTorch's index fails
    unless ``reachable``. Returns the recorded calls."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    log = tmp_path / "calls"
    fail = "" if reachable else 'case "$*" in *download.pytorch.org*) return 1;; esac; '
    script = (f'source "{REPO}/scripts/setup.sh" --functions-only; '
              f'python() {{ echo "$*" >> "{log}"; {fail}return 0; }}; install_torch')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_torch_comes_from_the_cpu_index_when_it_is_reachable(tmp_path):
    (call,) = install_torch(tmp_path, reachable=True)
    assert call.startswith("-m pip install") and "torch==2.13.0" in call
    assert call.endswith("--index-url https://download.pytorch.org/whl/cpu")


def test_an_unreachable_index_falls_back_to_the_configured_ones(tmp_path):
    first, second = install_torch(tmp_path, reachable=False)
    assert "--index-url https://download.pytorch.org/whl/cpu" in first
    assert "torch==2.13.0" in second and "--index-url" not in second


def test_another_index_is_one_variable(tmp_path):
    (call,) = install_torch(tmp_path, True, {"SUBPROBE_TORCH_INDEX": "https://download.pytorch.org/whl/cu124"})
    assert call.endswith("--index-url https://download.pytorch.org/whl/cu124")


def test_a_version_pin_matches_the_local_builds_of_that_version():
    """README: ``torch==2.13.0`` accepts ``2.13.0+cpu`` and ``2.13.0+cu124`` (PEP 440 local versions)."""
    from packaging.specifiers import SpecifierSet

    pin = SpecifierSet("==2.13.0")
    assert pin.contains("2.13.0+cpu") and pin.contains("2.13.0+cu124") and not pin.contains("2.13.1")
