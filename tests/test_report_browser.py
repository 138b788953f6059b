"""Open the report in headless Chromium from file://: every image loads and the tables have their rows.

Chromium prints the page's DOM after the load event (``--dump-dom``); the page's own inline script
has by then written ``data-images="loaded/total"`` on <body>, counting images with naturalWidth > 0.
Skipped when Chromium is not installed (Debian: ``apt-get install chromium chromium-driver``).
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from subprobe.cli import main
from tests.synthetic_runs import make_store, parse


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless browser: Chromium is not installed (apt-get install chromium chromium-driver)",
)


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after it has loaded in headless Chromium (no network, throwaway profile)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-extensions", "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
           "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("browser")
    make_store(root / "store", str(tiny_bert))
    assert main(["report", str(root / "store"), "--report-dir", str(root / "out")]) == 0
    return root / "out"


def test_report_loads_in_chromium_with_all_images_and_rows(report_dir, tmp_path):
    page = parse(dump_dom(report_dir / "index.html", tmp_path / "profile"))
    assert page.body.get("data-images") == "14/14", "not every <img> loaded (naturalWidth > 0) in Chromium"
    assert page.rows["table1-dev"] == 6 and page.rows["table2-dev"] == 12
    assert page.rows["runs"] == 30
    assert page.rows["pareto-dominance-upos"] == 3 and page.rows["pareto-dominance-dep"] == 3
    assert page.rows["centre-of-mass"] == 2


def test_a_missing_image_is_caught(report_dir, tmp_path):
    broken = tmp_path / "out"
    shutil.copytree(report_dir, broken)
    (broken / "figures" / "pareto-upos.png").unlink()
    dom = dump_dom(broken / "index.html", tmp_path / "profile")
    assert parse(dom).body.get("data-images") == "13/14"  # one of the 14 images of the page removed
    assert "image failed to load: figures/pareto-upos.png" in dom
