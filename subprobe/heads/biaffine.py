"""Biaffine dependency head (Dozat & Manning, 2017): arc scorer + relation scorer.

Conventions (shared with the rest of the project): ``features`` is ``[B, 1+W, d]`` with the
[CLS] vector at position 0 playing ROOT; ``word_mask`` is ``[B, 1+W]``, True on real words and
False at position 0 and on padding; gold ``heads``/``rels`` are ``[B, 1+W]`` in CoNLL-U
numbering with -100 at position 0 and on padding.

Differences from the paper's code (see REFERENCE_NOTES.md 1.9), all deliberate:

* The arc scorer is ``s[i, j] = [d_i; 1]^T U h_j = d_i^T W h_j + u^T h_j`` (dependent ``i``,
  head ``j``, ``U = [W; u^T]`` of shape ``(a+1, a)``): the bilinear term plus the head-side prior
  ``u^T h_j`` ("how likely is ``j`` to be a head at all"), as in the paper's code and Dozat &
  Manning. The 1 sits on the *dependent* side: on the head side it would give ``d_i^T u``, which
  is constant over candidate heads. The paper's extra dependent-side and global bias terms (and
  the bias of its ``nn.Linear`` ``W``) are constant over candidate heads, so they cancel in the
  softmax over heads and are dropped.
* The relation scorer is a biaffine ``[d'_i; 1]^T W_l [h'_{head(i)}; 1]`` per label ``l``; the
  appended 1s give the head-side, dependent-side and bias terms (the paper's parameter count
  ``66,049 * L`` for 256-d MLPs). Head states are gathered with ``torch.gather``.
* Biaffine weights start at zero (Dozat & Manning's choice; uniform initial predictions), the
  MLPs use PyTorch's default Linear init. The paper used N(0, 1) for the biaffine parameters.
* Self-loops (a word heading itself) and padding positions get a large negative arc score.
* MLP activation: ReLU as in the paper's code (``activation="leaky_relu"`` gives Dozat &
  Manning's LeakyReLU(0.1)), followed by dropout.

Speed: with ``compute_dtype=torch.bfloat16`` (runs whose encoder runs bf16) the training forward casts
the features and the (fp32) weights to bf16 for the matmuls; scores go to fp32 before the cross
entropies, so the loss is accumulated in fp32 and the parameters and their gradients stay fp32.
Evaluation (``eval()``) scores in fp32. The relation loss scores the words only (not ROOT and padding);
decoding (MST) runs only in :meth:`BiaffineHead.decode_heads`, never in :meth:`BiaffineHead.loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from subprobe.device import quantised_rows
from subprobe.metrics.mst import mst_decode

__all__ = ["BiaffineHead", "BiaffineOutput"]

IGNORE_INDEX = -100
#: The relation scorer rounds the most dependents of one head up to a multiple of this (and its number of
#: distinct heads with :func:`subprobe.device.quantised_rows`): oneDNN compiles a bf16 matmul kernel for every
#: new shape (15-30 ms for the ``[heads, labels x 257] @ [labels x 257, 257]`` backward), and these counts
#: change with every batch.
DEPENDENT_QUANTUM = 8


@dataclass
class BiaffineOutput:
    """What :meth:`BiaffineHead.forward` computes.

    ``arc_scores``: ``[B, 1+W (dependent), 1+W (head)]``, padding heads and self-loops set to a
    large negative value. ``rel_dep``/``rel_head``: relation MLP states ``[B, 1+W, label_dim]``.
    """

    arc_scores: torch.Tensor
    rel_dep: torch.Tensor
    rel_head: torch.Tensor


def _mlp(d_in: int, d_out: int, activation: str, dropout: float) -> nn.Sequential:
    if activation == "relu":
        act: nn.Module = nn.ReLU()
    elif activation == "leaky_relu":
        act = nn.LeakyReLU(0.1)
    else:
        raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {activation!r}")
    return nn.Sequential(nn.Linear(d_in, d_out), act, nn.Dropout(dropout))


def _append_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_ones(x.shape[:-1] + (1,))], dim=-1)


def _rank_within_groups(group: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """For each element, its rank (0, 1, ...) among the elements of its group, in order of position;
    ``counts[g]`` is the size of group ``g``."""
    order = torch.argsort(group, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.numel(), device=group.device) - starts[group[order]]
    return rank


def _run_mlp(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)`` with each Linear's weights cast to ``x``'s dtype (no-op casts for fp32 inputs)."""
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else layer.bias.to(x.dtype)
            x = F.linear(x, layer.weight.to(x.dtype), bias)
        else:
            x = layer(x)
    return x


class BiaffineHead(nn.Module):
    """Dozat & Manning biaffine parser head: arc scores over heads and relation scores.

    Args:
        d_in: feature size.
        n_labels: number of dependency relations.
        arc_dim: arc MLP size (paper: 1024).
        label_dim: relation MLP size (paper: 256).
        dropout: dropout after each MLP (paper: 0.33).
        activation: ``"relu"`` (paper's code) or ``"leaky_relu"`` (Dozat & Manning).
        compute_dtype: dtype of the training matmuls (``torch.bfloat16`` or ``"bf16"``: bf16 with fp32
            parameters and loss); ``None``: the parameters' (fp32).
    """

    def __init__(
        self,
        d_in: int,
        n_labels: int,
        arc_dim: int = 1024,
        label_dim: int = 256,
        dropout: float = 0.33,
        activation: str = "relu",
        compute_dtype: torch.dtype | str | None = None,
    ) -> None:
        super().__init__()
        if compute_dtype == "bf16":
            compute_dtype = torch.bfloat16
        elif compute_dtype in ("fp32", torch.float32):
            compute_dtype = None
        if compute_dtype not in (None, torch.bfloat16):
            raise ValueError(f"compute_dtype must be None, fp32 or bf16, got {compute_dtype!r}")
        self.compute_dtype: torch.dtype | None = compute_dtype
        if n_labels < 1:
            raise ValueError(f"n_labels must be >= 1, got {n_labels}")
        self.d_in = d_in
        self.n_labels = n_labels
        self.arc_dep = _mlp(d_in, arc_dim, activation, dropout)
        self.arc_head = _mlp(d_in, arc_dim, activation, dropout)
        self.rel_dep = _mlp(d_in, label_dim, activation, dropout)
        self.rel_head = _mlp(d_in, label_dim, activation, dropout)
        # s[i, j] = [d_i; 1]^T U h_j: the last row of U is the head-side prior u (u^T h_j).
        self.arc_weight = nn.Parameter(torch.zeros(arc_dim + 1, arc_dim))
        # s[i, l] = [d'_i; 1]^T W_l [h'_head(i); 1]
        self.rel_weight = nn.Parameter(torch.zeros(n_labels, label_dim + 1, label_dim + 1))

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters of the head."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, features: torch.Tensor, word_mask: torch.Tensor) -> BiaffineOutput:
        """Score every (dependent, head) pair and compute the relation MLP states."""
        if features.dim() != 3 or word_mask.shape != features.shape[:2]:
            raise ValueError(
                f"expected features [B, 1+W, d] and word_mask [B, 1+W], got "
                f"{tuple(features.shape)} and {tuple(word_mask.shape)}"
            )
        if self.compute_dtype is not None and self.training:
            features = features.to(self.compute_dtype)
        dep = _append_ones(_run_mlp(self.arc_dep, features))  # [B, T, a+1]
        head = _run_mlp(self.arc_head, features)  # [B, T, a]
        arc = torch.matmul(torch.matmul(dep, self.arc_weight.to(dep.dtype)), head.transpose(1, 2))  # [B,T,T]
        valid_head = word_mask.clone()
        valid_head[:, 0] = True  # ROOT is a valid head
        invalid = ~valid_head[:, None, :] | torch.eye(arc.shape[1], dtype=torch.bool, device=arc.device)[None]
        arc = arc.masked_fill(invalid, torch.finfo(arc.dtype).min)
        rel_dep, rel_head = _run_mlp(self.rel_dep, features), _run_mlp(self.rel_head, features)
        return BiaffineOutput(arc_scores=arc, rel_dep=rel_dep, rel_head=rel_head)

    def label_scores(self, out: BiaffineOutput, heads: torch.Tensor) -> torch.Tensor:
        """Relation scores ``[B, 1+W, n_labels]`` of each dependent given its head index.

        ``heads`` is ``[B, 1+W]``; negative entries (-100 on padding / position 0) are read as
        head 0 and their scores are meaningless.
        """
        return self.label_scores_for(out, [heads])[0]

    def label_scores_for(self, out: BiaffineOutput, head_sets: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`label_scores` for several head assignments, sharing the dependent-side product."""
        dep = _append_ones(out.rel_dep)  # [B, T, k+1]
        head_all = _append_ones(out.rel_head)
        b, t, k1 = dep.shape
        # One GEMM (dep @ W_l for all l) then a batched dot with the head state. F.bilinear
        # computes the same but its CPU backward is ~50x slower.
        weight = self.rel_weight.to(dep.dtype).permute(1, 0, 2).reshape(k1, self.n_labels * k1)
        dep_w = (dep.reshape(b * t, k1) @ weight).view(b * t, self.n_labels, k1)
        scores = []
        for heads in head_sets:
            idx = heads.clamp(min=0).unsqueeze(-1).expand(-1, -1, k1)
            head = torch.gather(head_all, 1, idx)  # [B, T, k+1]: state of each word's head
            scores.append(torch.bmm(dep_w, head.reshape(b * t, k1, 1)).view(b, t, self.n_labels))
        return scores

    def loss(
        self,
        out: BiaffineOutput,
        heads: torch.Tensor,
        rels: torch.Tensor,
        word_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Arc cross-entropy + relation cross-entropy (relations from gold heads).

        Each term is averaged over real words (``word_mask``); gold entries of -100 are ignored. The
        relation scores are computed for those words only; the cross entropies run in fp32.
        """
        arc_ok = word_mask & (heads != IGNORE_INDEX)
        rel_ok = word_mask & (rels != IGNORE_INDEX) & (heads != IGNORE_INDEX)
        arc_logits = out.arc_scores[arc_ok].float()
        arc_loss = F.cross_entropy(arc_logits, heads[arc_ok], reduction="sum")
        arc_loss = arc_loss / arc_ok.sum().clamp(min=1)
        rel_logits = self._word_label_scores(out, heads, rel_ok).float()
        rel_loss = F.cross_entropy(rel_logits, rels[rel_ok], reduction="sum")
        rel_loss = rel_loss / rel_ok.sum().clamp(min=1)
        return arc_loss + rel_loss

    def word_nll(
        self,
        out: BiaffineOutput,
        heads: torch.Tensor,
        rels: torch.Tensor,
        word_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Per word ``-log p(gold head) - log p(gold relation | gold head)`` in nats, ``[B, 1+W]`` (0 outside
        words; a word whose gold entry is -100 contributes nothing for it): the two terms of :meth:`loss`, per word
        and not averaged (MDL's codelength)."""
        arc_ok = word_mask & (heads != IGNORE_INDEX)
        rel_ok = arc_ok & (rels != IGNORE_INDEX)
        nll = torch.zeros(word_mask.shape, dtype=torch.float32, device=word_mask.device)
        nll[arc_ok] = F.cross_entropy(out.arc_scores[arc_ok].float(), heads[arc_ok], reduction="none")
        if rel_ok.any():
            rel_logits = self._word_label_scores(out, heads, rel_ok).float()
            nll[rel_ok] += F.cross_entropy(rel_logits, rels[rel_ok], reduction="none")
        return nll

    def _word_label_scores(self, out: BiaffineOutput, heads: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Relation scores ``[N, n_labels]`` of the N positions where ``words`` is True, given ``heads``:
        :meth:`label_scores` ``[words]``, computed for those rows only.

        ``s[i, l] = d_i^T (W_l h)`` with ``W_l h`` computed once per distinct head ``h`` (a word heads
        several words or none), so the big product has one row per head rather than one per word:
        about half the FLOPs of :meth:`label_scores`, same values up to rounding. The dependents of each
        head are then scored in one batched product (head x its dependents), whose backward writes the
        gradient of ``W_l h`` directly instead of scattering one copy per word. Row counts are rounded up
        (:func:`subprobe.device.quantised_rows`) so that a run meets few matmul shapes."""
        batch_idx, _ = words.nonzero(as_tuple=True)
        b, t, k = out.rel_head.shape
        keys = batch_idx * t + heads[words].clamp(min=0)
        heads_at, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
        n_heads = heads_at.numel()
        rows = quantised_rows(n_heads)
        head = _append_ones(out.rel_head.reshape(b * t, k).index_select(0, heads_at))  # [H, k+1]
        head = F.pad(head, (0, 0, 0, rows - n_heads))  # zero rows: never read
        dep = _append_ones(out.rel_dep[words])  # [N, k+1]
        n, k1 = dep.shape
        # (head @ W.view(L * (k+1), k+1)^T)[h, l * (k+1) + a] = (W_l h)[a]; the transpose is a view
        weight = self.rel_weight.to(dep.dtype).view(self.n_labels * k1, k1)
        head_w = (head @ weight.t()).view(rows, self.n_labels, k1)  # [H', L, k+1]
        slot = _rank_within_groups(inverse, counts)  # word i is dependent number slot[i] of its head
        width = quantised_rows(int(counts.max()), DEPENDENT_QUANTUM)
        grouped = dep.new_zeros(rows, width, k1).index_put((inverse, slot), dep)  # [H', C, k+1]
        scores = torch.bmm(head_w, grouped.transpose(1, 2))  # [H', L, C]
        return scores[inverse, :, slot]  # [N, L]

    @torch.no_grad()
    def decode_heads(self, out: BiaffineOutput, word_mask: torch.Tensor, method: str = "mst") -> torch.Tensor:
        """Predicted heads ``[B, 1+W]`` with -100 at position 0 and padding.

        ``method="argmax"``: each word takes its best-scoring head (the paper; may not be a
        tree). ``method="mst"``: the best tree with exactly one word attached to ROOT
        (Chu-Liu-Edmonds on log-softmax scores). Real words must be contiguous at positions ``1..n``.
        """
        arc = out.arc_scores
        if method == "argmax":
            pred = arc.argmax(dim=-1)
        elif method == "mst":
            logp = torch.log_softmax(arc.float(), dim=-1).cpu().numpy()
            lengths = word_mask.sum(dim=1).tolist()
            rows = np.zeros(arc.shape[:2], dtype=np.int64)
            for b, n in enumerate(lengths):
                rows[b, : n + 1] = mst_decode(logp[b], n)
            pred = torch.from_numpy(rows).to(arc.device)
        else:
            raise ValueError(f"decode method must be 'mst' or 'argmax', got {method!r}")
        return pred.masked_fill(~word_mask, IGNORE_INDEX)

    @torch.no_grad()
    def decode(
        self, out: BiaffineOutput, word_mask: torch.Tensor, method: str = "mst"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted heads (:meth:`decode_heads`) and the relations predicted from them, each ``[B, 1+W]``."""
        pred = self.decode_heads(out, word_mask, method)
        rels = self.label_scores(out, pred).argmax(dim=-1)
        return pred, rels.masked_fill(~word_mask, IGNORE_INDEX)
