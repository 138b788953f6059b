"""A finished run directory loaded back as a working probe: ``subprobe.load_run(RUN_DIR)``.

The model is rebuilt with the code paths of the run itself: :func:`~subprobe.models.loading.load_encoder`,
:func:`~subprobe.models.reset.apply_setting` (the seeded draw of a reset run is repeated exactly),
:func:`~subprobe.probes.registry.build_probe`, then the saved mask logits, head and MLP-1 adapter
are copied in. Predictions go through :func:`~subprobe.training.evaluate.predict_dataset` with the
hard mask, so a run's dev file predicted here scores exactly what ``metrics.json`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from subprobe.config import ProbeConfig
from subprobe.data.batching import Dataset, encode_dataset
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError
from subprobe.resolve import resolve
from subprobe.runs import RunDir

#: Files of a run directory that loading needs (besides the per-probe weight files).
NEEDED = RunDir.NEEDED_TO_LOAD


@dataclass
class LoadedRun:
    """A trained probe ready to tag: ``.predict(sentences)``, ``.metrics``, ``.subnetwork``, ``.config``."""

    run_dir: Path
    config: ProbeConfig
    metrics: dict
    vocabs: dict[str, LabelVocab]
    task: object  # subprobe.tasks.base.Task
    model: torch.nn.Module  # subprobe.probes.base.ProbeModel, in eval mode
    tokenizer: object
    subnetwork: object | None  # subprobe.Subnetwork for subnetwork runs
    max_length: int
    pad_id: int

    @property
    def mask_mode(self) -> str | None:
        """``hard`` for subnetwork runs (the binarised mask that ``metrics.json``'s dev/test use)."""
        return "hard" if self.subnetwork is not None else None

    def encode(self, sentences: list[Sentence], name: str = "input") -> Dataset:
        """Tokenise ``sentences`` as the run did (same tokenizer, limit and long-sentence policy)."""
        return encode_dataset(name, sentences, self.tokenizer, self.max_length, self.config.long_sentences)

    def predict_encoded(self, dataset: Dataset) -> dict[int, dict[str, np.ndarray]]:
        """Label ids per sentence index (see :func:`subprobe.training.evaluate.predict_dataset`)."""
        from subprobe.probes.cached import CachedFeatures
        from subprobe.training.evaluate import predict_dataset

        if isinstance(self.model.features, CachedFeatures):
            self.model.features.fill(dataset, self.config.word_pooling, self.pad_id)
        self.task.label_placeholders(dataset)
        return predict_dataset(
            self.model,
            self.task,
            dataset,
            pooling=self.config.word_pooling,
            pad_id=self.pad_id,
            mask_mode=self.mask_mode,
        )

    def score(self, dataset: Dataset, predictions) -> dict[str, float]:
        """The run's metrics of ``predictions`` against the gold labels attached to ``dataset``."""
        return self.task.metrics(dataset, predictions, self.vocabs)

    def predict(self, sentences) -> list[Sentence]:
        """Tag ``sentences`` (strings split on whitespace, lists of words or :class:`Sentence` records).

        Returns one new :class:`Sentence` per input, its annotations removed and the task's predicted ones
        filled in (``Task.with_predictions``: e.g. ``upos``, ``heads`` + ``deprels`` with heads 1-based and
        0 = root, ``ner``). A sentence longer than the model limit is returned without predictions.
        """
        records = [_as_sentence(s).without_labels() for s in sentences]
        if not records:
            return []
        predictions = self.predict_encoded(self.encode(records))
        return [s if i not in predictions else self.task.with_predictions(s, predictions[i], self.vocabs)
                for i, s in enumerate(records)]


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a finished run directory (any probe whose weights the directory holds; see the module doc)."""
    from subprobe.models.loading import load_encoder
    from subprobe.models.reset import apply_setting
    from subprobe.probes.registry import build_probe, families, probe_family
    from subprobe.tasks.registry import get_task

    run = RunDir(run_dir)
    run_dir = run.path
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory; give the --out directory of a finished run")
    missing = run.missing_for_load()
    if missing:
        hint = (
            f"finish it first (subprobe probe --resume {run_dir})"
            if run.has_config
            else "give the --out directory of a finished run"
        )
        raise ConfigError(f"{run_dir}: not a finished subprobe run (no {', '.join(missing)}); {hint}")
    cfg = resolve(run.read_config())
    family = probe_family(cfg.probe)
    if not family.loads:
        loadable = ", ".join(f.name for f in families() if f.loads)
        raise ConfigError(
            f"{run_dir}: {family.not_loadable}, so it cannot be loaded or used to predict; use a run of --probe "
            f"{loadable}"
        )
    metrics = run.read_metrics()
    vocabs = {k: LabelVocab(tuple(v)) for k, v in run.read_vocab().items()}
    task = get_task(cfg.task)
    task.configure(cfg)
    task.restore_facts(metrics)  # e.g. the tag scheme NER scored with

    encoder, tokenizer = load_encoder(cfg.model)
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), encoder.config.max_position_embeddings)
    apply_setting(encoder, cfg.setting, cfg.init, cfg.reset_seed)
    head = task.build_head(encoder.config.hidden_size, vocabs, **task.head_options(cfg))
    head.load_state_dict(run.read_head())
    built = build_probe(cfg, encoder, head)
    subnetwork = None
    if built.masked:
        subnetwork = run.read_masks()
        saved = {e.name: e.log_alpha for e in subnetwork.entries}
        if set(saved) != {m.name for m in built.masked}:
            raise ConfigError(f"{run.masks_path}: its matrices do not match model {cfg.model}")
        with torch.no_grad():
            for m in built.masked:
                m.log_alpha.copy_(saved[m.name])
    if built.model.adapter is not None:
        if not run.adapter_path.is_file():
            raise ConfigError(
                f"{run.adapter_path}: missing (runs made before subprobe saved MLP-1 weights); train the run again"
            )
        built.model.adapter.load_state_dict(run.read_adapter())
    built.model.eval()
    for p in built.model.parameters():
        p.requires_grad_(False)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return LoadedRun(run_dir, cfg, metrics, vocabs, task, built.model, tokenizer, subnetwork, max_length, pad_id)


def _as_sentence(item) -> Sentence:
    if isinstance(item, Sentence):
        return item
    if isinstance(item, str):
        words = item.split()
    else:
        words = [str(w) for w in item]
    if not words:
        raise ConfigError("predict: an input sentence has no words; drop empty sentences")
    return Sentence(words=words)
