"""A trained subnetwork, end to end: the saved masks reproduce the trained encoder in hard-mask mode, masking
really changes the encoder, ``Subnetwork.apply`` equals the materialised masked weights, and the accuracies in
metrics.json equal a recount from the predictions."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from subprobe.cli import main
from subprobe.masking.subnetwork import MaskEntry, Subnetwork, set_mask_mode
from subprobe.models.loading import load_encoder
from tests.conftest import probe_argv

SENTENCES = ["the dog runs on the mat", "mary saw a big house in new york !", "john sat"]


@pytest.fixture(scope="module")
def trained(tiny_bert, tiny_ud, tmp_path_factory):
    """One real subnetwork run (large mask lr and lambda so that units drop), keeping the trained probe and
    every final evaluation's predictions."""
    import subprobe.probes.registry as registry
    import subprobe.training.evaluate as evaluation

    built, evaluated = [], []
    real_build, real_evaluate = registry.build_probe, evaluation.evaluate

    def build(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    def evaluate(model, task, dataset, vocabs, **kwargs):
        scores, predictions = real_evaluate(model, task, dataset, vocabs, **kwargs)
        evaluated.append(SimpleNamespace(split=dataset.name, mode=kwargs.get("mask_mode"), predictions=predictions))
        return scores, predictions

    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "build_probe", build)
        mp.setattr(evaluation, "evaluate", evaluate)
        argv = probe_argv(tiny_bert, tiny_ud, out, "--mask-lr", "2.0", "--lambda-max", "5", "--head-lr", "0.01")
        assert main(argv) == 0
    assert len(built) == 1
    final = {(e.split, e.mode): e.predictions for e in evaluated if e.mode in ("hard", "soft")}
    metrics = json.loads((out / "metrics.json").read_text())
    return SimpleNamespace(out=out, built=built[0], predictions=final, metrics=metrics)


def hidden_states(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).last_hidden_state * batch["attention_mask"].unsqueeze(-1)


def test_saved_masks_reproduce_the_trained_encoder_in_hard_mode(trained, tiny_bert):
    density = trained.metrics["density"]
    assert 0.0 < density < 1.0  # units were dropped: the checks below compare really masked encoders
    encoder = trained.built.model.features.encoder
    encoder.eval()
    loaded = Subnetwork.load(trained.out / "masks.safetensors")
    assert loaded.density() == density
    # the saved logits are the trained ones, matrix by matrix
    saved = {e.name: e.log_alpha for e in loaded.entries}
    assert [m.name for m in trained.built.masked] == list(saved)
    assert all(torch.equal(saved[m.name], m.log_alpha.detach()) for m in trained.built.masked)

    fresh, tokenizer = load_encoder(str(tiny_bert))
    unmasked = hidden_states(fresh, tokenizer)
    assert len(loaded.apply(fresh, mode="hard")) == 12
    applied_hard = hidden_states(fresh, tokenizer)
    set_mask_mode(encoder, "hard")
    trained_hard = hidden_states(encoder, tokenizer)
    assert torch.allclose(applied_hard, trained_hard, atol=1e-5)
    assert (applied_hard - unmasked).abs().max() > 1e-2  # masking changes the output (tiny random weights: by 0.05)

    soft_model, _ = load_encoder(str(tiny_bert))
    loaded.apply(soft_model, mode="soft")
    set_mask_mode(encoder, "soft")
    trained_soft = hidden_states(encoder, tokenizer)
    assert torch.allclose(hidden_states(soft_model, tokenizer), trained_soft, atol=1e-5)
    assert (trained_soft - trained_hard).abs().max() > 1e-3  # the soft mask is not the binarised one
    set_mask_mode(encoder, None)


def read_upos(path) -> list[list[str]]:
    """UPOS column of a CoNLL-U file, per sentence (independent of subprobe's reader)."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
        elif not line.startswith("#"):
            cols = line.split("\t")
            if cols[0].isdigit():
                current.append(cols[3])
    if current:
        sentences.append(current)
    return sentences


def test_accuracies_in_metrics_json_equal_a_recount_of_the_predictions(trained, tiny_ud):
    labels = json.loads((trained.out / "vocab.json").read_text())["upos"]
    macro_differs = False
    for split, mode, key in (("dev", "hard", "dev"), ("dev", "soft", "dev_soft"),
                             ("test", "hard", "test"), ("test", "soft", "test_soft")):
        gold = read_upos(tiny_ud[split])
        predictions = trained.predictions[(split, mode)]
        assert sorted(predictions) == list(range(len(gold)))
        per_sentence = []
        for i, tags in enumerate(gold):
            predicted = [labels[j] for j in predictions[i]["upos"]]
            assert len(predicted) == len(tags)
            per_sentence.append((sum(p == g for p, g in zip(predicted, tags)), len(tags)))
        micro = sum(c for c, _ in per_sentence) / sum(n for _, n in per_sentence)
        macro = sum(c / n for c, n in per_sentence) / len(per_sentence)
        assert trained.metrics[key]["accuracy"] == pytest.approx(micro, abs=1e-12), key
        assert trained.metrics[key]["accuracy_macro"] == pytest.approx(macro, abs=1e-12), key
        macro_differs |= not math.isclose(micro, macro)
    assert macro_differs  # the data tell micro from macro averaging apart
    # the head learnt something: more than the majority tag of dev (NOUN/PROPN/VERB... none is above 4/18)
    assert trained.metrics["dev"]["accuracy"] > 4 / 18


def materialised(weight: torch.Tensor, mask: torch.Tensor, layout: str) -> torch.Tensor:
    """``weight`` times its mask, expanded by the layout's definition (README), written out directly."""
    out, inp = weight.shape
    rows_m, cols_m = mask.shape
    r = torch.arange(out)
    c = torch.arange(inp)
    if layout == "strided":
        ri, ci = r % rows_m, c % cols_m
    else:
        ri, ci = r // (out // rows_m), c // (inp // cols_m)
    return weight * mask[ri][:, ci]


@pytest.mark.parametrize("layout", ["strided", "contiguous"])
def test_apply_equals_the_materialised_masked_weights(tiny_bert, layout):
    fresh, tokenizer = load_encoder(str(tiny_bert))
    names = [n for n, m in fresh.named_modules() if isinstance(m, torch.nn.Linear) and ".layer." in n]
    gen = torch.Generator().manual_seed(3)
    entries = []
    for name in names:
        shape = tuple(fresh.get_submodule(name).weight.shape)
        block = (8, 4)
        log_alpha = torch.randn((shape[0] // block[0], shape[1] // block[1]), generator=gen) * 2
        entries.append(MaskEntry(name, "x", int(name.split(".")[2]), shape, block, log_alpha))
    assert len(entries) == 12
    sub = Subnetwork(tuple(entries), layout, "8,4")
    unmasked = hidden_states(fresh, tokenizer)
    for mode in ("hard", "soft"):
        model, _ = load_encoder(str(tiny_bert))
        reference, _ = load_encoder(str(tiny_bert))
        sub.apply(model, mode=mode)
        with torch.no_grad():
            for e in entries:
                deterministic = (torch.sigmoid(e.log_alpha) * 1.2 - 0.1).clamp(0, 1)
                mask = (deterministic >= 0.5).float() if mode == "hard" else deterministic
                linear = reference.get_submodule(e.name)
                linear.weight.copy_(materialised(linear.weight, mask, layout))
        expected = hidden_states(reference, tokenizer)
        assert torch.allclose(hidden_states(model, tokenizer), expected, atol=1e-5), mode
        assert (expected - unmasked).abs().max() > 1e-2


def test_log_has_one_line_per_dev_check_with_the_lambda_schedule(trained):
    """README: log.jsonl has one line per dev check: step, lambda, loss, penalty, density, words/s, dev metrics."""
    records = [json.loads(line) for line in (trained.out / "log.jsonl").read_text().splitlines()]
    # 24 sentences / batch 4 = 6 steps per epoch, 2 epochs, a dev check every 3 steps
    assert [r["step"] for r in records] == [3, 6, 9, 12]
    for r in records:
        assert {"step", "lambda", "loss", "penalty", "density", "words_per_s", "dev"} <= set(r)
        assert r["loss"] > 0 and 0 < r["penalty"] <= 1 and r["words_per_s"] > 0
    # lambda of each check's last step (0-based s = 2, 5, 8, 11 of 12): 0 before 25%, linear to 5 at 75%
    expected = [0.0, 5 * (5 / 12 - 0.25) / 0.5, 5 * (8 / 12 - 0.25) / 0.5, 5.0]
    assert [r["lambda"] for r in records] == pytest.approx(expected, abs=1e-12)
    # the last check saw the final masks and head: its numbers are those of metrics.json
    assert records[-1]["density"] == trained.metrics["density"]
    assert records[-1]["dev"] == trained.metrics["dev"]


def test_env_json_records_versions_seed_and_data_hashes(trained, tiny_ud):
    import hashlib

    env = json.loads((trained.out / "env.json").read_text())
    assert env["seed"] == 0 and env["torch_threads"] == torch.get_num_threads()
    assert env["packages"]["torch"] == torch.__version__
    for split in ("train", "dev", "test"):
        assert env["data"][split] == {"path": str(tiny_ud[split]),
                                      "sha256": hashlib.sha256(tiny_ud[split].read_bytes()).hexdigest()}
