"""mkdocs hooks (mkdocs.yml ``hooks:``): the package version in the pages, and links that leave the docs folder.

* ``@SUBPROBE_VERSION@`` in a page becomes ``subprobe.__version__`` (the one version, from ``subprobe/version.py``).
* Pages included from the repository root (CONTRIBUTING.md, CHANGELOG.md) link to ``CONTRIBUTING.md``-style
  neighbours and into ``docs/``; those links are rewritten to the site's pages.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _version() -> str:
    sys.path.insert(0, str(ROOT))
    try:
        from subprobe.version import __version__
    finally:
        sys.path.pop(0)
    return __version__


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = markdown.replace("@SUBPROBE_VERSION@", _version())
    if page.file.src_uri in ("contributing.md", "changelog.md"):
        markdown = re.sub(r"\]\(docs/([\w-]+\.md)", r"](\1", markdown)
        markdown = markdown.replace("](CONTRIBUTING.md", "](contributing.md")
        markdown = markdown.replace("](CHANGELOG.md", "](changelog.md")
    return markdown
