"""What a task is: its data, label vocabularies, head, loss, decoder, metrics, control task, prediction files and
the facts the report shows about it. Every task is one module of this package, registered by name in
:mod:`subprobe.tasks.registry`; nothing outside this package spells a task's name or branches on it.

A task declares (class attributes): ``name`` (``--task``), ``title`` (tables), ``primary_metric`` (the
headline of ``metrics.json``) and ``metric_title`` (plot axes), ``paper_metric`` (the ``metrics.json`` key the
paper reports) and ``paper_table1`` / ``paper_table2`` (the paper's numbers, when it has them), ``profiles``
(its adjustments of a budget profile), ``settings`` (the configuration fields only it reads), where its data
lies (``dataset``), what ``subprobe predict`` reads (``input_formats``) and writes
(``prediction_suffix``), and ``needs_root`` (a decoder-only model then needs a BOS token for the ROOT slot).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.config import ProbeConfig
from subprobe.data.batching import IGNORE, Batch, Dataset
from subprobe.data.conllu import read_conllu
from subprobe.data.control import Distribution, control_label
from subprobe.data.datasets import DatasetFacts
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.heads.tagger import TaggerHead
from subprobe.metrics.statistics import SentenceStats

#: Scores of the paper's Table 1 for one task: the three model settings (pretrained, reset encoder, reset all), in %.
PaperRow = tuple[float, float, float]

#: Formats ``subprobe predict --input`` reads: CoNLL-U, CoNLL-2003 columns and plain text (one sentence a line).
INPUT_CONLLU, INPUT_CONLL2003, INPUT_TEXT = "conllu", "conll2003", "text"


class Task(ABC):
    """A probing task. Subclasses set the facts listed in the module docstring and implement the methods."""

    name: str = ""
    #: a parametrised task (``NAME:PARAM``, e.g. ``feats:Number``): how ``--task`` names its parameter; its
    #: constructor takes the parameter and sets the instance's ``name`` to the full name
    parameter: str | None = None
    title: str = ""
    primary_metric: str = ""
    metric_title: str = ""
    #: the ``metrics.json`` score the paper reports (None: the primary metric)
    paper_metric: str | None = None
    #: the paper's Table 1 (bert-base-uncased, dev), by the paper's name of the probe (a probe family's ``title``)
    paper_table1: dict[str, PaperRow] = {}
    #: the paper's Table 2: neuron subnetworks by lambda_max
    paper_table2: dict[int, PaperRow] = {}
    #: adjustments of a budget profile for this task: profile -> setting -> value
    profiles: dict[str, dict[str, Any]] = {}
    #: configuration fields that only this task reads (giving one for another task is an error)
    settings: tuple[str, ...] = ()
    #: the dataset the task reads by default (where its files are found; see :mod:`subprobe.data.datasets`)
    dataset: DatasetFacts | None = None
    #: what ``subprobe predict --input`` reads besides plain text, and the ending of the files it writes
    input_formats: tuple[str, ...] = (INPUT_CONLLU, INPUT_TEXT)
    prediction_suffix: str = ".txt"
    #: slot 0 must be a token of its own (the dependency ROOT): a model without a leading token needs a BOS
    needs_root: bool = False
    #: the label field whose vocabulary holds the task's K labels (tagging: the tags; dep: the relations)
    field: str = ""
    #: the metric a task run and its control-task run are compared on (selectivity); "": the primary metric
    selectivity_metric: str = ""

    @classmethod
    def defaults(cls, profile: str, values: dict[str, Any]) -> dict[str, Any]:
        """Settings this task gives a run that leaves them unset (None), given the run's other ``values``: by
        default its adjustments of the budget ``profile`` (:attr:`profiles`)."""
        return dict(cls.profiles.get(profile, {}))

    @classmethod  # noqa: B027 (optional hook)
    def check_settings(cls, config: ProbeConfig) -> None:
        """Refuse settings this task cannot run with (one ConfigError line), once the configuration is resolved."""

    def configure(self, config: ProbeConfig) -> None:  # noqa: B027 (optional hook)
        """Take task options (reader settings) from the run configuration."""

    @abstractmethod
    def read(self, path: str | Path) -> list[Sentence]:
        """Read one split for training or scoring (every sentence must carry the task's labels)."""

    def read_input(self, path: Path, fmt: str) -> tuple[list[Sentence], bool]:
        """Sentences of a ``subprobe predict`` input in format ``fmt`` (one of :attr:`input_formats` but text),
        and whether every one carries gold labels (then the predictions are scored)."""
        sentences = read_conllu(path)
        return sentences, all(self.has_labels(s) for s in sentences)

    def has_labels(self, sentence: Sentence) -> bool:
        """True if ``sentence`` carries this task's gold labels."""
        return False

    @abstractmethod
    def build_vocabs(self, train: list[Sentence]) -> dict[str, LabelVocab]:
        """Sorted label vocabularies from the training sentences."""

    @abstractmethod
    def attach_labels(self, dataset: Dataset, vocabs: dict[str, LabelVocab]) -> None:
        """Fill ``labels`` of every encoded sentence with word-level label ids."""

    def label_placeholders(self, dataset: Dataset) -> None:  # noqa: B027 (optional hook)
        """Give sentences read without gold labels whatever the predict step reads besides the features."""

    @abstractmethod
    def control(self, train: list[Sentence], seed: int) -> Callable[[Sentence], Sentence]:
        """The control task (Hewitt & Liang 2019; :mod:`subprobe.data.control`): a function giving a sentence the
        labels of the control task, drawn from the training sentences' labels and seeded."""

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

    @abstractmethod
    def with_predictions(self, sentence: Sentence, predicted: dict[str, np.ndarray], vocabs) -> Sentence:
        """``sentence`` with its labels replaced by ``predicted`` (one sentence's entry of :meth:`metrics`' input)."""

    def write_predictions(self, dataset: Dataset, predictions, vocabs, path: Path) -> None:
        """Write predictions in the task's standard file format."""
        raise NotImplementedError(f"--predict is not available for task {self.name}")

    def writes_predictions(self) -> bool:
        """True if this task implements :meth:`write_predictions` (checked before a run starts)."""
        return type(self).write_predictions is not Task.write_predictions

    def head_options(self, config: ProbeConfig) -> dict:
        """Head options taken from the run configuration."""
        return {}

    def run_facts(self) -> dict:
        """Task settings that every score in ``metrics.json`` depends on (recorded beside them)."""
        return {}

    def restore_facts(self, metrics: dict) -> None:  # noqa: B027 (optional hook)
        """Take back the :meth:`run_facts` a finished run recorded in its ``metrics.json`` (to score as it did)."""


class TaggingTask(Task):
    """A task with one label per word, scored by a linear tagger head; ``field`` names the label sequence (the
    :class:`Sentence` field it is read from, and its vocabulary's key in ``vocab.json``)."""

    def labels_of(self, sentence: Sentence) -> list[str] | None:
        """The sentence's label sequence (None when it has none)."""
        return getattr(sentence, self.field)

    def with_labels(self, sentence: Sentence, labels: list[str] | None) -> Sentence:
        """``sentence`` with the label sequence ``labels``."""
        return dataclasses.replace(sentence, **{self.field: labels})

    def has_labels(self, sentence: Sentence) -> bool:
        labels = self.labels_of(sentence)
        return labels is not None and all(t not in ("_", "") for t in labels)

    def build_vocabs(self, train: list[Sentence]) -> dict[str, LabelVocab]:
        return {self.field: LabelVocab.build(t for s in train for t in self.labels_of(s))}

    def attach_labels(self, dataset: Dataset, vocabs: dict[str, LabelVocab]) -> None:
        sentences = [dataset.sentences[e.index] for e in dataset.encoded]
        ids = vocabs[self.field].encode_all([self.labels_of(s) for s in sentences], _source(dataset), self.field)
        for e, seq in zip(dataset.encoded, ids):
            e.labels[self.field] = np.asarray(seq, dtype=np.int64)

    def control(self, train: list[Sentence], seed: int) -> Callable[[Sentence], Sentence]:
        """Each word type one label, drawn from the training labels' distribution."""
        dist = Distribution(Counter(t for s in train for t in (self.labels_of(s) or [])))
        return lambda s: self.with_labels(s, [control_label(w, seed, dist) for w in s.words])

    def build_head(self, d_in: int, vocabs: dict[str, LabelVocab], **options) -> nn.Module:
        return TaggerHead(d_in, len(vocabs[self.field]), dropout=options.get("dropout", 0.0))

    def loss(self, head: nn.Module, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(output.flatten(0, 1).float(), batch.labels[self.field].flatten(), ignore_index=IGNORE)

    def predict(self, head: nn.Module, output: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {self.field: output.argmax(-1)}

    def predicted_labels(self, predicted: dict[str, np.ndarray], vocabs) -> list[str]:
        """One sentence's predicted label ids as labels."""
        labels = vocabs[self.field].labels
        return [labels[int(i)] for i in predicted[self.field]]

    def with_predictions(self, sentence: Sentence, predicted: dict[str, np.ndarray], vocabs) -> Sentence:
        return self.with_labels(sentence, self.predicted_labels(predicted, vocabs))
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
