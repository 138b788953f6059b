"""What a project people can cite ships: a licence, a citation file and a changelog that agree with the package."""

from __future__ import annotations

import yaml

import subprobe
from tests.conftest import REPO


def test_licence_citation_and_changelog_agree_with_the_package(capsys):
    from subprobe.cli import main

    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["version"] == subprobe.__version__ and citation["license"] == "Apache-2.0"
    assert citation["preferred-citation"]["title"] == "Low-Complexity Probing via Finding Subnetworks"
    assert f"## {subprobe.__version__}" in (REPO / "CHANGELOG.md").read_text()
    try:
        main(["--version"])
    except SystemExit:
        pass
    assert capsys.readouterr().out.strip() == f"subprobe {subprobe.__version__}"
