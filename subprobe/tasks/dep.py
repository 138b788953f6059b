"""Dependency parsing (heads and relations) on UD treebanks with a biaffine head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from subprobe.data.batching import IGNORE, Batch, Dataset
from subprobe.data.conllu import read_conllu, write_conllu
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError, DataError
from subprobe.heads.biaffine import BiaffineHead
from subprobe.metrics.dep import attachment_scores
from subprobe.tasks.base import Task, _source

DECODERS = ("mst", "argmax")


class DepTask(Task):
    """Biaffine dependency probe. Word slot 0 ([CLS]) plays ROOT, so CoNLL-U HEADs are slot indices.

    ``decoder`` (``"mst"``: single-rooted trees, the default; ``"argmax"``: each word's best head,
    the paper) is taken from the run configuration by :meth:`configure` / :meth:`head_options`;
    the per-split scores are floats only; ``metrics.json`` records it as ``"decoder"``.
    """

    name = "dep"
    primary_metric = "las"
    data_folder = "ud-english-ewt"
    data_files = {"train": "en_ewt-ud-train.conllu", "dev": "en_ewt-ud-dev.conllu", "test": "en_ewt-ud-test.conllu"}
    prediction_suffix = ".conllu"
    field = "rels"

    def __init__(self) -> None:
        self.decoder = "mst"

    def configure(self, config) -> None:
        self.decoder = _check_decoder(getattr(config, "decoder", "mst"))

    # data

    def read(self, path: str | Path) -> list[Sentence]:
        sentences = read_conllu(path)
        for s in sentences:
            if s.heads is None or s.deprels is None:
                raise DataError(
                    str(path),
                    s.line,
                    "sentence has no dependency heads (column 7 HEAD is '_')",
                    "use a treebank file with HEAD and DEPREL columns",
                )
        return sentences

    def build_vocabs(self, train: list[Sentence]) -> dict[str, LabelVocab]:
        return {self.field: LabelVocab.build(r for s in train for r in s.deprels)}

    def attach_labels(self, dataset: Dataset, vocabs: dict[str, LabelVocab]) -> None:
        sentences = [dataset.sentences[e.index] for e in dataset.encoded]
        rels = vocabs[self.field].encode_all([s.deprels for s in sentences], _source(dataset), self.field)
        for e, s, seq in zip(dataset.encoded, sentences, rels):
            e.labels["heads"] = np.asarray(s.heads, dtype=np.int64)
            e.labels[self.field] = np.asarray(seq, dtype=np.int64)

    # model

    def head_options(self, config) -> dict:
        return {
            "arc_dim": int(getattr(config, "arc_dim", 1024)),
            "label_dim": int(getattr(config, "label_dim", 256)),
            "decoder": _check_decoder(getattr(config, "decoder", "mst")),
        }

    def run_facts(self) -> dict:
        return {"decoder": self.decoder}

    def build_head(self, d_in: int, vocabs: dict[str, LabelVocab], **options) -> nn.Module:
        self.decoder = _check_decoder(options.get("decoder", self.decoder))
        return BiaffineHead(
            d_in,
            len(vocabs[self.field]),
            arc_dim=options.get("arc_dim", 1024),
            label_dim=options.get("label_dim", 256),
            dropout=options.get("dropout", 0.33),
        )

    def loss(self, head: BiaffineHead, output, batch: Batch) -> torch.Tensor:
        return head.loss(output, batch.labels["heads"], batch.labels[self.field], batch.word_mask)

    def predict(self, head: BiaffineHead, output, batch: Batch) -> dict[str, torch.Tensor]:
        pred_heads, pred_rels = head.decode(output, batch.word_mask, method=self.decoder)
        with torch.no_grad():
            gold_heads = batch.labels["heads"].clamp(min=0)  # -100 outside words -> ROOT, masked below
            rels_gold_head = head.label_scores(output, gold_heads).argmax(dim=-1).masked_fill(~batch.word_mask, IGNORE)
        return {"heads": pred_heads, self.field: pred_rels, "rels_gold_head": rels_gold_head}

    # evaluation

    def metrics(self, dataset: Dataset, predictions, vocabs) -> dict[str, float]:
        gh, gr, ph, pr, prg = [], [], [], [], []
        for e in dataset.encoded:
            p = predictions[e.index]
            gh.append(e.labels["heads"])
            gr.append(e.labels[self.field])
            ph.append(p["heads"])
            pr.append(p[self.field])
            prg.append(p["rels_gold_head"])
        return {k: float(v) for k, v in attachment_scores(gh, gr, ph, pr, prg).items()}

    def write_predictions(self, dataset: Dataset, predictions, vocabs, path: Path) -> None:
        labels = vocabs[self.field].labels
        sentences, heads, rels = [], [], []
        for e in dataset.encoded:
            p = predictions[e.index]
            sentences.append(dataset.sentences[e.index])
            heads.append([int(h) for h in p["heads"]])
            rels.append([labels[int(r)] for r in p[self.field]])
        write_conllu(sentences, path, heads=heads, deprels=rels)


def _check_decoder(value: str) -> str:
    if value not in DECODERS:
        raise ConfigError(f"--decoder {value!r} is not known; use one of {', '.join(DECODERS)}")
    return value
