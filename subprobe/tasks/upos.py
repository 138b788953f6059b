"""Universal part-of-speech tagging on UD treebanks."""

from __future__ import annotations

from pathlib import Path

from subprobe.data.conllu import read_conllu, write_conllu
from subprobe.data.datasets import UD_ENGLISH_EWT
from subprobe.data.records import Sentence
from subprobe.errors import DataError
from subprobe.metrics.statistics import SentenceStats
from subprobe.metrics.tagging import accuracy_scores, accuracy_statistics
from subprobe.tasks.base import TaggingTask, gold_and_predicted, sentence_ids


class UposTask(TaggingTask):
    name = "upos"
    primary_metric = "accuracy"
    field = "upos"
    dataset = UD_ENGLISH_EWT
    prediction_suffix = ".conllu"

    def read(self, path: str | Path) -> list[Sentence]:
        sentences = read_conllu(path)
        for s in sentences:
            if s.upos is None or any(t in ("_", "") for t in s.upos):
                raise DataError(
                    str(path), s.line, "sentence has no UPOS tags (column 4 is '_')", "use a file with UPOS"
                )
        return sentences

    def statistics(self, dataset, predictions, vocabs) -> SentenceStats:
        return accuracy_statistics(*gold_and_predicted(dataset, predictions, self.field), sentence_ids(dataset))

    def score(self, totals):
        return accuracy_scores(totals)

    def write_predictions(self, dataset, predictions, vocabs, path: Path) -> None:
        """CoNLL-U with the predicted UPOS in column 4; every other column copied from the input."""
        labels = vocabs[self.field].labels
        sentences = [dataset.sentences[e.index] for e in dataset.encoded]
        tags = [[labels[int(i)] for i in predictions[e.index][self.field]] for e in dataset.encoded]
        write_conllu(sentences, path, upos=tags)
