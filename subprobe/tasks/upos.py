"""Universal part-of-speech tagging on UD treebanks."""

from __future__ import annotations

from subprobe.tasks.ud import UDTaggingTask


class UposTask(UDTaggingTask):
    name = "upos"
    title = "Part-of-speech tagging"
    paper_table1 = {
        "Subnetworks": (93.39, 87.53, 71.53),
        "MLP-1": (90.25, 86.53, 69.16),
        "Fine-tuning": (95.69, 86.47, 84.42),
    }
    paper_table2 = {1: (93.39, 87.53, 71.53), 5: (92.41, 87.20, 70.45), 25: (90.66, 86.23, 68.65),
                    125: (84.86, 86.10, 66.39)}
    field = "upos"
    column = "UPOS"


TASK = UposTask
