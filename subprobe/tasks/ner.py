"""Named-entity recognition on CoNLL-2003 (entity-level F1 with conlleval semantics)."""

from __future__ import annotations

from pathlib import Path

from subprobe.atomic import write_text
from subprobe.data.batching import Dataset
from subprobe.data.conll2003 import read_conll2003
from subprobe.data.datasets import CONLL2003
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.metrics.ner import ner_scores_of, ner_statistics
from subprobe.metrics.statistics import SentenceStats
from subprobe.tasks.base import TaggingTask, gold_and_predicted, sentence_ids


class NerTask(TaggingTask):
    """NER as word tagging; scored on entities. Options come from :meth:`configure`."""

    name = "ner"
    primary_metric = "f1"
    field = "ner"
    dataset = CONLL2003
    prediction_suffix = ".txt"

    def __init__(self) -> None:
        self.scheme_option = "auto"
        self.keep_single_token = True
        #: detected (or given) tag scheme of each file read, by path
        self.schemes: dict[str, str] = {}
        #: scheme of the training file (set by build_vocabs); used for scoring
        self.train_scheme: str | None = None

    def configure(self, config) -> None:
        self.scheme_option = getattr(config, "ner_scheme", "auto")
        self.keep_single_token = bool(getattr(config, "keep_single_token", True))

    def read(self, path: str | Path) -> list[Sentence]:
        sentences, scheme = read_conll2003(path, scheme=self.scheme_option, keep_single_token=self.keep_single_token)
        self.schemes[str(path)] = scheme
        return sentences

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
