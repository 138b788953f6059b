"""Every file subprobe writes goes through here: a temporary name beside the target, fsync, ``os.replace``.

The contract, for every writer (text, JSON, safetensors, torch checkpoints, figures, exported model
directories, the lines of ``log.jsonl``): a kill at any moment, a full disk or a failing device leaves
either the old file or the new one, whole -- never a half-written file under the real name. A failure
to write is one :class:`~subprobe.errors.WriteError` naming the file (the temporary file is removed).
A process killed between writing and renaming leaves a ``.NAME.<hex>.tmp`` file, which no reader ever
opens (:func:`remove_stale_temporaries` deletes them).

:func:`atomic_path` is the one primitive (a temporary path for writers that take a file name);
everything else here is built on it. ``tests/test_atomic.py`` scans the package so that no other
module writes a file directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from subprobe.errors import DamagedFileError, WriteError


def temporary_name(target: Path, suffix: str = "tmp") -> Path:
    """``.NAME.<hex>.tmp`` beside ``target`` (hidden, unique, never a name a reader looks for)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.{suffix}")


def write_failure(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write (``None`` if ``exc`` is not one): OSError itself, or the I/O error that
    safetensors (``SafetensorError: ... I/O error: ... (os error 28)``) and torch report as their own types."""
    if isinstance(exc, OSError):
        return exc
    if type(exc).__name__ == "SafetensorError" or isinstance(exc, RuntimeError):
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found:
            number = int(found.group(1))
            return OSError(number, os.strerror(number))
    cause = getattr(exc, "write_error", None)
    return cause if isinstance(cause, OSError) else None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: some platforms cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends normally the file there is synced to disk
    and renamed over ``path``. Whatever the block raises, the temporary file is removed and ``path`` is left
    as it was; a failed write (full disk, no permission) becomes one :class:`WriteError` naming ``path``."""
    target = Path(path)
    tmp = temporary_name(target)
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        failure = write_failure(exc)
        if failure is not None and not isinstance(exc, WriteError):
            raise WriteError(str(target), failure.strerror or str(failure), kept=target.exists()) from None
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; when the block ends normally its files are synced
    and it replaces ``path`` (an existing directory there is moved aside, then deleted). On any failure the
    temporary directory is deleted and ``path`` is left as it was."""
    target = Path(path)
    tmp = temporary_name(target)
    tmp.mkdir(parents=False)
    try:
        yield tmp
        for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync_path(file)
        old = None
        if target.exists():
            old = temporary_name(target, "old")
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = write_failure(exc)
        reason = exc.reason if isinstance(exc, WriteError) else failure and (failure.strerror or str(failure))
        if reason:  # named after the directory the user asked for, not the temporary one
            raise WriteError(str(target), reason, kept=target.exists()) from None
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        handle.write(data)


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (``\\n`` line ends on every platform)."""
    with atomic_path(path) as tmp, open(tmp, "x", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write torch ``tensors`` (and string ``metadata``) as a safetensors file, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


class _RecordingFile:
    """A binary file whose write errors are kept: ``torch.save`` turns them into a RuntimeError without the
    OS error, which :func:`write_failure` then finds here (``write_error``)."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.write_error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.write_error = exc
            raise

    def __getattr__(self, name: str):
        return getattr(self.handle, name)


def save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically (read it back with ``torch.load(..., weights_only=True)``)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "xb") as raw:
        handle = _RecordingFile(raw)
        try:
            torch.save(obj, handle)
        except RuntimeError as exc:
            if handle.write_error is not None:
                raise handle.write_error from exc
            raise


class AppendFile:
    """A text file extended piece by piece (``log.jsonl``): every version is written whole with
    :func:`write_text`, so a kill or a full disk never leaves a line cut in half. Logs hold one line per dev
    check (hundreds at most), so rewriting them costs nothing measurable."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.text = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""

    def write(self, text: str) -> None:
        self.text += text
        write_text(self.path, self.text)

    def flush(self) -> None:
        """Nothing to do: every :meth:`write` is already on disk."""

    def close(self) -> None:
        """Nothing to do (kept so that the log reads like a file)."""


class Staged:
    """Files that belong together (a dataset release): each written to a temporary name beside its target
    (:meth:`open`), then renamed into place together by :meth:`commit` once every one is whole and checked, or
    removed by :meth:`discard`."""

    def __init__(self) -> None:
        self.files: dict[Path, Path] = {}  # target -> temporary file

    def open(self, target: str | Path, suffix: str = "part"):
        """A new binary file for ``target`` (its temporary name), open for writing."""
        target = Path(target)
        tmp = temporary_name(target, suffix)
        self.files[target] = tmp
        return open(tmp, "xb")

    def drop(self, target: str | Path) -> None:
        """Forget ``target`` and remove its temporary file (nothing to keep)."""
        tmp = self.files.pop(Path(target), None)
        if tmp is not None:
            tmp.unlink(missing_ok=True)

    def commit(self) -> None:
        """Sync every file and rename it into place."""
        for target, tmp in self.files.items():
            try:
                _fsync_path(tmp)
                os.replace(tmp, target)
            except OSError as exc:
                raise WriteError(str(target), exc.strerror or str(exc), kept=target.exists()) from None
        for directory in {t.parent for t in self.files}:
            _fsync_dir(directory)
        self.files.clear()

    def discard(self) -> None:
        for tmp in self.files.values():
            tmp.unlink(missing_ok=True)
        self.files.clear()


def remove_stale_temporaries(directory: str | Path) -> None:
    """Delete the temporary files (``.NAME.<hex>.tmp``) that a process killed before its rename left."""
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``. A missing file raises FileNotFoundError; a file that cannot be read or parsed
    (truncated, corrupted, not UTF-8) one :class:`DamagedFileError` line naming it (a ValueError too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedFileError(str(path), _reason(exc)) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DamagedFileError(str(path), f"not valid JSON: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for ``exc``."""
    text = getattr(exc, "strerror", None) or str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
