"""`subprobe export`: the hard mask baked into a plain Hugging Face model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import subprobe
from subprobe.cli import main
from subprobe.masking.subnetwork import set_mask_mode
from tests.conftest import probe_argv


@pytest.fixture(scope="module")
def run(tiny_bert, tiny_ud, tmp_path_factory) -> Path:
    """A tiny upos subnetwork run whose hard mask drops a good share of the weights (lambda 40)."""
    out = tmp_path_factory.mktemp("export") / "run"
    argv = probe_argv(tiny_bert, tiny_ud, out, "--lambda-max", "40", "--granularity", "paper-7", epochs=3, batch_size=4)
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "model"
    assert main(["export", str(run), "--model-dir", str(out)]) == 0
    return out


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_exported_hidden_states_equal_the_hard_masked_encoder(run, exported):
    from transformers import AutoModel

    loaded = subprobe.load_run(run)
    encoder = loaded.model.features.encoder
    set_mask_mode(encoder, "hard")
    plain = AutoModel.from_pretrained(str(exported)).eval()
    ids = torch.tensor([[2, 5, 7, 9, 11, 3, 0, 0], [2, 12, 13, 14, 15, 16, 17, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        want = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        got = plain(input_ids=ids, attention_mask=mask).last_hidden_state
        set_mask_mode(encoder, "none")
        unmasked = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(got[real], want[real], atol=1e-5, rtol=0)
    assert (unmasked[real] - want[real]).abs().max() > 1e-2  # the mask matters: the check can fail


def test_nonzero_fraction_of_masked_matrices_is_the_run_density(run, exported):
    weights = load_file(str(exported / "model.safetensors"))
    sub = subprobe.Subnetwork.load(run / "masks.safetensors")
    kept = total = 0
    for e in sub.entries:
        w = weights[e.name + ".weight"]
        kept += int(torch.count_nonzero(w))
        total += w.numel()
    density = _metrics(run)["density"]
    assert 0.05 < density < 0.95  # some weights dropped, some kept
    assert kept / total == density
    original = load_file(str(Path(subprobe.load_run(run).config.model) / "model.safetensors"))
    name = sub.entries[0].name + ".weight"
    keep = weights[name] != 0
    assert torch.equal(weights[name][keep], original[name][keep])  # kept weights unchanged
    bias = sub.entries[0].name + ".bias"
    assert torch.equal(weights[bias], original[bias])


@pytest.mark.slow
def test_plain_transformers_load_it_without_subprobe(exported, tmp_path):
    code = (
        "import sys; sys.modules['subprobe'] = None\n"  # any import of subprobe now fails
        "try:\n    import subprobe\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('subprobe importable')\n"
        "import torch\nfrom transformers import AutoModel, AutoTokenizer\n"
        f"model = AutoModel.from_pretrained({str(exported)!r})\n"
        f"tok = AutoTokenizer.from_pretrained({str(exported)!r})\n"
        "with torch.no_grad():\n"
        "    out = model(**tok(['the dog runs'], return_tensors='pt')).last_hidden_state\n"
        "print(tuple(out.shape))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "(1, 5, 32)"


def test_model_card_has_the_metadata(run, exported):
    text = (exported / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    m = _metrics(run)
    info = meta["subprobe"]
    assert meta["library_name"] == "transformers" and "base_model" not in meta  # a local path is no Hub id
    assert info["task"] == "upos" and info["granularity"] == "paper-7" and info["setting"] == "pretrained"
    assert info["density"] == m["density"] and info["dev"] == m["dev"] and info["test"] == m["test"]
    assert info["version"] == subprobe.__version__
    assert info["command"].startswith("subprobe probe --model ") and "--lambda-max 40.0" in info["command"]
    assert info["export_command"].startswith("subprobe export ")
    assert f"| dev | {m['dev']['accuracy']:.4f} |" in text
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (exported / name).is_file(), name


def test_export_refusals(run, exported, tiny_bert, tiny_ud, tmp_path, capsys):
    assert main(["export", str(run), "--model-dir", str(exported)]) == 2
    assert "directory is not empty; pass --overwrite" in capsys.readouterr().err
    mlp = tmp_path / "mlp"
    assert main(probe_argv(tiny_bert, tiny_ud, mlp, "--probe", "linear", epochs=1)) == 0
    capsys.readouterr()
    assert main(["export", str(mlp), "--model-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"subprobe: error: {mlp}: a --probe linear run has no mask to bake into the model; export a " + (
        "subnetwork run"
    )


def test_bake_zeroes_exactly_the_dropped_blocks(tiny_bert):
    """Hand-built contiguous 2x2-block mask on one 32x32 matrix: the zeros are exactly the dropped tiles."""
    from transformers import AutoModel

    from subprobe.masking.subnetwork import MaskEntry, Subnetwork

    model = AutoModel.from_pretrained(str(tiny_bert))
    name = "encoder.layer.0.attention.self.query"
    logits = torch.full((16, 16), 5.0)
    logits[3, 7] = logits[0, 0] = -5.0  # dropped tiles
    sub = Subnetwork((MaskEntry(name, "q", 0, (32, 32), (2, 2), logits),), "contiguous", "2,2")
    before = model.get_submodule(name).weight.detach().clone()
    baked = sub.bake(model).get_submodule(name).weight
    zero = torch.zeros(32, 32, dtype=torch.bool)
    zero[6:8, 14:16] = zero[0:2, 0:2] = True
    assert torch.equal(baked == 0, zero)
    assert torch.equal(baked[~zero], before[~zero])
    sub.apply(model)
    with pytest.raises(subprobe.errors.SubprobeError, match="has a mask installed"):
        sub.bake(model)
