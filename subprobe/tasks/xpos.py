"""Language-specific part-of-speech tagging (CoNLL-U's XPOS column; the Penn Treebank tags in English EWT)."""

from __future__ import annotations

from subprobe.metrics.tagging import accuracy
from subprobe.tasks.base import gold_and_predicted
from subprobe.tasks.ud import UDTaggingTask


class XposTask(UDTaggingTask):
    name = "xpos"
    title = "Language-specific POS tagging"
    primary_metric = "accuracy"
    metric_title = "accuracy"
    paper_metric = "accuracy_macro"  # as UPOS: sentence-averaged accuracy
    field = "xpos"
    column = "XPOS"

    def metrics(self, dataset, predictions, vocabs) -> dict[str, float]:
        return accuracy(*gold_and_predicted(dataset, predictions, self.field))


TASK = XposTask
