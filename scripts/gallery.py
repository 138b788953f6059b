"""Copy the figures the results gallery shows from a report or store folder into docs/images/.

    python scripts/gallery.py REPORT_DIR [--docs docs]

The figures are the ``images/NAME.png`` that docs/gallery.md and README.md name; each is copied from
``REPORT_DIR/figures/NAME.png`` (what ``subprobe report`` and ``subprobe reproduce`` write). A figure the folder
lacks is listed and left as it was; the exit status is 1 then. Update the captions in docs/gallery.md with the
conditions of the runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def named_images(docs: Path) -> list[str]:
    """The ``images/NAME.png`` file names that the gallery page and the README show, in order, once each."""
    names: list[str] = []
    for page in (docs / "gallery.md", ROOT / "README.md"):
        for name in re.findall(r"\]\((?:docs/)?images/([\w.-]+\.png)\)", page.read_text(encoding="utf-8")):
            if name not in names:
                names.append(name)
    return names


def copy_figures(report: Path, docs: Path) -> tuple[list[str], list[str]]:
    """Copy every named figure found in ``report/figures``; returns (copied, missing)."""
    copied, missing = [], []
    for name in named_images(docs):
        source = report / "figures" / name
        if source.is_file():
            shutil.copyfile(source, docs / "images" / name)
            copied.append(name)
        else:
            missing.append(name)
    return copied, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report folder or results store (with figures/)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="the docs folder (default: docs)")
    args = parser.parse_args(argv)
    if not (args.report / "figures").is_dir():
        print(f"gallery: {args.report}/figures: no such folder; give a report folder or a store", file=sys.stderr)
        return 2
    copied, missing = copy_figures(args.report, args.docs)
    for name in copied:
        print(f"copied {name}")
    for name in missing:
        print(f"missing {args.report / 'figures' / name} (left as it was)", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
