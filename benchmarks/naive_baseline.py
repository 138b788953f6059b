"""The in-house naive baseline: subnetwork probing written the way the paper's public code works.

Written from the description in ``docs/REFERENCE_NOTES.md`` (no code was copied). It is the
"before" of ``benchmarks/train_speed.py`` and deliberately keeps every costly habit of that code:

* each of the six Linear layers per transformer layer is replaced by :class:`NaiveMaskedLinear`,
  which expands the mask to the full weight shape with the paper's strided ``(nr, nc)`` grouping
  (weight ``[r, c]`` uses mask ``[r mod R, c mod C]``) and multiplies it into the frozen weight at
  every forward. The weight is frozen but ``W * M`` is in the autograd graph, so every backward
  forms a weight-sized gradient (``grad_y^T x``) per matrix;
* hard-concrete sampling (one sample per forward, shared by the whole sub-batch), the soft
  deterministic mask in eval;
* batches of 32 random sentences run as 4 padded sub-batches of 8 with gradient accumulation;
* words are tokenised one at a time by the tokenizer inside the loop, at every step and every
  evaluation (no pre-tokenisation cache);
* fp32 everywhere, the encoder's dropout active, a ``.item()`` host sync per sub-batch for the log;
* the same head as subprobe: dropout 0.1 then a Linear layer on the last subword of each word.

Only BERT-family encoders (``encoder.encoder.layer[i]``) are supported, like the paper's code.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

GAMMA, ZETA, BETA = -0.1, 1.1, 2.0 / 3.0
INIT_SCORE = math.log(5.0)


class NaiveMaskedLinear(nn.Module):
    """A frozen Linear whose weight is multiplied by an expanded hard-concrete mask at every forward."""

    def __init__(self, linear: nn.Linear, out_per_mask: int, in_per_mask: int) -> None:
        super().__init__()
        out_f, in_f = linear.weight.shape
        self.weight = nn.Parameter(linear.weight.detach().float().clone(), requires_grad=False)
        self.bias = nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)
        self.nr, self.nc = out_per_mask, in_per_mask
        self.mask_scores = nn.Parameter(torch.full((out_f // out_per_mask, in_f // in_per_mask), INIT_SCORE))

    def produce_mask(self) -> torch.Tensor:
        if self.training:
            u = torch.rand_like(self.mask_scores).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + self.mask_scores) / BETA)
        else:
            s = torch.sigmoid(self.mask_scores)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.produce_mask()
        out_f, in_f = self.weight.shape
        rows, cols = mask.shape
        # strided grouping: view the weight as (nr, R, nc, C) and broadcast the (R, C) mask over it
        masked = self.weight.view(self.nr, rows, self.nc, cols) * mask.view(1, rows, 1, cols)
        return F.linear(x, masked.view(out_f, in_f), self.bias)

    def expected_l0(self) -> torch.Tensor:
        return torch.sigmoid(self.mask_scores - BETA * math.log(-GAMMA / ZETA)).mean()


def mask_bert(encoder: nn.Module, out_per_mask: int | None = None, in_per_mask: int = 1) -> list[NaiveMaskedLinear]:
    """Replace Q, K, V, O, FFN-in and FFN-out of every layer; ``(hidden, 1)`` = the paper's neuron masks."""
    out_per_mask = out_per_mask or encoder.config.hidden_size
    masked = []
    for layer in encoder.encoder.layer:
        parents = [
            (layer.attention.self, "query"),
            (layer.attention.self, "key"),
            (layer.attention.self, "value"),
            (layer.attention.output, "dense"),
            (layer.intermediate, "dense"),
            (layer.output, "dense"),
        ]
        for parent, name in parents:
            module = NaiveMaskedLinear(getattr(parent, name), out_per_mask, in_per_mask)
            setattr(parent, name, module)
            masked.append(module)
    return masked


class NaiveWordTagger(nn.Module):
    """Masked BERT -> last subword of each word -> dropout -> Linear, with per-word tokenisation."""

    def __init__(self, encoder: nn.Module, tokenizer, n_labels: int, out_per_mask: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder.float()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.masked = mask_bert(self.encoder, out_per_mask)
        self.tokenizer = tokenizer
        self.last_lengths: list[int] = []
        self.dropout = nn.Dropout(0.1)
        self.tip = nn.Linear(encoder.config.hidden_size, n_labels)

    def annotate(self, sentences: list[list[str]]):
        """Tokenise word by word; ids [B, T], attention [B, T], last-subword positions [B, 1+W], word mask."""
        cls, sep = self.tokenizer.cls_token, self.tokenizer.sep_token
        all_ids, all_ends = [], []
        for words in sentences:
            pieces, ends = [cls], [0]
            for word in words:
                word_pieces = self.tokenizer.tokenize(word) or [self.tokenizer.unk_token]
                pieces.extend(word_pieces)
                ends.append(len(pieces) - 1)  # keep the LAST subword of each word
            pieces.append(sep)
            all_ids.append(self.tokenizer.convert_tokens_to_ids(pieces))
            all_ends.append(ends)
        self.last_lengths = [len(i) for i in all_ids]
        max_t = max(self.last_lengths)
        max_w = max(len(e) for e in all_ends)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(sentences), max_t), pad, dtype=torch.long)
        attention = torch.zeros((len(sentences), max_t), dtype=torch.long)
        ends = torch.zeros((len(sentences), max_w), dtype=torch.long)
        word_mask = torch.zeros((len(sentences), max_w), dtype=torch.bool)
        for b, (i, e) in enumerate(zip(all_ids, all_ends)):
            ids[b, : len(i)] = torch.tensor(i)
            attention[b, : len(i)] = 1
            ends[b, : len(e)] = torch.tensor(e)
            word_mask[b, 1 : len(e)] = True
        return ids, attention, ends, word_mask

    def forward(self, sentences: list[list[str]]):
        ids, attention, ends, word_mask = self.annotate(sentences)
        features = self.encoder(input_ids=ids, attention_mask=attention).last_hidden_state
        words = features.gather(1, ends.unsqueeze(-1).expand(-1, -1, features.shape[-1]))
        return self.tip(self.dropout(words)), word_mask

    def penalty(self) -> torch.Tensor:
        """Mean over matrices of the mean expected L0 (each matrix weighs the same)."""
        return torch.stack([m.expected_l0() for m in self.masked]).mean()


class NaiveTrainer:
    """Paper-style loop: 32 random sentences per step as 4 sub-batches of 8, Adam, the L0 penalty."""

    def __init__(
        self,
        model: NaiveWordTagger,
        sentences: list[list[str]],
        labels: list[list[int]],
        *,
        batch_size: int = 32,
        sub_batches: int = 4,
        mask_lr: float = 0.2,
        head_lr: float = 1e-3,
        lam: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.sentences, self.labels = sentences, labels
        self.batch_size, self.sub_batches, self.lam = batch_size, sub_batches, lam
        self.optimizer = torch.optim.Adam(
            [
                {"params": [m.mask_scores for m in model.masked], "lr": mask_lr},
                {"params": list(model.tip.parameters()), "lr": head_lr},
            ]
        )
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.losses: list[float] = []

    def next_batch(self) -> list[int]:
        if len(self.order) < self.batch_size:
            self.order = list(range(len(self.sentences)))
            self.rng.shuffle(self.order)
        batch, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return batch

    def step(self) -> tuple[int, list[int]]:
        """One optimiser step; returns the number of words and each sentence's length in wordpieces."""
        self.model.train()
        batch = self.next_batch()
        size = self.batch_size // self.sub_batches
        words, lengths = 0, []
        for s in range(0, len(batch), size):
            sub = batch[s : s + size]
            logits, word_mask = self.model([self.sentences[i] for i in sub])
            gold = torch.zeros(word_mask.shape, dtype=torch.long)
            for b, i in enumerate(sub):
                gold[b, 1 : 1 + len(self.labels[i])] = torch.tensor(self.labels[i])
            loss = F.cross_entropy(logits[word_mask], gold[word_mask])
            (loss * len(sub) / len(batch)).backward()
            self.losses.append(loss.item())
            words += int(word_mask.sum())
            lengths.extend(self.model.last_lengths)
        (self.lam * self.model.penalty()).backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return words, lengths

    @torch.no_grad()
    def evaluate(self, sentences: list[list[str]], labels: list[list[int]], batch_size: int = 32) -> float:
        """Dev accuracy (macro over sentences, as the paper) in file order, padded batches."""
        self.model.eval()
        total = 0.0
        for s in range(0, len(sentences), batch_size):
            logits, word_mask = self.model(sentences[s : s + batch_size])
            predicted = logits.argmax(-1)
            for b in range(predicted.shape[0]):
                gold = labels[s + b]
                pred = predicted[b, 1 : 1 + len(gold)].tolist()
                total += sum(int(p == g) for p, g in zip(pred, gold)) / max(1, len(gold))
        self.model.train()
        return total / max(1, len(sentences))
