"""Report test helpers: a synthetic results store (fake finished runs with metrics.json, config.yaml and masks)
and a parser of the report page."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from pathlib import Path

import torch

from subprobe.config import ProbeConfig
from subprobe.experiments.store import Store
from subprobe.masking.subnetwork import MaskEntry, Subnetwork
from subprobe.result import MaskFacts, build_metrics
from subprobe.runs import RunDir

#: Module names and (out, in) shapes of the tiny BERT of tests/conftest.py (hidden 32, FFN 64, 2 layers, 4 heads).
TINY_MATRICES = (
    ("attention.self.query", "q", (32, 32)),
    ("attention.self.key", "k", (32, 32)),
    ("attention.self.value", "v", (32, 32)),
    ("attention.output.dense", "o", (32, 32)),
    ("intermediate.dense", "ffn_in", (64, 32)),
    ("output.dense", "ffn_out", (32, 64)),
)
PRIMARY = {"upos": "accuracy", "dep": "las", "ner": "f1"}


def tiny_subnetwork(keep_by_layer: list[float], block: tuple[int, int] = (32, 1), seed: int = 0,
                    model: str = "") -> Subnetwork:
    """A subnetwork of the tiny BERT keeping about ``keep_by_layer[l]`` of each layer's mask units."""
    gen = torch.Generator().manual_seed(seed)
    entries = []
    for layer, keep in enumerate(keep_by_layer):
        for suffix, role, shape in TINY_MATRICES:
            mask_shape = (shape[0] // block[0], shape[1] // block[1])
            kept = torch.rand(mask_shape, generator=gen) < keep
            log_alpha = torch.where(kept, torch.tensor(3.0), torch.tensor(-3.0))
            entries.append(MaskEntry(f"encoder.layer.{layer}.{suffix}", role, layer, shape, block, log_alpha))
    return Subnetwork(tuple(entries), "strided", "neuron", model)


def add_run(store: Store, values: dict, metrics: dict, subnetwork: Subnetwork | None = None) -> Path:
    """Write one finished run into ``store`` as the sweep runner would (index entry, run directory)."""
    config = ProbeConfig(**values)
    key, run_dir = store.run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(run_dir)
    resolved = dataclasses.replace(config.resolved(), out=str(run_dir))
    run.write_config(resolved)
    # metrics.json through the API's own builder: a renamed key breaks the report tests too
    unknown = set(metrics) - {"dev", "test", "mask_params", "density", "bits", "probe_params"}
    assert not unknown, f"add_run: no metrics.json piece for {sorted(unknown)}"
    masks, bits = None, metrics.get("bits")
    if subnetwork is not None:
        run.write_masks(subnetwork)
        masks = dataclasses.replace(MaskFacts.of(subnetwork), mask_params=metrics.get("mask_params",
                                                                                      subnetwork.num_mask_params))
        bits = bits or {"lower": masks.mask_params, "upper": masks.mask_params}
    elif "mask_params" in metrics or "density" in metrics:
        masks = MaskFacts(mask_params=metrics.get("mask_params"), density=metrics.get("density"))
    full = build_metrics(
        task=config.task, probe=config.probe, setting=config.setting, model=config.model,
        primary_metric=PRIMARY[config.task], scores={s: metrics[s] for s in ("dev", "test") if s in metrics},
        task_facts={"control": True, "control_seed": config.control_seed} if config.control else None,
        masks=masks, bits=bits, probe_params=metrics.get("probe_params"),
    )
    run.write_metrics(full)
    store.record(key, {"status": "done", "run_dir": str(run_dir), "config": values})
    return run_dir


def _scores(task: str, value: float) -> dict:
    return {PRIMARY[task]: value}


def make_store(root: Path, model: str, tasks: tuple[str, ...] = ("upos", "dep")) -> Store:
    """Figure 1 and Figure 2 style runs for ``tasks`` on ``model`` (the tiny BERT's path)."""
    store = Store(root)
    for t, task in enumerate(tasks):
        base = {"task": task, "model": model}
        # Figure 1: subnetworks at four granularities (bits = mask parameters) and MLP-1 at three ranks
        for granularity, bits, acc in (("matrix", 24, 0.60), ("8,8", 264, 0.75), ("neuron", 384, 0.80),
                                       ("weight", 12288, 0.86)):
            metrics = {"dev": _scores(task, acc - 0.05 * t), "test": _scores(task, acc - 0.06 * t),
                       "mask_params": bits, "bits": {"lower": bits, "upper": bits}, "density": 0.5}
            if granularity == "neuron":
                continue  # the neuron point comes from the lambda_max = 1 run below
            add_run(store, {**base, "probe": "subnetwork", "granularity": granularity}, metrics)
        for rank, params, acc in (("1", 130, 0.50), ("5", 450, 0.70), ("d", 2208, 0.82)):
            metrics = {"dev": _scores(task, acc - 0.05 * t), "test": _scores(task, acc - 0.06 * t),
                       "probe_params": params, "bits": {"lower": params, "upper": 32 * params}}
            add_run(store, {**base, "probe": "mlp", "rank": rank}, metrics)
        # Figure 2: neuron subnetworks by lambda_max on two settings, and fine-tuning on the pretrained model
        for setting in ("pretrained", "reset-encoder"):
            for i, lam in enumerate((1.0, 5.0, 25.0, 125.0)):
                acc = (0.80 - 0.04 * i if setting == "pretrained" else 0.55 - 0.02 * i) - 0.05 * t
                keep = [0.9 - 0.2 * i, 0.3] if task == "upos" else [0.3, 0.9 - 0.2 * i]
                if setting == "reset-encoder":
                    keep = [0.5 - 0.1 * i, 0.5 - 0.1 * i]
                sub = tiny_subnetwork(keep, seed=10 * t + i, model=model)
                metrics = {"dev": _scores(task, acc), "test": _scores(task, acc - 0.01)}
                add_run(store, {**base, "probe": "subnetwork", "granularity": "neuron", "lambda_max": lam,
                                "setting": setting}, metrics, sub)
        add_run(store, {**base, "probe": "finetune"},
                {"dev": _scores(task, 0.84 - 0.05 * t), "test": _scores(task, 0.83 - 0.05 * t),
                 "bits": {"lower": 10000, "upper": 320000}})
    return store


class PageParser(HTMLParser):
    """Image sources, link targets and the body rows of every table with an id."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.rows, self.body = [], [], {}, {}
        self._table, self._in_body = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag == "table":
            self._table.append(attrs.get("id"))
            if attrs.get("id"):
                self.rows[attrs["id"]] = 0
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table and self._table[-1]:
            self.rows[self._table[-1]] += 1
        elif tag == "body":
            self.body = attrs

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        elif tag == "tbody":
            self._in_body = False


def parse(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    return parser
