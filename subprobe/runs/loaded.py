"""A finished run directory loaded back as a working probe: ``subprobe.load_run(RUN_DIR)``.

The model is rebuilt with the code paths of the run itself (:func:`subprobe.runs.rebuild.rebuild`: the
encoder as loaded, the seeded draw of a reset run repeated exactly, the task head and the probe), then the
saved mask logits, head and MLP-1 adapter are copied in. Predictions go through
:func:`~subprobe.training.evaluate.predict_dataset` with the hard mask, so a run's dev file predicted here
scores exactly what ``metrics.json`` reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from subprobe.config import ProbeConfig
from subprobe.data.batching import Dataset, encode_dataset
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError


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


def load_run(run_dir: str | Path, *, device: str = "auto") -> LoadedRun:
    """Load a finished run directory (any probe whose weights the directory holds; see the module doc) onto
    ``device`` (``auto``: CUDA when present, else the CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    from subprobe.device import resolve_device
    from subprobe.runs.rebuild import rebuild

    where = resolve_device(device)  # a device that is not there: one error line before anything loads
    rebuilt = rebuild(run_dir)
    rebuilt.model.to(where)
    return LoadedRun(**{f.name: getattr(rebuilt, f.name) for f in dataclasses.fields(rebuilt)})


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
