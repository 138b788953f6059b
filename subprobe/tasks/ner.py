"""Named-entity recognition on CoNLL-2003 (entity-level F1 with conlleval semantics).

In the quick budget NER's linear head needs a faster head lr and one more epoch (:attr:`NerTask.profiles`):
measured on CoNLL-2003 dev (neuron subnetwork, quiet machine), F1 0.7495 at 1e-3 and 0.7614 at 3e-3 with
3 epochs (4 min 12 s), 0.7730 at 3e-3 with 4 epochs (6 min 22 s).
"""

from __future__ import annotations

from pathlib import Path

from subprobe.atomic import write_text
from subprobe.config import ProbeConfig
from subprobe.data.batching import Dataset
from subprobe.data.conll2003 import read_conll2003
from subprobe.data.datasets import CONLL2003
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.metrics.ner import ner_scores_of, ner_statistics
from subprobe.metrics.statistics import SentenceStats
from subprobe.tasks.base import INPUT_CONLL2003, INPUT_TEXT, TaggingTask, gold_and_predicted, sentence_ids


class NerTask(TaggingTask):
    """NER as word tagging; scored on entities. Options come from :meth:`configure`."""

    name = "ner"
    title = "Named entity recognition"
    primary_metric = "f1"
    metric_title = "entity F1"
    paper_metric = "f1"
    paper_table1 = {
        "Subnetworks": (87.94, 68.09, 30.83),
        "MLP-1": (84.80, 69.35, 53.25),
        "Fine-tuning": (93.68, 81.80, 70.08),
    }
    paper_table2 = {1: (87.94, 68.09, 30.83), 5: (84.48, 65.18, 22.92), 25: (72.26, 57.82, 3.41),
                    125: (50.67, 57.56, 2.04)}
    profiles = {"quick": {"head_lr": 3e-3, "epochs": 4}}
    settings = ("ner_scheme", "keep_single_token")
    field = "ner"
    dataset = CONLL2003
    input_formats = (INPUT_CONLL2003, INPUT_TEXT)
    prediction_suffix = ".txt"

    def __init__(self) -> None:
        self.scheme_option = "auto"
        self.keep_single_token = True
        #: detected (or given) tag scheme of each file read, by path
        self.schemes: dict[str, str] = {}
        #: scheme of the training file (set by build_vocabs); used for scoring
        self.train_scheme: str | None = None

    def configure(self, config: ProbeConfig) -> None:
        self.scheme_option = config.ner_scheme
        self.keep_single_token = bool(config.keep_single_token)

    def read(self, path: str | Path) -> list[Sentence]:
        sentences, scheme = read_conll2003(path, scheme=self.scheme_option, keep_single_token=self.keep_single_token)
        self.schemes[str(path)] = scheme
        return sentences

    def read_input(self, path: Path, fmt: str) -> tuple[list[Sentence], bool]:
        """CoNLL-2003 columns always carry gold tags."""
        return self.read(path), True

    def build_vocabs(self, train: list[Sentence]) -> dict[str, LabelVocab]:
        """``O`` plus ``B-T`` and ``I-T`` for every entity type T in the training data.

        Both prefixes of a seen type are valid tags in either scheme, and an IOB1 slice can lack
        ``B-`` tags altogether (they only mark adjacent same-type entities): a dev/test ``B-ORG`` is
        then a known label, not an unseen one. Entity types absent from training still raise.
        """
        sources = [s.source for s in train if s.source]
        if sources and sources[0] in self.schemes:
            self.train_scheme = self.schemes[sources[0]]
        tags = {t for s in train for t in self.labels_of(s)}
        types = {t.split("-", 1)[1] for t in tags if "-" in t}
        return {self.field: LabelVocab.build(tags | {f"{p}-{t}" for t in types for p in ("B", "I")})}

    def scoring_scheme(self) -> str:
        """The training file's scheme (else the first file read, else iob1: conlleval's default)."""
        if self.train_scheme is not None:
            return self.train_scheme
        return next(iter(self.schemes.values()), "iob1")

    def statistics(self, dataset: Dataset, predictions, vocabs) -> SentenceStats:
        labels = vocabs[self.field].labels
        gold_ids, pred_ids = gold_and_predicted(dataset, predictions, self.field)
        gold = [[labels[int(i)] for i in g] for g in gold_ids]
        pred = [[labels[int(i)] for i in p] for p in pred_ids]
        return ner_statistics(gold, pred, scheme=self.scoring_scheme(), ids=sentence_ids(dataset))

    def score(self, totals):
        return ner_scores_of(totals)

    def run_facts(self) -> dict:
        """The tag scheme every NER score was computed with (``subprobe predict`` scores with it too)."""
        return {"ner_scheme": self.scoring_scheme()}

    def restore_facts(self, metrics: dict) -> None:
        if "ner_scheme" in metrics:  # scores use the training file's tag scheme
            self.train_scheme = metrics["ner_scheme"]

    def write_predictions(self, dataset: Dataset, predictions, vocabs, path: Path) -> None:
        """``word gold predicted`` per token, a blank line after each sentence (conlleval input);
        ``word predicted`` for sentences read without gold tags (plain text)."""
        labels = vocabs[self.field].labels
        lines: list[str] = []
        for e in dataset.encoded:
            sentence = dataset.sentences[e.index]
            predicted = [labels[int(p)] for p in predictions[e.index][self.field]]
            if self.field in e.labels:
                for word, gold, pred in zip(sentence.words, e.labels[self.field], predicted):
                    lines.append(f"{word} {labels[int(gold)]} {pred}\n")
            else:
                lines.extend(f"{word} {pred}\n" for word, pred in zip(sentence.words, predicted))
            lines.append("\n")
        write_text(path, "".join(lines))


TASK = NerTask
