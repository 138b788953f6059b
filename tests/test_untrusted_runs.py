"""Untrusted run folders (issue 28, item 4): a run directory or store someone sent you never runs code and never
makes subprobe read or write outside it.

What is allowed, and why: loading a run (``predict``, ``export``, ``load_run``, ``compare``, ``report``) reads the
files of the run directory and the model that ``config.yaml`` names. ``model`` is a Hub id or a path, because it
is the model the run probed (the run is meaningless without it); loading it reads weights only through
safetensors or ``torch.load(weights_only=True)`` (transformers), never code (``trust_remote_code=False``: no
``auto_map`` module is imported, and no prompt offers to). The other paths of ``config.yaml`` (``out``,
``train``/``dev``/``test``, ``data_dir``, ``random_mask_like``, ``complement_of``) describe how the run was made
and are not opened by these commands; ``--resume`` trains again from them (it reads the data files, which is what
resuming means) and writes into the run directory given on the command line, never into ``out``. A store's
``index.json`` locates each run as ``STORE/runs/<name>`` whatever path it records. Tensors come only from
safetensors files or ``weights_only`` loads, YAML only through ``yaml.safe_load`` (``tests/test_atomic.py`` holds
the same statically, over the whole package).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import subprobe
from subprobe.cli import main
from subprobe.errors import SubprobeError
from subprobe.experiments.store import Store
from tests.conftest import probe_argv


@pytest.fixture(scope="module")
def finished(tiny_bert, tiny_ud, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sent") / "run"
    assert main(probe_argv(tiny_bert, tiny_ud, out, epochs=1, batch_size=8)) == 0
    return out


class Planted:
    """Unpickling this creates the directory ``marker``: the proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def received(finished: Path, where: Path) -> Path:
    return Path(shutil.copytree(finished, where / "received"))


def one_line(argv, capsys) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert "Traceback" not in err and err.count("\n") == 0 and err.startswith("subprobe: error: "), err
    return err


def readers(run: Path, tmp_path: Path) -> list[list]:
    text = tmp_path / "in.txt"
    text.write_text("the dog runs .\n")
    return [["predict", run, "--input", text, "--output", tmp_path / "p.txt"],
            ["export", run, "--model-dir", tmp_path / "x"]]


def test_a_pickle_in_checkpoint_pt_is_never_run(finished, tmp_path, capsys):
    run = received(finished, tmp_path)
    (run / "metrics.json").unlink()  # an unfinished run: --resume loads its checkpoint
    marker = tmp_path / "code-ran"
    torch.save({"format": 1, "progress": Planted(marker)}, run / "checkpoint.pt")  # torch's zip format
    err = one_line(["probe", "--resume", run], capsys)
    assert "checkpoint.pt: the checkpoint cannot be read" in err and not marker.exists()
    with open(run / "checkpoint.pt", "wb") as fh:  # a bare pickle
        pickle.dump(Planted(marker), fh, protocol=2)
    assert "checkpoint.pt: the checkpoint cannot be read" in one_line(["probe", "--resume", run], capsys)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["masks.safetensors", "head.safetensors"])
def test_a_pickle_in_place_of_a_safetensors_file_is_never_run(name, finished, tmp_path, capsys):
    run = received(finished, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"weights": Planted(marker)}, run / name)
    for argv in readers(run, tmp_path)[: 2 if name == "masks.safetensors" else 1]:
        assert f"{run / name}: cannot be read" in one_line(argv, capsys)
    assert not marker.exists()


def test_a_python_tag_in_config_yaml_is_never_run(finished, tmp_path, capsys):
    run = received(finished, tmp_path)
    marker = tmp_path / "code-ran"
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("task: upos", f"task: !!python/object/apply:os.mkdir ['{marker}']"))
    for argv in [*readers(run, tmp_path), ["probe", "--resume", run]]:
        assert "config.yaml:1: not valid YAML (could not determine a constructor" in one_line(argv, capsys)
    with pytest.raises(SubprobeError):
        subprobe.load_run(run)
    # the run, without its config
    assert main(["report", str(run.parent), "--report-dir", str(tmp_path / "report")]) == 0
    assert not marker.exists()


def custom_code_model(where: Path, marker: Path) -> Path:
    """A model folder whose config and tokenizer name Python modules of the folder (``auto_map``): loading it with
    remote code allowed would import them, and they create ``marker``."""
    where.mkdir()
    code = f"import os\nos.mkdir({str(marker)!r})\n"
    for module in ("configuration_planted", "modeling_planted", "tokenization_planted"):
        (where / f"{module}.py").write_text(code)
    auto = {"AutoConfig": "configuration_planted.PlantedConfig", "AutoModel": "modeling_planted.PlantedModel"}
    (where / "config.json").write_text(json.dumps({"model_type": "planted", "auto_map": auto}))
    (where / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_planted.PlantedTokenizer", None]}}))
    return where


def test_a_model_with_code_in_its_folder_is_refused_without_asking(finished, tmp_path, capsys, monkeypatch):
    """transformers asks on a terminal whether to run such code when ``trust_remote_code`` is not given; subprobe
    gives False, so nobody is ever asked (an answer 'y' here would run the planted module)."""
    asked = []
    monkeypatch.setattr("builtins.input", lambda *a: asked.append(a) or "y")
    run = received(finished, tmp_path)
    marker = tmp_path / "code-ran"
    model = custom_code_model(run / "model", marker)
    settings = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**settings, "model": str(model)}))
    for argv in readers(run, tmp_path):
        assert f"--model {model}: could not load it" in one_line(argv, capsys)
    assert asked == [] and not marker.exists()


def test_pickled_model_weights_are_loaded_weights_only(finished, tiny_bert, tmp_path, capsys):
    run = received(finished, tmp_path)
    marker = tmp_path / "code-ran"
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    (model / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": Planted(marker)}, model / "pytorch_model.bin")
    settings = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**settings, "model": str(model)}))
    assert f"--model {model}: could not load it" in one_line(readers(run, tmp_path)[0], capsys)
    assert not marker.exists()


def test_paths_in_config_yaml_are_not_followed_by_the_readers(finished, tmp_path, capsys):
    """out, data and source-run paths pointing elsewhere (absolute, ../): predict and export neither read nor write
    them; the model path is the one path they follow (see the module docstring)."""
    run = received(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    settings = yaml.safe_load((run / "config.yaml").read_text())
    planted = {"out": str(elsewhere / "out"), "train": "../../../../etc/shadow", "dev": "/etc/shadow",
               "data_dir": "/", "predict": True, "report_to": "tensorboard"}
    (run / "config.yaml").write_text(yaml.safe_dump({**settings, **planted}))
    for argv in readers(run, tmp_path):
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    loaded = subprobe.load_run(run)
    assert loaded.run_dir == run and [s.upos is not None for s in loaded.predict(["the dog"])] == [True]
    assert not elsewhere.exists()
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in finished.iterdir())  # nothing added


def test_resume_writes_into_the_run_directory_given_not_into_its_out(finished, tiny_ud, tmp_path, monkeypatch):
    from tests.test_resume import Interrupt

    run = received(finished, tmp_path)
    shutil.rmtree(run)
    argv = probe_argv(Path(yaml.safe_load((finished / "config.yaml").read_text())["model"]), tiny_ud, run, epochs=2,
                      batch_size=8, eval_every=2)
    interrupt = Interrupt(monkeypatch, 4)
    assert main(argv) == 130
    monkeypatch.setattr("subprobe.training.step.collate", interrupt.original)
    elsewhere = tmp_path / "elsewhere"
    settings = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**settings, "out": "../elsewhere/x"}))
    assert main(["probe", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "metrics.json").is_file()
    assert not elsewhere.exists() and not (run.parent.parent / "elsewhere").exists()


def test_a_store_index_cannot_point_outside_the_store(finished, tmp_path, capsys):
    store = Store(tmp_path / "store")
    store.runs.mkdir(parents=True)
    inside = Path(shutil.copytree(finished, store.runs / "inside"))
    outside = Path(shutil.copytree(finished, tmp_path / "outside" / "secret"))
    index = {"a": {"status": "done", "run_dir": "runs/inside", "config": {}},
             "b": {"status": "done", "run_dir": "../outside/secret", "config": {}},
             "c": {"status": "done", "run_dir": str(outside), "config": {}},
             "d": {"status": "done", "run_dir": "../../..", "config": {}}}
    store.index_path.write_text(json.dumps(index))
    for recorded in ("../outside/secret", str(outside), "../../..", "/"):
        assert store.resolve(recorded).parent == store.runs
    assert [Path(r["run_dir"]) for r in store.results()] == [inside]
    assert main(["report", str(store.root), "--report-dir", str(tmp_path / "report")]) == 0
    err = capsys.readouterr().err
    assert "3 point(s) marked done have no finished run directory under" in err
    page = (tmp_path / "report" / "index.html").read_text()
    assert "1 finished run(s)" in page and "secret" not in page


@pytest.mark.parametrize("module", ["__class__", "../../etc/passwd", "embeddings.LayerNorm", "pooler.nothing"])
def test_mask_entries_naming_other_modules_are_refused(module, finished, tmp_path, capsys):
    """Module names in masks.safetensors are looked up in the model, never on disk; a name that is not one of its
    weight matrices is one line (and nothing is exported)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    run = received(finished, tmp_path)
    with safe_open(str(run / "masks.safetensors"), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    entries = json.loads(meta["entries"])
    entries[0] = entries[0][:5] + [module, []]
    save_file(tensors, str(run / "masks.safetensors"), metadata={**meta, "entries": json.dumps(entries)})
    err = one_line(["export", run, "--model-dir", tmp_path / "x"], capsys)
    assert f"names module {module!r}" in err
    assert not (tmp_path / "x").exists()
