"""The model a probe trains: encoder features -> optional adapter -> task head."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from subprobe.data.batching import Batch, pool_words
from subprobe.device import quantised_rows
from subprobe.models.attention import use_fast_eager
from subprobe.models.dropout import FastDropout, use_fast_dropout


class EncoderFeatures(nn.Module):
    """Word representations from a (possibly masked) encoder's last layer.

    With ``fast_kernels`` (default) the encoder's dropout layers draw their random numbers cheaply
    (:mod:`subprobe.models.dropout`) and eager attention becomes ``subprobe_eager``
    (:mod:`subprobe.models.attention`): the same computation, faster on the CPU.
    """

    def __init__(
        self, encoder: nn.Module, pooling: str, autocast_bf16: bool = False, fast_kernels: bool = True
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.autocast_bf16 = autocast_bf16
        if fast_kernels:
            use_fast_dropout(encoder)
            use_fast_eager(encoder)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.pooled(self.hidden(batch.input_ids, batch.attention_mask), batch)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states ``[B, T, d]`` (packed training runs several runs' batches at once)."""
        with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def pooled(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Word features ``[B, 1+W, d]`` (float32) of ``batch`` from its hidden states."""
        return pool_words(hidden, batch, self.pooling).float()


#: Dropout on the encoder's word features before the adapter and head of every probe (the paper's code:
#: ``Dropout(0.1)`` on BERT's output, then MLP-1 if any, then the task head).
FEATURE_DROPOUT = 0.1


class ProbeModel(nn.Module):
    """``head(adapter(dropout(features(batch))))``, with :data:`FEATURE_DROPOUT` as the paper's code.

    ``train_bf16``: in training, the adapter and head run under bf16 autocast (their matmuls in bf16; the
    parameters, their gradients and the loss stay fp32); evaluation stays fp32. Runs at ``--precision bf16``
    whose probe is these layers alone (MLP-1, linear) use it.

    A head with ``per_word = True`` (and any adapter, which is position-wise) runs on the real words only:
    their features ``[N, d]`` (read directly from a cache that has ``words(batch)``), the feature dropout,
    zero rows up to :func:`subprobe.device.quantised_rows` when the matmuls run in bf16, adapter and head.
    The other slots of its ``[B, 1+W, ...]`` output are zeros, which no loss, metric or prediction reads.
    """

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        adapter: nn.Module | None = None,
        fast_kernels: bool = True,
        feature_dropout: float = FEATURE_DROPOUT,
        train_bf16: bool = False,
    ) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(feature_dropout)
        self.adapter = adapter
        self.head = head
        self.train_bf16 = train_bf16
        if fast_kernels:  # the feature, head and adapter dropout too (see EncoderFeatures)
            self.dropout = FastDropout(feature_dropout)
            for module in (head, adapter):
                if module is not None:
                    use_fast_dropout(module)

    def forward(self, batch: Batch):
        return self.head_output(self.inputs(batch), batch)

    @property
    def per_word(self) -> bool:
        return bool(getattr(self.head, "per_word", False))

    def inputs(self, batch: Batch) -> torch.Tensor:
        """What :meth:`head_output` takes: the real words' features ``[N, d]`` for a per-word head (read directly
        from a cache that has ``words(batch)``), else the word features ``[B, 1+W, d]``."""
        if not self.per_word:
            return self.features(batch)
        read_words = getattr(self.features, "words", None)  # a cache reads the words' rows directly
        return read_words(batch) if read_words is not None else self.features(batch)[batch.word_mask]

    def inputs_from_features(self, features: torch.Tensor, batch: Batch) -> torch.Tensor:
        """:meth:`inputs` from word features ``[B, 1+W, d]`` computed elsewhere (a packed encoder pass)."""
        return features[batch.word_mask] if self.per_word else features

    def head_output(self, x: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The feature dropout, the adapter and the head on :meth:`inputs` ``x``."""
        if self.per_word:
            return self._per_word(x, batch)
        x = self.dropout(x)
        with self._autocast(x):
            if self.adapter is not None:
                x = self.adapter(x)
            return self.head(x, batch.word_mask)

    def _bf16_matmuls(self) -> bool:
        return self.train_bf16 and self.training

    def _autocast(self, x: torch.Tensor) -> torch.autocast:
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._bf16_matmuls())

    def _per_word(self, words: torch.Tensor, batch: Batch) -> torch.Tensor:
        mask = batch.word_mask
        n = words.shape[0]
        words = self.dropout(words)
        if self._bf16_matmuls():  # zero rows: few bf16 matmul shapes to compile
            words = F.pad(words, (0, 0, 0, quantised_rows(n) - n))
        with self._autocast(words):
            if self.adapter is not None:
                words = self.adapter(words)
            scores = self.head(words, mask)[:n].float()
        out = scores.new_zeros(mask.shape + scores.shape[1:])
        out[mask] = scores
        return out


@dataclass
class BuiltProbe:
    """A probe ready to train: its model, optimiser groups, penalty and complexity."""

    model: ProbeModel
    param_groups: list[dict]
    penalty: Callable[[], torch.Tensor] | None = None
    masked: list = field(default_factory=list)
    #: complexity: number of probe parameters and the bits bounds
    probe_params: int = 0
    bits_per_param: tuple[float, float] = (1.0, 1.0)
    #: subnetwork probes: which block projections are masked (see subprobe.models.targets.Discovery)
    coverage: dict | None = None
    #: subnetwork probes: matrices whose block is not the one the granularity asked for (``metrics.json``'s
    #: ``granularity_fallbacks``, see subprobe.masking.layouts.BlockChoice)
    granularity_fallbacks: list[dict] | None = None
    #: --target-density: the Lagrangian (its multipliers are trained by ascent) and the target density p;
    #: ``penalty`` then returns the density s (hard in value, expected in gradient; see subprobe.masking.constraint)
    constraint: nn.Module | None = None
    target_density: float | None = None

    def bits(self) -> dict[str, float]:
        low, high = self.bits_per_param
        return {"lower": self.probe_params * low, "upper": self.probe_params * high}
