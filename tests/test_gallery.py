"""The results gallery (issue 25): pages ask for figures with ``<!-- gallery: NAME.png | alt -->`` markers, and
scripts/gallery.py copies real runs' figures into docs/images/ and shows them under the markers; a page never
links to a figure that is not there, and docs/images/ holds only figures a marker asks for."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def gallery():
    spec = importlib.util.spec_from_file_location("gallery_script", REPO / "scripts" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the figure names the report writers give (subprobe.report.figures): <kind>-<task>[-<more>].png
WRITTEN = re.compile(r"(pareto|layers|layers-paper|matrix|heads|density|mdl)-[\w.-]+\.png")


def test_the_pages_ask_for_figures_the_reports_write_and_show_only_committed_ones(gallery):
    names = gallery.named_images(REPO)
    assert {"pareto-upos.png", "pareto-dep.png", "layers-upos.png", "density-upos.png", "mdl-upos.png"} <= set(names)
    assert all(WRITTEN.fullmatch(n) for n in names), names
    for page, prefix in gallery.PAGES:
        lines = (REPO / page).read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            marker = gallery.MARKER.match(line)
            if marker and (REPO / "docs" / "images" / marker[1]).is_file():  # shown once committed
                assert lines[i + 1] == f"![{marker[2]}]({prefix}{marker[1]})", (page, i + 2)
        for image in re.findall(r"\]\(((?:docs/)?images/[\w.-]+)\)", "\n".join(lines)):
            assert (REPO / page).parent.joinpath(image).is_file(), (page, image)
    committed = {p.name for p in (REPO / "docs" / "images").glob("*")} if (REPO / "docs" / "images").is_dir() else set()
    assert committed <= set(names), f"docs/images holds figures no page asks for: {committed - set(names)}"
    assert gallery.show_figures(REPO) == []  # the pages already agree with docs/images/


@pytest.fixture
def checkout(gallery, tmp_path):
    """A copy of the pages with markers, with no figures, as the repository has before real runs."""
    root = tmp_path / "repo"
    for page, _ in gallery.PAGES:
        (root / page).parent.mkdir(parents=True, exist_ok=True)
        lines = (REPO / page).read_text(encoding="utf-8").splitlines(keepends=True)
        (root / page).write_text("".join(line for line in lines if not gallery.IMAGE.match(line.rstrip("\n"))),
                                 encoding="utf-8")  # the committed figures' image lines taken out
    return root


def figures(folder, *names):
    (folder / "figures").mkdir(parents=True)
    for name in names:
        (folder / "figures" / name).write_bytes(b"\x89PNG\r\n\x1a\n" + folder.name.encode() + name.encode())
    return folder


def test_gallery_copies_real_figures_and_shows_them_under_their_markers(gallery, checkout, tmp_path, capsys):
    before = (checkout / "docs" / "gallery.md").read_text()
    assert "](images/" not in before and "](docs/images/" not in (checkout / "README.md").read_text()
    first = figures(tmp_path / "figure1", "pareto-upos.png", "pareto-dep.png", "matrix-upos-pretrained.png")
    second = figures(tmp_path / "later", "pareto-upos.png", "mdl-upos.png")
    assert gallery.main([str(first), str(second), "--root", str(checkout)]) == 1  # layers, density: missing
    out, err = capsys.readouterr()
    assert "missing layers-upos.png" in err and "missing density-upos.png" in err and "pareto" not in err
    images = checkout / "docs" / "images"
    assert sorted(p.name for p in images.iterdir()) == ["mdl-upos.png", "pareto-dep.png", "pareto-upos.png"]
    assert (images / "pareto-upos.png").read_bytes().endswith(b"figure1pareto-upos.png")  # the first folder wins
    readme = (checkout / "README.md").read_text().splitlines()
    at = next(i for i, line in enumerate(readme) if "<!-- gallery: pareto-upos.png" in line)
    assert readme[at + 1].startswith("![Accuracy against complexity") and readme[at + 1].endswith(
        "](docs/images/pareto-upos.png)")
    page = (checkout / "docs" / "gallery.md").read_text()
    assert len(page.splitlines()) == len(before.splitlines()) + 3
    for name in ("pareto-upos.png", "pareto-dep.png", "mdl-upos.png"):
        assert re.search(rf"^<!-- gallery: {re.escape(name)} \| (.+) -->\n!\[\1\]\(images/{re.escape(name)}\)$",
                         page, re.M), name
    assert "](images/layers-upos.png)" not in page and "](images/density-upos.png)" not in page
    assert "(images/pareto-upos.png)" in (checkout / "docs" / "index.md").read_text()

    # again: nothing changes; a figure taken away takes its image line with it
    assert gallery.main([str(first), str(second), "--root", str(checkout)]) == 1
    assert (checkout / "docs" / "gallery.md").read_text() == page
    (images / "mdl-upos.png").unlink()
    assert gallery.show_figures(checkout) == ["docs/gallery.md"]
    assert "](images/mdl-upos.png)" not in (checkout / "docs" / "gallery.md").read_text()

    # every figure there: exit 0
    all_of_them = figures(tmp_path / "all", *gallery.named_images(checkout))
    assert gallery.main([str(all_of_them), "--root", str(checkout)]) == 0


def test_gallery_refuses_a_folder_without_figures_in_one_line(gallery, checkout, tmp_path, capsys):
    assert gallery.main([str(tmp_path), "--root", str(checkout)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gallery: error: ") and "\n" not in err and "figures: no such folder" in err
    assert not (checkout / "docs" / "images").exists()
