"""Packed training on the tiny model (subprobe.training.packed, subprobe.many): packed runs end as their runs alone
do -- to the bit for a pack of one, to float rounding for K = 3 -- a run that stops early or fails leaves the pack
and the rest go on, an interrupted pack resumes run by run, and the grouping rules."""

from __future__ import annotations

import json

import pytest
import torch

import subprobe
from subprobe import api, many
from subprobe.config import DEFAULT_PACK, ProbeConfig
from subprobe.errors import ConfigError, SubprobeError
from subprobe.experiments.store import Store
from subprobe.experiments.sweep import run_points
from subprobe.resolve import resolve
from subprobe.runs import RunDir
from subprobe.training import packed
from subprobe.training.packed import group_packs, pack_key

QUIET = dict(echo=lambda *a, **k: None)


@pytest.fixture()
def make(tiny_bert, tiny_ud, tmp_path):
    """A config of a tiny UPOS run (24 training sentences, batch 4: 6 steps an epoch, 2 epochs) into tmp_path/NAME."""

    def config(name: str, **kw) -> ProbeConfig:
        values = dict(task="upos", model=str(tiny_bert), train=str(tiny_ud["train"]), dev=str(tiny_ud["dev"]),
                      test=str(tiny_ud["test"]), epochs=2, batch_size=4, eval_every=3, precision="fp32",
                      progress=False, out=str(tmp_path / name))
        values.update(kw)
        return ProbeConfig(**values)

    return config


def logits(result) -> dict[str, torch.Tensor]:
    return {e.name: e.log_alpha for e in result.subnetwork.entries}


def largest_difference(a, b) -> float:
    la, lb = logits(a), logits(b)
    assert la.keys() == lb.keys()
    return max(float((la[k] - lb[k]).abs().max()) for k in la)


def history(result) -> list[tuple]:
    return [(h["step"], h["loss"], h["penalty"], h.get("density")) for h in result.history]


def assert_like_alone(alone, pack, atol=1e-4) -> None:
    """The packed run ended as its run alone did, to float rounding: masks, scores, densities, losses."""
    if alone.subnetwork is not None:
        assert largest_difference(alone, pack) < atol
        assert alone.metrics["density"] == pack.metrics["density"]
    for split in ("dev", "test"):
        assert alone.metrics[split] == pytest.approx(pack.metrics[split], abs=1e-9)
    assert alone.metrics["train"]["steps"] == pack.metrics["train"]["steps"]
    for (s0, l0, p0, d0), (s1, l1, p1, d1) in zip(history(alone), history(pack), strict=True):
        assert s0 == s1 and l0 == pytest.approx(l1, abs=1e-4) and p0 == pytest.approx(p1, abs=1e-5) and d0 == d1


def alone_and_packed(make, variants: list[dict], prefix: str = "", **common):
    alone = [api.probe(make(f"{prefix}alone{i}", **common, **v), **QUIET) for i, v in enumerate(variants)]
    together = many.probe_many([make(f"{prefix}pack{i}", **common, **v) for i, v in enumerate(variants)], pack=8,
                               **QUIET)
    return alone, together


@pytest.mark.parametrize("variants", [
    [{"lambda_max": 1.0}, {"lambda_max": 5.0}, {"lambda_max": 25.0}],
    [{"granularity": "neuron"}, {"granularity": "head"}, {"granularity": "weight"}],
], ids=["three-lambdas", "three-granularities"])
def test_three_runs_of_one_seed_end_as_their_runs_alone(make, variants):
    alone, together = alone_and_packed(make, variants)
    for a, p in zip(alone, together):
        assert_like_alone(a, p)
    assert len({p.metrics["density"] for p in together}) > 1  # three different runs, not one run three times


def test_a_pack_of_one_is_the_run_alone_to_the_bit(make):
    alone = api.probe(make("alone", lambda_max=5.0), **QUIET)
    ended = []
    planned = many._with_device(api.plan(make("one", lambda_max=5.0)), make("one"), QUIET["echo"])
    many._pack([(0, planned)], False, QUIET["echo"], lambda i, r: ended.append(r))
    (one,) = ended
    assert all(torch.equal(a, b) for a, b in zip(logits(alone).values(), logits(one).values()))
    assert history(alone) == history(one) and alone.metrics["dev"] == one.metrics["dev"]
    heads = [RunDir(r.run_dir).read_head() for r in (alone, one)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_runs_of_different_seeds_draw_their_own_data_order_and_noise(make):
    alone, together = alone_and_packed(make, [{"seed": s} for s in (0, 1, 2)])
    for a, p in zip(alone, together):
        assert_like_alone(a, p)
    assert len({history(p)[0][1] for p in together}) == 3  # three data orders: three different first losses


def test_mlp_ranks_on_cached_features_pack_into_one_step(make):
    configs = [resolve(make(f"r{r}", probe="mlp", rank=r)) for r in ("1", "2", "5", "d")]
    assert group_packs([pack_key(c) for c in configs]) == [[0, 1, 2, 3]]  # every rank: no limit for cached features
    alone, together = alone_and_packed(make, [{"rank": r} for r in ("1", "2", "d")], probe="mlp")
    for a, p in zip(alone, together):
        assert_like_alone(a, p)
    alone, together = alone_and_packed(make, [{"head_lr": 0.01}, {"head_lr": 0.001}], "linear-", probe="linear")
    for a, p in zip(alone, together):
        assert_like_alone(a, p)
    assert together[0].metrics["dev"] != together[1].metrics["dev"]


def test_one_fused_adam_step_for_the_whole_pack_equals_each_runs_own(make):
    """PackOptimizer: groups of equal settings merged, each run's state its own (and checkpointable)."""
    torch.manual_seed(0)
    params = [[torch.nn.Parameter(torch.randn(5)) for _ in range(2)] for _ in range(3)]
    from subprobe.training.optim import make_adam

    def adams(ps):
        return [make_adam([{"params": [p[0]], "lr": 0.1, "name": "masks"},
                           {"params": [p[1]], "lr": 0.01 * (k + 1), "name": "head"}]) for k, p in enumerate(ps)]

    copies = [[torch.nn.Parameter(p.detach().clone()) for p in ps] for ps in params]
    own, shared = adams(params), adams(copies)
    step = packed.PackOptimizer()
    for _ in range(3):
        for ps, cs in zip(params, copies):
            for p, c in zip(ps, cs):
                g = torch.randn(5)
                p.grad, c.grad = g.clone(), g.clone()
        for opt in own:
            opt.step()
        step.step(shared)
    assert len(step.adam.param_groups) == 4  # the masks of all runs in one group, each head learning rate apart
    for ps, cs in zip(params, copies):
        assert all(torch.allclose(p, c, atol=1e-7) for p, c in zip(ps, cs))
    for a, b in zip(own, shared):  # each run's optimiser holds its own state, as if it had stepped alone
        sa, sb = a.state_dict(), b.state_dict()
        assert sa["param_groups"] == sb["param_groups"]
        for i in sa["state"]:
            assert all(torch.allclose(sa["state"][i][k], sb["state"][i][k]) for k in ("exp_avg", "exp_avg_sq"))


def test_a_run_that_stops_early_leaves_the_pack_and_the_rest_go_on(make):
    """Run 0 converges at once after the ramp (patience 1, tolerance 1): it stops, is scored and written while the
    others still train; each equals its run alone."""
    stops = dict(lambda_start=0.0, lambda_end=0.1, patience=1, tolerance=1.0)
    variants = [stops, {"lambda_max": 5.0}, {"lambda_max": 25.0}]
    alone = [api.probe(make(f"alone{i}", **v), **QUIET) for i, v in enumerate(variants)]
    order = []

    def ended(i, result):  # what the others had logged when run i was written
        logged = [[json.loads(line)["step"] for line in RunDir(make(f"pack{j}").out).log_path.read_text().splitlines()]
                  for j in range(3)]
        order.append((i, RunDir(result.run_dir).finished, [max(steps) for steps in logged]))

    results = many.run_many([make(f"pack{i}", **v) for i, v in enumerate(variants)], on_done=ended, pack=8,
                            **QUIET)
    stopped = results[0].metrics["train"]["steps"]
    assert results[0].metrics["train"]["stopped_early"] and stopped < 12
    assert [r.metrics["train"]["steps"] for r in results[1:]] == [12, 12]
    (first, written, steps), *_ = order
    assert first == 0 and written and steps[1] < 12 and steps[2] < 12  # written while the others still trained
    for a, p in zip(alone, results):
        assert_like_alone(a, p)


def test_a_run_that_fails_leaves_the_pack_and_probe_many_raises_its_error_after_the_others(make, monkeypatch):
    real = packed.TrainLoop.after

    def after(loop, taken):
        if loop.config.lambda_max == 5.0 and loop.progress.step == 4:
            raise SubprobeError("training diverged at step 4: planted")
        real(loop, taken)

    monkeypatch.setattr(packed.TrainLoop, "after", after)
    configs = [make(f"pack{lam}", lambda_max=lam) for lam in (1.0, 5.0, 25.0)]
    results = many.run_many(configs, pack=3, **QUIET)
    assert isinstance(results[1], SubprobeError) and "planted" in str(results[1])
    assert all(RunDir(r.run_dir).finished and r.metrics["train"]["steps"] == 12 for r in (results[0], results[2]))
    assert not RunDir(configs[1].out).finished and RunDir(configs[1].out).checkpoint_path.is_file()
    with pytest.raises(SubprobeError, match="planted"):
        many.probe_many([make(f"again{lam}", lambda_max=lam) for lam in (1.0, 5.0)], pack=2, **QUIET)
    assert RunDir(make("again1.0").out).finished  # the other run finished before the error was raised


def test_probe_many_is_public_and_refuses_two_runs_into_one_directory(make):
    assert subprobe.probe_many is many.probe_many
    results = many.run_many([make("same"), make("same", lambda_max=5.0)], pack=2, **QUIET)
    assert isinstance(results[1], ConfigError) and "give every run its own --out" in str(results[1])
    assert RunDir(make("same").out).finished
    with pytest.raises(ConfigError, match="--pack must be at least 1"):
        many.probe_many([make("x")], pack=0)


def test_pack_of_k_one_runs_each_alone_exactly_as_probe(make, monkeypatch):
    calls = []
    real = api.probe
    monkeypatch.setattr(api, "probe", lambda config, **kw: calls.append(config.out) or real(config, **kw))
    many.probe_many([make("a"), make("b", lambda_max=5.0)], pack=1, **QUIET)
    assert [c.rsplit("/", 1)[1] for c in calls] == ["a", "b"]


# -- resume ----------------------------------------------------------------------------------------------------------


def grid_base(tiny_bert, tiny_ud) -> dict:
    return {"model": str(tiny_bert), "train": str(tiny_ud["train"]), "dev": str(tiny_ud["dev"]), "epochs": 2,
            "batch_size": 4, "eval_every": 3, "precision": "fp32"}


POINTS = [{"probe": "subnetwork", "lambda_max": lam} for lam in (1.0, 5.0, 25.0)]


def masks_by_lambda(store: Store) -> dict[float, dict]:
    out = {}
    for r in store.results():
        run = RunDir(store.resolve(r["run_dir"]))
        out[r["config"]["lambda_max"]] = ({e.name: e.log_alpha for e in run.read_masks().entries},
                                          {k: r[k] for k in ("dev", "test", "density")}, r["train"]["steps"])
    return out


def test_a_killed_packed_sweep_resumes_every_run_to_the_metrics_of_an_undisturbed_one(tiny_bert, tiny_ud, tmp_path,
                                                                                       monkeypatch):
    base = grid_base(tiny_bert, tiny_ud)
    undisturbed = Store(tmp_path / "undisturbed")
    assert run_points(POINTS, undisturbed, base, echo=QUIET["echo"], pack=3) == {"done": 3, "skipped": 0, "failed": 0}
    calls = [0]
    real = packed.collate

    def collate(*args, **kwargs):  # Ctrl-C during step 8 (checkpoints at steps 3 and 6)
        calls[0] += 1
        if calls[0] == 8:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(packed, "collate", collate)
    store = Store(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        run_points(POINTS, store, base, echo=QUIET["echo"], pack=3)
    assert all(e["status"] == "running" for e in store.load_index().values())
    monkeypatch.setattr(packed, "collate", real)
    assert run_points(POINTS, store, base, echo=QUIET["echo"], pack=3) == {"done": 3, "skipped": 0, "failed": 0}
    expected, got = masks_by_lambda(undisturbed), masks_by_lambda(store)
    for lam in expected:
        (m0, s0, n0), (m1, s1, n1) = expected[lam], got[lam]
        assert s0 == s1 and n0 == n1 == 12
        assert all(torch.equal(m0[k], m1[k]) for k in m0)  # the same steps in the same packs: to the bit
    # a packed run's checkpoint also continues alone: kill the pack again, resume one run by itself
    monkeypatch.setattr(packed, "collate", collate)
    calls[0] = 0
    other = Store(tmp_path / "other")
    with pytest.raises(KeyboardInterrupt):
        run_points(POINTS, other, base, echo=QUIET["echo"], pack=3)
    entry = next(e for e in other.load_index().values() if e["config"]["lambda_max"] == 5.0)
    alone = api.resume(other.resolve(entry["run_dir"]), **QUIET)
    reference = next(r for r in undisturbed.results() if r["config"]["lambda_max"] == 5.0)
    ref_masks = {e.name: e.log_alpha for e in RunDir(undisturbed.resolve(reference["run_dir"])).read_masks().entries}
    assert max(float((ref_masks[k] - v).abs().max()) for k, v in logits(alone).items()) < 1e-4
    assert alone.metrics["density"] == reference["density"]


# -- which runs pack -------------------------------------------------------------------------------------------------


def test_runs_pack_when_only_their_own_settings_differ(make):
    key = pack_key(resolve(make("a")))
    assert key is not None and key[0] == "encoder"
    same = [dict(lambda_max=5.0), dict(granularity="head"), dict(seed=3), dict(layout="contiguous"),
            dict(target_density=0.5), dict(mask_lr=0.1, head_lr=0.01), dict(eval_every=5, patience=2), dict(out="x"),
            dict(warmup=0.2, lambda_start=0.1), dict(batch_order="random")]
    for change in same:
        assert pack_key(resolve(make("b", **change))) == key, change
    other = [dict(task="xpos"), dict(batch_size=8), dict(epochs=3), dict(precision="bf16"), dict(device="cpu"),
             dict(setting="reset-all"), dict(reset_seed=1, setting="reset-all"), dict(max_train_samples=10),
             dict(word_pooling="first"), dict(target_modules="query"), dict(control=True), dict(train="other.conllu")]
    for change in other:
        assert pack_key(resolve(make("b", **change))) != key, change
    alone = [dict(probe="finetune"), dict(probe="mlp", cache_features=False), dict(gradient_checkpointing=True),
             dict(sub_batches=2), dict(random_mask_like="somewhere")]
    for change in alone:
        assert pack_key(resolve(make("b", **change))) is None, change
    assert pack_key(resolve(make("b", probe="mlp")))[0] == "cached"


def test_packs_are_balanced_kept_in_order_and_capped():
    a, b = ("encoder", 1), ("encoder", 2)
    assert group_packs([a] * 9, limit=4) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # 3 packs of 3, not 4 + 4 + 1
    assert [len(p) for p in group_packs([a] * 5, limit=4)] == [3, 2]
    assert DEFAULT_PACK == 1 and group_packs([a] * 3) == [[0], [1], [2]]  # subnetworks alone unless --pack K
    assert group_packs([a, None, b, a, b], limit=4) == [[0, 3], [1], [2, 4]]
    assert group_packs([a] * 5, limit=1) == [[0], [1], [2], [3], [4]]
    assert group_packs([a] * 5, limit=8) == [[0, 1, 2, 3, 4]]
    assert group_packs([("cached", 1)] * 9) == [list(range(9))]
    assert group_packs([("cached", 1)] * 9, limit=4) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(ValueError):
        group_packs([a], limit=0)


def test_share_frozen_refuses_runs_on_different_weights(tiny_bert):
    from subprobe.models.loading import load_encoder

    one, _ = load_encoder(str(tiny_bert))
    two, _ = load_encoder(str(tiny_bert))
    freed = packed.share_frozen(two, one)
    assert freed > 0 and all(p.data_ptr() == q.data_ptr() for p, q in zip(one.parameters(), two.parameters()))
    three, _ = load_encoder(str(tiny_bert))
    with torch.no_grad():
        next(three.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="different frozen weights"):
        packed.share_frozen(three, one)


def test_probe_many_takes_the_precision_the_device_gives(make):
    """A profile's bf16 becomes fp32 where bf16 is emulated, before runs are grouped (the note said once)."""
    said = []
    planned = many._with_device(api.plan(make("p", precision=None)), make("p", precision=None),
                                lambda *a, **k: said.append(a[0]))
    from subprobe.device import bf16_native

    native = bf16_native(torch.device("cpu"))
    assert planned.cfg.precision == ("bf16" if native else "fp32")
    assert native or any("no native bf16" in line for line in said)
