"""Language-specific part-of-speech tagging (CoNLL-U's XPOS column; the Penn Treebank tags in English EWT)."""

from __future__ import annotations

from subprobe.tasks.ud import UDTaggingTask


class XposTask(UDTaggingTask):
    name = "xpos"
    title = "Language-specific POS tagging"
    field = "xpos"
    column = "XPOS"


TASK = XposTask
