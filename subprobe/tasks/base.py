"""What a task is: a reader, label vocabularies, a head, a loss, a decoder and metrics."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.data.batching import IGNORE, Batch, Dataset
from subprobe.data.datasets import DatasetFacts
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.heads.tagger import TaggerHead
from subprobe.metrics.statistics import SentenceStats


class Task(ABC):
    """A probing task. Subclasses set ``name``, ``primary_metric`` and the data layout."""

    name: str = ""
    primary_metric: str = ""
    #: The dataset the task reads by default (where its files are found; see :mod:`subprobe.data.datasets`).
    dataset: DatasetFacts | None = None
    #: File name ending of written predictions.
    prediction_suffix: str = ".txt"
    #: The label field whose vocabulary holds the task's K labels (tagging: the tags; dep: the relations).
    field: str = ""
    #: The metric a task run and its control-task run are compared on (selectivity); "" : the primary metric.
    selectivity_metric: str = ""

    def configure(self, config) -> None:  # noqa: B027 (optional hook)
        """Take task options (reader settings) from the run configuration."""

    @abstractmethod
    def read(self, path: str | Path) -> list[Sentence]:
        """Read one split."""

    @abstractmethod
    def build_vocabs(self, train: list[Sentence]) -> dict[str, LabelVocab]:
        """Sorted label vocabularies from the training sentences."""

    @abstractmethod
    def attach_labels(self, dataset: Dataset, vocabs: dict[str, LabelVocab]) -> None:
        """Fill ``labels`` of every encoded sentence with word-level label ids."""

    @abstractmethod
    def build_head(self, d_in: int, vocabs: dict[str, LabelVocab], **options) -> nn.Module:
        """The task head on top of word features."""

    @abstractmethod
    def loss(self, head: nn.Module, output, batch: Batch) -> torch.Tensor:
        """Training loss, averaged over real words."""

    @abstractmethod
    def predict(self, head: nn.Module, output, batch: Batch) -> dict[str, torch.Tensor]:
        """Predicted label ids per word slot, ``[B, 1+W]`` each."""

    #: What :meth:`codelength` and :meth:`uniform_bits` code (``mdl.json``'s ``code``).
    code: str = ""

    @abstractmethod
    def codelength(self, head: nn.Module, output, batch: Batch) -> torch.Tensor:
        """Bits to transmit each word's gold labels with the probe's distribution (the task's own factorisation),
        ``[B, 1+W]``, 0 outside words: the online code of MDL probing (:mod:`subprobe.metrics.online_code`)."""

    @abstractmethod
    def uniform_bits(self, dataset: Dataset, vocabs) -> float:
        """Bits to transmit the gold labels of every encoded sentence of ``dataset`` with the uniform code."""

    @abstractmethod
    def statistics(self, dataset: Dataset, predictions: dict[int, dict[str, np.ndarray]], vocabs) -> SentenceStats:
        """Per-sentence sufficient statistics of ``predictions`` (sentence index -> field -> per-word ids), one row
        per encoded sentence of ``dataset`` (see :mod:`subprobe.metrics.statistics`)."""

    @abstractmethod
    def score(self, totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The scores (fractions) of :meth:`statistics`' column sums: scalars, or one value per bootstrap resample.
        Depends on the statistics' names only, so saved statistics are scored without the data."""

    def metrics(self, dataset: Dataset, predictions: dict[int, dict[str, np.ndarray]], vocabs) -> dict[str, float]:
        """Scores (fractions) of ``predictions``: :meth:`score` of the summed :meth:`statistics`."""
        totals = self.statistics(dataset, predictions, vocabs).totals()
        return {k: float(v) for k, v in self.score(totals).items()}

    def write_predictions(self, dataset: Dataset, predictions, vocabs, path: Path) -> None:
        """Write predictions in the task's standard file format."""
        raise NotImplementedError(f"--predict is not available for task {self.name}")

    def writes_predictions(self) -> bool:
        """True if this task implements :meth:`write_predictions` (checked before a run starts)."""
        return type(self).write_predictions is not Task.write_predictions

    def head_options(self, config) -> dict:
        """Head options taken from the run configuration."""
        return {}

    def run_facts(self) -> dict:
        """Task settings that every score in ``metrics.json`` depends on (recorded beside them)."""
        return {}


class TaggingTask(Task):
    """A task with one label per word, scored by a linear tagger head."""

    field: str = ""

    def labels_of(self, sentence: Sentence) -> list[str]:
        return getattr(sentence, self.field)

    def build_vocabs(self, train: list[Sentence]) -> dict[str, LabelVocab]:
        return {self.field: LabelVocab.build(t for s in train for t in self.labels_of(s))}

    def attach_labels(self, dataset: Dataset, vocabs: dict[str, LabelVocab]) -> None:
        sentences = [dataset.sentences[e.index] for e in dataset.encoded]
        ids = vocabs[self.field].encode_all([self.labels_of(s) for s in sentences], _source(dataset), self.field)
        for e, seq in zip(dataset.encoded, ids):
            e.labels[self.field] = np.asarray(seq, dtype=np.int64)

    def build_head(self, d_in: int, vocabs: dict[str, LabelVocab], **options) -> nn.Module:
        return TaggerHead(d_in, len(vocabs[self.field]), dropout=options.get("dropout", 0.0))

    def loss(self, head: nn.Module, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(output.flatten(0, 1).float(), batch.labels[self.field].flatten(), ignore_index=IGNORE)

    def predict(self, head: nn.Module, output: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {self.field: output.argmax(-1)}

    code = "-log2 p(label | sentence) per word under the probe; uniform: log2 K per word (K labels)"

    def codelength(self, head: nn.Module, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        nats = F.cross_entropy(output.flatten(0, 1).float(), batch.labels[self.field].flatten(), ignore_index=IGNORE,
                               reduction="none")
        return nats.view(batch.labels[self.field].shape) / math.log(2)

    def uniform_bits(self, dataset: Dataset, vocabs) -> float:
        return dataset.n_words * math.log2(len(vocabs[self.field]))


def _source(dataset: Dataset) -> str:
    sources = {s.source for s in dataset.sentences if s.source}
    return next(iter(sources)) if len(sources) == 1 else dataset.name


def gold_and_predicted(dataset: Dataset, predictions, field: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Aligned per-sentence gold and predicted id arrays for the encoded sentences."""
    gold, pred = [], []
    for e in dataset.encoded:
        gold.append(e.labels[field])
        pred.append(predictions[e.index][field])
    return gold, pred


def sentence_ids(dataset: Dataset) -> list[int]:
    """The split indices of the encoded sentences (the rows of a task's :meth:`Task.statistics`)."""
    return [e.index for e in dataset.encoded]
