"""One way to write a file (:mod:`subprobe.atomic`): a temporary name, fsync, rename.

A scan of the package's source keeps it the only way: no other module opens a file for writing, calls
``Path.write_text``, ``torch.save``, ``safetensors.save_file`` or renames files; ``savefig`` and
``save_pretrained`` write only into the temporary path of an ``atomic_path`` / ``atomic_dir`` block. The
same scan holds item 4 of issue 28 statically: no pickle, no unsafe YAML, no ``torch.load`` without
``weights_only=True``, no ``trust_remote_code``.
"""

from __future__ import annotations

import ast
import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from subprobe import atomic
from subprobe.errors import DamagedFileError, SubprobeError, WriteError
from tests.conftest import REPO

PACKAGE = REPO / "subprobe"

#: Calls of other libraries that write to a path they are given: allowed only inside an atomic_path /
#: atomic_dir block, writing to (a path under) its temporary name.
PATH_WRITERS = {"savefig", "save_pretrained"}
#: Modules whose ``open(path, mode)`` takes the mode second (``Path.open(mode)`` takes it first).
OPENERS = {"", "io", "builtins", "codecs", "gzip", "lzma", "bz2"}


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _owner(func: ast.expr) -> str:
    """``torch`` for ``torch.save``, ``atomic`` for ``atomic.write_text``, '' for a plain name or a call on an
    expression (``Path(p).write_text``: see :func:`_is_method`)."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return ""


def _write_mode(call: ast.Call, mode_position: int) -> bool:
    """``open(..., "w")`` and friends: a literal mode with w, a, x or +."""
    modes = call.args[mode_position:mode_position + 1] + [k.value for k in call.keywords if k.arg == "mode"]
    return any(isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+")
               for m in modes)


def _uses(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


class Scanner(ast.NodeVisitor):
    """Collects ``file:line: what`` for every direct write (and every way to run code from a file)."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path, self.root = path, root
        self.atomic_targets: list[set[str]] = []  # names bound by enclosing `with atomic_path(...) as tmp`
        self.found: list[str] = []

    def flag(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.path.relative_to(self.root.parent)}:{node.lineno}: {what}")

    def visit_With(self, node: ast.With) -> None:
        bound = set()
        for item in node.items:
            expr = item.context_expr
            if isinstance(expr, ast.Call) and _name(expr.func) in ("atomic_path", "atomic_dir"):
                if isinstance(item.optional_vars, ast.Name):
                    bound.add(item.optional_vars.id)
        self.atomic_targets.append(bound)
        self.generic_visit(node)
        self.atomic_targets.pop()

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name, owner = _name(func), _owner(func)
        method = isinstance(func, ast.Attribute)
        inside = set().union(*self.atomic_targets) if self.atomic_targets else set()
        n_args = len(node.args)
        if name == "open" and owner == "os":
            if any(_uses(a, {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND"}) for a in node.args):
                self.flag(node, "os.open() for writing")
        elif name == "open" and _write_mode(node, 1 if owner in OPENERS and (owner or not method) else 0):
            if not (node.args and _uses(node.args[0], inside)):
                self.flag(node, "open() for writing")
        elif name in ("write_text", "write_bytes") and method and owner != "atomic":
            self.flag(node, f"{name}()")  # Path.write_text; the helpers are plain names or atomic.<name>
        elif name == "save" and owner == "torch":
            self.flag(node, "torch.save")
        elif name == "save_file":
            self.flag(node, "save_file()")
        elif name in ("dump", "safe_dump") and owner in ("json", "yaml", "pickle") and (
            n_args >= 2 or any(k.arg in ("fp", "stream", "file") for k in node.keywords)
        ):
            self.flag(node, f"{owner}.{name}() to a file")
        elif name in ("replace", "rename") and (owner == "os" or (method and n_args == 1 and not node.keywords)):
            self.flag(node, f"{owner + '.' if owner else ''}{name}()")  # os.replace / Path.replace / Path.rename
        elif name in ("copy", "copy2", "copyfile", "copytree", "move") and owner == "shutil":
            self.flag(node, f"shutil.{name}()")
        elif name in ("mkstemp", "NamedTemporaryFile", "TemporaryFile") and owner in ("", "tempfile"):
            self.flag(node, f"{name}()")
        elif name in PATH_WRITERS:
            target = node.args[0] if node.args else None
            if target is None or not _uses(target, inside):
                self.flag(node, f"{name}() outside an atomic_path/atomic_dir block")
        # item 4: nothing that can run code from a file
        if name in ("load", "loads") and owner in ("pickle", "marshal", "dill", "cloudpickle"):
            self.flag(node, f"{owner}.{name}")
        if name in ("load", "load_all", "unsafe_load", "full_load") and owner == "yaml":
            self.flag(node, f"yaml.{name} (use yaml.safe_load)")
        if name == "load" and owner in ("np", "numpy") and any(
            k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
            for k in node.keywords
        ):
            self.flag(node, "np.load with allow_pickle")
        if name == "load" and owner == "torch":
            weights_only = [k for k in node.keywords if k.arg == "weights_only"]
            if not (weights_only and isinstance(weights_only[0].value, ast.Constant) and weights_only[0].value.value):
                self.flag(node, "torch.load without weights_only=True")
        remote = [k for k in node.keywords if k.arg == "trust_remote_code"]
        if name == "from_pretrained" and not (remote and isinstance(remote[0].value, ast.Constant)
                                              and remote[0].value.value is False):
            self.flag(node, "from_pretrained without trust_remote_code=False")
        elif remote and not (isinstance(remote[0].value, ast.Constant) and remote[0].value.value is False):
            self.flag(node, "trust_remote_code")
        if name in ("eval", "exec") and not method:
            self.flag(node, f"{name}()")
        self.generic_visit(node)


def direct_writes(root: Path = PACKAGE) -> list[str]:
    """``file:line: what`` for every direct write under ``root`` (subprobe/atomic.py, the helper, excepted)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "atomic.py":
            continue
        scanner = Scanner(path, root)
        scanner.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found += scanner.found
    for path in sorted(root.rglob("*.py")):  # write_text / write_bytes as plain names must come from atomic
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module not in ("subprobe.atomic", "subprobe.runs"):
                for alias in node.names:
                    if alias.name in ("write_text", "write_bytes", "write_json"):
                        found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {alias.name} from {node.module}")
    return found


def test_no_module_writes_a_file_except_through_subprobe_atomic():
    assert direct_writes() == []


def test_the_scan_finds_each_kind_of_direct_write(tmp_path):
    """The scanner is the guard: it must flag every pattern it claims to (a deliberately broken package)."""
    package = tmp_path / "subprobe"
    package.mkdir()
    (package / "bad.py").write_text(textwrap.dedent("""
        import json, os, pickle, shutil, torch, yaml
        import numpy as np
        from pathlib import Path
        from safetensors.torch import save_file
        from subprobe.atomic import atomic_path

        def f(path, fig, model, obj):
            Path(path).write_text("x")
            open(path, "w").write("x")
            open(path, mode="ab")
            torch.save(obj, path)
            save_file(obj, path)
            os.replace(path, path + ".x")
            shutil.copyfile(path, "y")
            json.dump(obj, open(path, "w"))
            fig.savefig(path)
            model.save_pretrained(path)
            with atomic_path(path) as tmp:
                fig.savefig(path)  # inside the block, but not to the temporary path
            pickle.load(open(path, "rb"))
            yaml.load(open(path), Loader=yaml.Loader)
            torch.load(path)
            torch.load(path, weights_only=False)
            np.load(path, allow_pickle=True)
            model.from_pretrained(path, trust_remote_code=True)
            model.from_pretrained(path)
            model.other(path, trust_remote_code=True)

        def fine(path, fig, model, name, obj):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png")
                model.save_pretrained(str(tmp))
            open(path).read()
            Path(path).open("rb")
            name.replace("_", "-")
            obj.copy()
            torch.load(path, weights_only=True)
            np.load(path, allow_pickle=False)
            model.from_pretrained(path, trust_remote_code=False)
            yaml.safe_load(open(path))
            "a-b".replace("-", "_")
    """))
    found = [line.split(": ", 1)[1] for line in direct_writes(package)]
    assert found == [
        "write_text()", "open() for writing", "open() for writing", "torch.save", "save_file()", "os.replace()",
        "shutil.copyfile()", "json.dump() to a file", "open() for writing",
        "savefig() outside an atomic_path/atomic_dir block",
        "save_pretrained() outside an atomic_path/atomic_dir block",
        "savefig() outside an atomic_path/atomic_dir block", "pickle.load", "yaml.load (use yaml.safe_load)",
        "torch.load without weights_only=True", "torch.load without weights_only=True", "np.load with allow_pickle",
        "from_pretrained without trust_remote_code=False", "from_pretrained without trust_remote_code=False",
        "trust_remote_code",
    ]


# -- the helper itself ----------------------------------------------------------------------------------


def test_a_failure_inside_the_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b'{"a": 2')  # half written, then the writer fails
            raise RuntimeError("boom")
    assert atomic.read_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_directory_is_replaced_whole(tmp_path):
    out = tmp_path / "export"
    with atomic.atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic.atomic_dir(out) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("killed halfway")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    with atomic.atomic_dir(out) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary or old directory left


def test_append_file_never_holds_a_cut_line(tmp_path, monkeypatch):
    log = atomic.AppendFile(tmp_path / "log.jsonl")
    log.write('{"step": 1}\n')
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(WriteError, match="log.jsonl: cannot write file: No space left on device"):
        log.write('{"step": 2}\n')
    assert (tmp_path / "log.jsonl").read_text() == '{"step": 1}\n'


def test_read_json_names_a_damaged_file(tmp_path):
    path = tmp_path / "index.json"
    path.write_text('{"a": {"status": "do')
    with pytest.raises(DamagedFileError, match=r"index.json: cannot be read \(not valid JSON: Unterminated string"):
        atomic.read_json(path)
    with pytest.raises(ValueError):  # callers that treat an unreadable optional file as absent still catch it
        atomic.read_json(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(DamagedFileError, match="index.json: cannot be read"):
        atomic.read_json(path)


# -- a full disk, for real: a child process under a file-size limit -------------------------------------

WRITE_UNDER_LIMIT = """
import resource, sys, torch
from subprobe import atomic
from subprobe.errors import SubprobeError
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
kind, target = sys.argv[1], sys.argv[2]
big = torch.arange(4096, dtype=torch.float32)
try:
    if kind == "text":
        atomic.write_text(target, "x" * 10000)
    elif kind == "safetensors":
        atomic.write_safetensors(target, {"w": big})
    elif kind == "torch":
        atomic.save_torch(target, {"w": big})
    else:
        with atomic.atomic_dir(target) as tmp:
            atomic.write_text(tmp / "small.txt", "ok")
            atomic.write_safetensors(tmp / "model.safetensors", {"w": big})
except SubprobeError as exc:
    print(exc)
    sys.exit(2)
"""


@pytest.mark.parametrize("kind", ["text", "safetensors", "torch", "directory"])
def test_a_full_disk_keeps_the_old_file_whole(kind, tmp_path):
    """RLIMIT_FSIZE makes every write past 4 KiB fail with EFBIG, as a full disk fails with ENOSPC."""
    target = tmp_path / ("export" if kind == "directory" else f"file.{kind}")
    if kind == "directory":
        target.mkdir()
        (target / "old.txt").write_text("old")
    else:
        target.write_text("old")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", WRITE_UNDER_LIMIT, kind, str(target)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    line = done.stdout.strip()
    assert line.count("\n") == 0 and "cannot write file: File too large" in line
    assert "the previous file is kept" in line
    if kind == "directory":
        assert [p.name for p in target.iterdir()] == ["old.txt"]
    else:
        assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary left behind


def test_torch_files_written_by_the_helper_load_with_weights_only(tmp_path):
    path = tmp_path / "state.pt"
    atomic.save_torch(path, {"w": torch.ones(3), "step": 4, "text": "[1, 2]"})
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["w"], torch.ones(3)) and state["step"] == 4


def test_write_error_is_a_user_error_with_one_line(tmp_path):
    missing = tmp_path / "no-such-dir" / "x.json"
    with pytest.raises(SubprobeError) as info:
        atomic.write_json(missing, {})
    assert str(info.value).startswith(f"{missing}: cannot write file: No such file or directory")
    assert "\n" not in str(info.value)


def test_file_size_limit_is_what_the_fault_tests_assume():
    """Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails with EFBIG instead of killing the process."""
    import signal

    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    assert resource.RLIMIT_FSIZE is not None


def test_json_round_trip(tmp_path):
    atomic.write_json(tmp_path / "a.json", {"x": [1, 2.5, "é"]})
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == {"x": [1, 2.5, "é"]}


def test_a_run_directory_holding_only_stale_temporaries_counts_as_empty(tmp_path):
    """A run killed while writing its first file leaves only a temporary: the next run starts there (and removes
    it) instead of calling the directory foreign."""
    from subprobe.runs import RunDir, prepare_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.yaml.0123abcd.tmp").write_text("task: up")
    assert RunDir(run).status() == "empty"
    prepare_run_dir(run, overwrite=False)
    assert list(run.iterdir()) == []
