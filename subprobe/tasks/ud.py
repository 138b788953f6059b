"""What the word-tagging tasks on Universal Dependencies treebanks share: the CoNLL-U files (UD English-EWT by
default, embedded in the package), a check that every sentence carries the labels, and prediction files with
the predicted column."""

from __future__ import annotations

from pathlib import Path

from subprobe.data.conllu import COLUMNS, read_conllu, write_conllu
from subprobe.data.datasets import UD_ENGLISH_EWT
from subprobe.data.records import Sentence
from subprobe.errors import DataError
from subprobe.metrics.statistics import SentenceStats
from subprobe.metrics.tagging import accuracy_scores, accuracy_statistics
from subprobe.tasks.base import TaggingTask, gold_and_predicted, sentence_ids


class UDTaggingTask(TaggingTask):
    """A tag per word read from one CoNLL-U column (``column``, a name of :data:`COLUMNS`), scored by word accuracy
    (``accuracy``, token-micro) and its average over sentences (``accuracy_macro``, what the paper reports)."""

    column: str = ""
    primary_metric = "accuracy"
    metric_title = "accuracy"
    paper_metric = "accuracy_macro"
    dataset = UD_ENGLISH_EWT
    prediction_suffix = ".conllu"

    def statistics(self, dataset, predictions, vocabs) -> SentenceStats:
        return accuracy_statistics(*gold_and_predicted(dataset, predictions, self.field), sentence_ids(dataset))

    def score(self, totals):
        return accuracy_scores(totals)

    def read(self, path: str | Path) -> list[Sentence]:
        sentences = read_conllu(path)
        for s in sentences:
            if not self.has_labels(s):
                raise DataError(
                    str(path), s.line,
                    f"sentence has no {self.column} tags (column {COLUMNS.index(self.column) + 1} is '_')",
                    f"use a file with {self.column}",
                )
        return sentences

    def column_values(self, sentence: Sentence) -> list[str]:
        """The values of :attr:`column` for a sentence with this task's labels."""
        return list(self.labels_of(sentence))

    def write_predictions(self, dataset, predictions, vocabs, path: Path) -> None:
        """CoNLL-U with the predicted tags in :attr:`column`; every other column copied from the input."""
        sentences = [dataset.sentences[e.index] for e in dataset.encoded]
        values = [self.column_values(self.with_predictions(s, predictions[e.index], vocabs))
                  for s, e in zip(sentences, dataset.encoded)]
        write_conllu(sentences, path, columns={self.column: values})
