"""Planted encoders: tiny BERT models whose weights are set by hand so that a tagging task is computed by a known
set of units (ground truth for subnetwork probing; README "Ground-truth recovery").

The residual stream has 16 dimensions, in pairs ``(+f, -f)`` so that every token vector has mean 0, and a large
constant pair (the anchor, :data:`ANCHOR`) so that every token has nearly the same norm and LayerNorm is nearly one
fixed scaling (:data:`GAIN` undoes it)::

    0 a  1 -a  2 b  3 -b  4 c  5 -c  6 e  7 -e  8 n  9 -n  10 o1  11 -o1  12 o2  13 -o2  14 +30  15 -30

A word type is a sign pattern ``(a, b, c, e, n)`` in {-1, +1}^5 (32 types, tokens ``w00`` .. ``w31``); its
embedding puts the signs in dimensions 0-9, zeros in 10-13 and the anchor in 14-15. The label is
``2 [a != b] + [c != e]`` (4 tags): two XORs, which no linear read-out of ``a, b, c, e, n`` computes, so the
probe's linear head needs units that compute them. Every attention matrix is zero (attention adds nothing), and
so is every weight of a layer without a mechanism (it passes the residual on).

**One way** (:func:`one_way`): in layer 0, FFN neuron 0 computes ``relu(a - b)`` (FFN-in row 0 reads dimensions
0 and 2) and writes it to ``(o1, -o1)``; neuron 1 computes ``relu(c - e)`` into ``(o2, -o2)``. ``relu(a - b)``
beside ``a`` and ``b`` (on the residual) separates ``a != b`` linearly, so one neuron per XOR is the least that
solves the task. Distractors: neurons 2-7 read ``n`` (a sign independent of the label) and write back to
``(n, -n)``; neurons 8-15 are dead. At neuron granularity (one mask per input column of each matrix; FFN = hidden
size, so one row group) the planted units are FFN-in columns 0, 2, 4, 6 and FFN-out columns 0 and 1 of layer 0:
:func:`planted_units`.

**Two ways** (:func:`two_ways`): the label is the first XOR only (2 tags), computed by neuron 0 of layer 0 and by
neuron 0 of layer 1 (which reads the same dimensions, passed on by layer 0); the two write to ``(o1, -o1)`` with
opposite signs, so together they cancel and either alone solves the task.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch

HIDDEN, HEADS, FFN, LAYERS = 16, 2, 16, 2
#: The anchor: dimensions 14 and 15 hold +ANCHOR and -ANCHOR in every token, so that a token's norm is dominated by
#: a constant and LayerNorm divides every token by (nearly) the same number: it cannot turn a unit's output into a
#: change of scale of all the others (without it, label-free distractors that change a token's norm were kept).
ANCHOR = 30.0
#: LayerNorm's gain: the standard deviation of an embedding (10 signs and the anchor pair over 16 dimensions), so
#: that the residual keeps its scale through every LayerNorm.
GAIN = float(np.sqrt((10 + 2 * ANCHOR**2) / HIDDEN))
SIGNS = list(itertools.product((-1.0, 1.0), repeat=5))  # (a, b, c, e, n) of word type i
WORDS = [f"w{i:02d}" for i in range(len(SIGNS))]
TAGS_ONE_WAY = ("ADJ", "NOUN", "PROPN", "VERB")
TAGS_TWO_WAYS = ("NOUN", "VERB")
#: FFN-in reads these residual dimensions for each XOR neuron: (+a, +b) and (+c, +e)
XOR_INPUTS = ((0, 2), (4, 6))
XOR_OUTPUTS = ((10, 11), (12, 13))


def tag_one_way(signs) -> str:
    a, b, c, e, _ = signs
    return TAGS_ONE_WAY[2 * (a != b) + (c != e)]


def tag_two_ways(signs) -> str:
    a, b = signs[:2]
    return TAGS_TWO_WAYS[int(a != b)]


def _build(path: Path, mechanisms: dict[int, tuple[int, ...]], distractors: bool,
           write_signs: dict[int, float] | None = None) -> Path:
    """Save the model: ``mechanisms`` maps a layer to the XORs (indices into XOR_INPUTS) its FFN neurons compute;
    ``write_signs``: the sign with which each layer's neurons write their output (default +1)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64}))
    AutoTokenizer.from_pretrained(path).save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=FFN, hidden_act="relu", hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, max_position_embeddings=64, pad_token_id=0)
    model = BertModel(config)  # the pooler stays zero (the probe reads token states)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.fill_(GAIN)
        emb = model.embeddings.word_embeddings.weight
        for i, signs in enumerate(SIGNS):
            for k, s in enumerate(signs):
                emb[5 + i, 2 * k], emb[5 + i, 2 * k + 1] = s, -s
            emb[5 + i, 14], emb[5 + i, 15] = ANCHOR, -ANCHOR
        for special in (2, 3, 4, 1):  # [CLS], [SEP], [MASK], [UNK]: a fixed word-like vector (never labelled)
            emb[special] = emb[5]
        for layer, xors in mechanisms.items():
            ffn_in = model.encoder.layer[layer].intermediate.dense.weight  # [FFN, HIDDEN]
            ffn_out = model.encoder.layer[layer].output.dense.weight  # [HIDDEN, FFN]
            for neuron, x in enumerate(xors):
                plus, minus = XOR_INPUTS[x]
                ffn_in[neuron, plus], ffn_in[neuron, minus] = 1.0, -1.0
                up, down = XOR_OUTPUTS[x]
                sign = (write_signs or {}).get(layer, 1.0)
                ffn_out[up, neuron], ffn_out[down, neuron] = sign, -sign
            if distractors:  # neurons 2-7 read n (label-free) and write it back; 8-13 stay dead
                for neuron, weight in zip(range(2, 8), (1.0, -1.0, 0.5, -0.5, 2.0, -2.0)):
                    ffn_in[neuron, 8] = weight
                    ffn_out[8, neuron], ffn_out[9, neuron] = 0.5, -0.5
    model.save_pretrained(path)
    return path


def one_way(path: Path) -> Path:
    """The one-way planted model (two XOR neurons in layer 0, distractors)."""
    return _build(path, {0: (0, 1)}, distractors=True)


def two_ways(path: Path, opposite: bool = True) -> Path:
    """The two-way planted model: the first XOR in neuron 0 of layer 0 and of layer 1, written with opposite signs
    to the same dimensions (``opposite``: together they cancel, either alone solves the task) or the same sign."""
    return _build(path, {0: (0,), 1: (0,)}, distractors=False, write_signs={1: -1.0 if opposite else 1.0})


def planted_units(layer: int = 0, xors: tuple[int, ...] = (0, 1)) -> set[tuple[str, int]]:
    """The planted units at neuron granularity: (matrix name, input column) of FFN-in and FFN-out."""
    units = {(f"encoder.layer.{layer}.intermediate.dense", c) for x in xors for c in XOR_INPUTS[x]}
    return units | {(f"encoder.layer.{layer}.output.dense", neuron) for neuron in range(len(xors))}


def kept_units(subnetwork) -> set[tuple[str, int]]:
    """Units a neuron-granularity hard mask keeps: (matrix name, input column)."""
    kept = set()
    for name, mask in subnetwork.hard_masks().items():
        assert mask.shape[0] == 1, "neuron granularity with FFN = HIDDEN: one row group per matrix"
        kept |= {(name, int(c)) for c in torch.nonzero(mask[0]).flatten()}
    return kept


def iou(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def write_data(root: Path, tag, seed: int = 0, sizes=(("train", 300), ("dev", 60), ("test", 60))) -> dict[str, Path]:
    """CoNLL-U files of random 6-word sentences of the 32 word types, tagged by ``tag(signs)``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in sizes:
        blocks = []
        for _ in range(n):
            ids = rng.integers(0, len(WORDS), size=6)
            blocks.append("".join(f"{j}\t{WORDS[i]}\t{WORDS[i]}\t{tag(SIGNS[i])}\t_\t_\t{0 if j == 1 else 1}\t"
                                  f"{'root' if j == 1 else 'dep'}\t_\t_\n" for j, i in enumerate(ids, start=1)))
        paths[split] = root / f"{split}.conllu"
        paths[split].write_text("\n".join(blocks) + "\n")
    return paths
