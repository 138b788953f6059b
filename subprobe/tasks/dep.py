"""Dependency parsing (heads and relations) on UD treebanks with a biaffine head."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from subprobe.data.batching import IGNORE, Batch, Dataset
from subprobe.data.conllu import read_conllu, write_conllu
from subprobe.data.datasets import UD_ENGLISH_EWT
from subprobe.data.records import Sentence
from subprobe.data.vocab import LabelVocab
from subprobe.errors import ConfigError, DataError
from subprobe.heads.biaffine import BiaffineHead
from subprobe.metrics.dep import attachment_scores_of, attachment_statistics, universal_relation
from subprobe.metrics.statistics import SentenceStats
from subprobe.tasks.base import Task, _source, sentence_ids

DECODERS = ("mst", "argmax")
#: How dependency control-task runs decode heads (``--control --task dep``): per word, not as a tree (the control
#: heads attach about a third of the words to ROOT and make 2-cycles, which no single-rooted tree holds).
CONTROL_DECODER = "argmax"
#: ``--deprel``: relations as in the file (``full``, the paper's) or without subtypes (``universal``).
DEPRELS = ("full", "universal")


class DepTask(Task):
    """Biaffine dependency probe. Word slot 0 ([CLS]) plays ROOT, so CoNLL-U HEADs are slot indices.

    ``decoder`` (``"mst"``: single-rooted trees, the default; ``"argmax"``: each word's best head,
    the paper) is taken from the run configuration by :meth:`configure` / :meth:`head_options`;
    ``metrics.json`` records it as ``"decoder"``. Both decoders are scored at every evaluation
    (argmax is free, MST is what ``mst`` runs compute anyway), so every run has:

    * ``uas``, ``las``: token-micro, heads from the run's decoder (the headline);
    * ``las_universal``: ``las`` with relation subtypes ignored (``nmod:poss`` = ``nmod``), the
      official CoNLL 2018 scorer's LAS;
    * ``uas_mst``/``las_mst`` and ``uas_argmax``/``las_argmax``: both decoders, token-micro;
    * ``paper_uas``, ``paper_las``: the paper's numbers, argmax heads, averaged per sentence, with
      the relation of a word predicted from its *gold* head.

    ``deprel="universal"`` (``--deprel universal``) strips subtypes when reading, so a probe
    trains and scores on the 37 universal relations and can score treebanks of another UD version.
    """

    name = "dep"
    primary_metric = "las"
    dataset = UD_ENGLISH_EWT
    prediction_suffix = ".conllu"
    field = "rels"
    #: selectivity compares heads decoded per word on both sides: control runs decode with argmax (their trees are
    #: not single-rooted) and every run scores argmax heads too
    selectivity_metric = "las_argmax"

    def __init__(self) -> None:
        self.decoder = "mst"
        self.deprel = "full"

    def configure(self, config) -> None:
        self.decoder = _decoder_of(config)
        self.deprel = getattr(config, "deprel", "full")
        if self.deprel not in DEPRELS:
            raise ConfigError(f"--deprel {self.deprel!r} is not known; use one of {', '.join(DEPRELS)}")

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
            if self.deprel == "universal":
                s.deprels = [universal_relation(r) for r in s.deprels]
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
        """Head sizes and decoder; with ``--precision bf16`` (the encoder runs bf16) the head's training
        matmuls run bf16 too (``compute_dtype``; fp32 parameters and loss, see :class:`BiaffineHead`)."""
        options = {
            "arc_dim": int(getattr(config, "arc_dim", 1024)),
            "label_dim": int(getattr(config, "label_dim", 256)),
            "decoder": _decoder_of(config),
        }
        if getattr(config, "precision", None) == "bf16":
            options["compute_dtype"] = "bf16"
        return options

    def run_facts(self) -> dict:
        return {"decoder": self.decoder, "deprel": self.deprel}

    def build_head(self, d_in: int, vocabs: dict[str, LabelVocab], **options) -> nn.Module:
        self.decoder = _check_decoder(options.get("decoder", self.decoder))
        return BiaffineHead(
            d_in,
            len(vocabs[self.field]),
            arc_dim=options.get("arc_dim", 1024),
            label_dim=options.get("label_dim", 256),
            dropout=options.get("dropout", 0.33),
            compute_dtype=options.get("compute_dtype"),
        )

    def loss(self, head: BiaffineHead, output, batch: Batch) -> torch.Tensor:
        return head.loss(output, batch.labels["heads"], batch.labels[self.field], batch.word_mask)

    def predict(self, head: BiaffineHead, output, batch: Batch) -> dict[str, torch.Tensor]:
        """Heads and relations of both decoders (``heads``/``rels`` are the run's decoder's) and the
        relations predicted from the gold heads (the paper's LAS)."""
        mask = batch.word_mask
        with torch.no_grad():
            heads = {method: head.decode_heads(output, mask, method) for method in DECODERS}
            gold_heads = batch.labels["heads"].clamp(min=0)  # -100 outside words -> ROOT, masked below
            scores = head.label_scores_for(output, [heads["mst"], heads["argmax"], gold_heads])
            mst_rels, argmax_rels, gold_head_rels = (s.argmax(dim=-1).masked_fill(~mask, IGNORE) for s in scores)
        rels = {"mst": mst_rels, "argmax": argmax_rels}
        return {
            "heads": heads[self.decoder],
            self.field: rels[self.decoder],
            "heads_mst": heads["mst"],
            "rels_mst": mst_rels,
            "heads_argmax": heads["argmax"],
            "rels_argmax": argmax_rels,
            "rels_gold_head": gold_head_rels,
        }

    code = ("the biaffine head's factorisation: per word -log2 p(gold head) - log2 p(gold relation | gold head); "
            "uniform: log2 n for the head (ROOT or one of the other n - 1 words of an n-word sentence) + log2 K for "
            "the relation (K relations)")

    def codelength(self, head: BiaffineHead, output, batch: Batch) -> torch.Tensor:
        nats = head.word_nll(output, batch.labels["heads"], batch.labels[self.field], batch.word_mask)
        return nats / math.log(2)

    def uniform_bits(self, dataset: Dataset, vocabs) -> float:
        lengths = np.array([e.n_words for e in dataset.encoded], dtype=np.float64)
        return float(np.sum(lengths * np.log2(np.maximum(lengths, 1.0)))) + lengths.sum() * math.log2(
            len(vocabs[self.field]))

    # evaluation

    def statistics(self, dataset: Dataset, predictions, vocabs) -> SentenceStats:
        """Per-sentence counts of every score listed in the class docstring (one attachment table per variant)."""
        gold_heads = [e.labels["heads"] for e in dataset.encoded]
        gold_rels = [e.labels[self.field] for e in dataset.encoded]

        def pred(key: str) -> list[np.ndarray]:
            return [predictions[e.index][key] for e in dataset.encoded]

        universal = np.array([universal_relation(r) for r in vocabs[self.field].labels], dtype=object)
        ids = sentence_ids(dataset)
        parts = {
            "main.": attachment_statistics(gold_heads, gold_rels, pred("heads"), pred(self.field), ids=ids),
            "universal.": attachment_statistics(gold_heads, [universal[g] for g in gold_rels], pred("heads"),
                                                [universal[p] for p in pred(self.field)], ids=ids),
        }
        for method in DECODERS:
            parts[f"{method}."] = attachment_statistics(gold_heads, gold_rels, pred(f"heads_{method}"),
                                                        pred(f"rels_{method}"), ids=ids)
        parts["paper."] = attachment_statistics(gold_heads, gold_rels, pred("heads_argmax"), pred("rels_argmax"),
                                                pred("rels_gold_head"), ids=ids)
        return SentenceStats.join(parts)

    def score(self, totals):
        """The scores listed in the class docstring (fractions) from :meth:`statistics`' column sums."""
        def part(prefix: str) -> dict:
            return attachment_scores_of({k[len(prefix):]: v for k, v in totals.items() if k.startswith(prefix)})

        main = part("main.")
        out = {"uas": main["uas"], "las": main["las"], "las_universal": part("universal.")["las"]}
        for method in DECODERS:
            scores = part(f"{method}.")
            out[f"uas_{method}"], out[f"las_{method}"] = scores["uas"], scores["las"]
        paper = part("paper.")
        out["paper_uas"], out["paper_las"] = paper["paper_uas"], paper["paper_las"]
        return out

    def write_predictions(self, dataset: Dataset, predictions, vocabs, path: Path) -> None:
        labels = vocabs[self.field].labels
        sentences, heads, rels = [], [], []
        for e in dataset.encoded:
            p = predictions[e.index]
            sentences.append(dataset.sentences[e.index])
            heads.append([int(h) for h in p["heads"]])
            rels.append([labels[int(r)] for r in p[self.field]])
        write_conllu(sentences, path, heads=heads, deprels=rels)


def default_decoder(task: str, control: bool) -> str:
    """``--decoder`` when not given: MST trees, except for the dependency control task, whose trees are not
    single-rooted (:data:`CONTROL_DECODER`, each word's best head)."""
    return CONTROL_DECODER if control and task == "dep" else "mst"


def _decoder_of(config) -> str:
    """The run's decoder (a configuration not yet resolved gets the default of its task and control flag)."""
    value = getattr(config, "decoder", None)
    return _check_decoder(value if value is not None else default_decoder("dep", getattr(config, "control", False)))


def _check_decoder(value: str) -> str:
    if value not in DECODERS:
        raise ConfigError(f"--decoder {value!r} is not known; use one of {', '.join(DECODERS)}")
    return value
