"""Fault injection for subprobe's fault tests: SUBPROBE_FAULT=SIGNAL@STEP@TARGET[@DELAY] sends SIGNAL to this
process (self) or its parent (parent) just before the STEP-th training step of this process, once per
SUBPROBE_FAULT_ONCE file (created when the fault fires). Loaded through PYTHONPATH in every Python process of a
test (pool workers and Ray workers too); does nothing without SUBPROBE_FAULT."""
import importlib.abc
import importlib.util
import os
import sys

_SPEC = os.environ.get("SUBPROBE_FAULT")


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "subprobe.training.step":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


def _patch(module):
    import signal
    import time

    name, at, target, *rest = _SPEC.split("@")
    at, delay = int(at), float(rest[0]) if rest else 0.0
    once = os.environ.get("SUBPROBE_FAULT_ONCE")
    original = module.collate
    calls = [0]

    def collate(*args, **kwargs):
        calls[0] += 1
        if delay:
            time.sleep(delay)
        if calls[0] == at:
            fire = True
            if once:
                try:
                    os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    fire = False
            if fire:
                os.kill(os.getpid() if target == "self" else os.getppid(), getattr(signal, name))
                time.sleep(0.2)  # SIGKILL needs no time; a handler runs on return to Python code
        return original(*args, **kwargs)

    module.collate = collate


if _SPEC:
    sys.meta_path.insert(0, _Hook())
