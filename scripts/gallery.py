"""Put the figures of real runs into the docs: copy them from report or store folders into docs/images/ and show
them where the pages ask for them.

    python scripts/gallery.py REPORT_DIR [REPORT_DIR ...] [--root .]

A page asks for a figure with a marker line (README.md, docs/index.md, docs/gallery.md)::

    <!-- gallery: pareto-upos.png | UPOS accuracy against bits -->

The script copies every asked-for ``NAME.png`` from the first ``REPORT_DIR/figures/NAME.png`` that has it (what
``subprobe report`` and ``subprobe reproduce`` write) into ``docs/images/``, then writes the image line
``![alt](images/NAME.png)`` (``docs/images/`` in the README) just under each marker whose figure is in
``docs/images/``, and removes it under a marker whose figure is not: a page never shows a figure that is not
there, and never a stand-in. A figure no folder has is listed and the exit status is 1. Run it again after new
runs; it changes nothing when nothing changed. Update the captions in docs/gallery.md with the runs' conditions.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the pages with figure markers, and the folder of docs/images/ as each page links to it
PAGES = (("README.md", "docs/images/"), ("docs/index.md", "images/"), ("docs/gallery.md", "images/"))
MARKER = re.compile(r"^<!-- gallery: ([\w.-]+\.png) \| (.+?) -->$")
IMAGE = re.compile(r"^!\[.*\]\((?:docs/)?images/([\w.-]+\.png)\)$")


def named_images(root: Path = ROOT) -> list[str]:
    """The figure names the pages' markers ask for, in order, once each."""
    names: list[str] = []
    for page, _ in PAGES:
        for line in (root / page).read_text(encoding="utf-8").splitlines():
            marker = MARKER.match(line)
            if marker and marker[1] not in names:
                names.append(marker[1])
    return names


def copy_figures(reports: list[Path], root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Copy every asked-for figure found in a ``report/figures`` (the first that has it) into docs/images/;
    returns (copied, missing)."""
    images = root / "docs" / "images"
    copied, missing = [], []
    for name in named_images(root):
        source = next((r / "figures" / name for r in reports if (r / "figures" / name).is_file()), None)
        if source is None:
            missing.append(name)
            continue
        images.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, images / name)
        copied.append(name)
    return copied, missing


def show_figures(root: Path = ROOT) -> list[str]:
    """Under each marker, the image line when docs/images/ has its figure and none when it has not; returns the
    pages that changed."""
    changed = []
    for page, prefix in PAGES:
        path = root / page
        text = path.read_text(encoding="utf-8")
        lines, out, i = text.splitlines(), [], 0
        while i < len(lines):
            out.append(lines[i])
            marker = MARKER.match(lines[i])
            i += 1
            if not marker:
                continue
            if i < len(lines) and IMAGE.match(lines[i]):
                i += 1  # the old image line: written again below if the figure is there
            if (root / "docs" / "images" / marker[1]).is_file():
                out.append(f"![{marker[2]}]({prefix}{marker[1]})")
        new = "\n".join(out) + ("\n" if text.endswith("\n") else "")
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("reports", type=Path, nargs="+", metavar="REPORT_DIR",
                        help="report folders or results stores (each with figures/); the first that has a figure wins")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    args = parser.parse_args(argv)
    for report in args.reports:
        if not (report / "figures").is_dir():
            print(f"gallery: error: {report}/figures: no such folder; give a report folder or a results store",
                  file=sys.stderr)
            return 2
    copied, missing = copy_figures(args.reports, args.root)
    for name in copied:
        print(f"copied docs/images/{name}")
    for page in show_figures(args.root):
        print(f"updated {page}")
    for name in missing:
        print(f"missing {name}: in no REPORT_DIR/figures/ (its pages show it once a run makes it)", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
