"""The one data preparation of a run: read -> encode -> vocabularies -> labels.

The API, ``load_run``'s callers, the benchmarks and the tests all prepare their splits here, so a
change to how sentences are cut, encoded or labelled reaches every one of them. ``task`` is any
:class:`subprobe.tasks.base.Task` (used through its ``read``, ``build_vocabs`` and ``attach_labels``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from subprobe.data.batching import Dataset, encode_dataset
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError

#: The split of an MDL block run that holds the next block of training sentences (coded, never trained on).
NEXT_BLOCK = "next"


@dataclass
class RawSplits:
    """Sentences read from each split's file, before encoding."""

    sentences: dict[str, list[Sentence]]  # per split, cut to the sample limits
    label_sentences: list[Sentence] = field(default_factory=list)  # the whole training file: vocabulary source


def read_splits(
    task, paths: dict[str, Path | None], max_train_samples: int | None = None, max_eval_samples: int | None = None
) -> RawSplits:
    """Sentences of every available split, cut to ``max_train_samples`` / ``max_eval_samples``, and the whole
    training file's sentences, whose labels make the vocabularies: a training budget must not turn a rare
    dev label (EWT's ``goeswith``) into an unseen one."""
    raw, label_sentences = {}, []
    for split, path in paths.items():
        if path is None:
            continue
        sentences = task.read(path)
        if split == "train":
            label_sentences = sentences
        limit = max_train_samples if split == "train" else max_eval_samples
        raw[split] = sentences[:limit] if limit is not None else sentences
    return RawSplits(raw, label_sentences)


def add_next_block(raw: RawSplits, start: int, end: int) -> None:
    """MDL's online code: the training file's sentences ``[start, end)`` become split :data:`NEXT_BLOCK`, which the
    probe trained on the first ``start`` sentences codes (labels from the whole file's vocabularies, as always)."""
    total = len(raw.label_sentences)
    if end > total:
        raise ConfigError(f"--mdl-block-end {end}: the training file has only {total} sentences; give at most {total}")
    raw.sentences[NEXT_BLOCK] = raw.label_sentences[start:end]


def prepare_splits(
    task,
    raw: RawSplits,
    tokenizer,
    max_length: int,
    *,
    long_policy: str = "drop",
    prepend_id: int | None | str = "auto",
    echo: Callable[..., None] | None = None,
) -> tuple[dict[str, Dataset], dict[str, LabelVocab]]:
    """Encode every split once, build the vocabularies from the training file and attach the labels.

    ``echo`` (e.g. ``print``) is told on stderr how many sentences of a split were too long and dropped.
    """
    splits = {}
    for split, sentences in raw.sentences.items():
        splits[split] = encode_dataset(split, sentences, tokenizer, max_length, long_policy, prepend_id)
        if splits[split].dropped and echo is not None:
            echo(
                f"{split}: dropped {splits[split].dropped} sentence(s) longer than {max_length} subwords",
                file=sys.stderr,
            )
    vocabs = task.build_vocabs(raw.label_sentences)
    for ds in splits.values():
        task.attach_labels(ds, vocabs)
    return splits, vocabs
