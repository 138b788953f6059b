"""Tagging head: a linear layer over the label set (UPOS, NER), after optional dropout.

The probe applies its feature dropout (0.1, :data:`subprobe.probes.base.FEATURE_DROPOUT`) before
every head, as the paper's code does, so the head's own dropout defaults to none."""

from __future__ import annotations

import torch
from torch import nn


class TaggerHead(nn.Module):
    """Per-word logits ``[B, 1+W, n_labels]`` from word features ``[B, 1+W, d]`` (or ``[N, n_labels]`` from
    ``[N, d]``: a word's logits depend on its own features only)."""

    #: each word's output depends on its features only: the probe may run it on the real words alone
    per_word = True

    def __init__(self, d_in: int, n_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(d_in, n_labels)

    def forward(self, features: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
