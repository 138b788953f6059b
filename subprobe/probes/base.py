"""The model a probe trains: encoder features -> optional adapter -> task head."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from subprobe.data.batching import Batch, pool_words
from subprobe.models.attention import use_fast_eager
from subprobe.models.dropout import use_fast_dropout


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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast_bf16):
            hidden = self.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return pool_words(hidden, batch, self.pooling).float()


class ProbeModel(nn.Module):
    """``head(adapter(features(batch)))``."""

    def __init__(
        self, features: nn.Module, head: nn.Module, adapter: nn.Module | None = None, fast_kernels: bool = True
    ) -> None:
        super().__init__()
        self.features = features
        self.adapter = adapter
        self.head = head
        if fast_kernels:  # the head's and adapter's dropout too (see EncoderFeatures)
            use_fast_dropout(head)
            if adapter is not None:
                use_fast_dropout(adapter)

    def forward(self, batch: Batch):
        x = self.features(batch)
        if self.adapter is not None:
            x = self.adapter(x)
        return self.head(x, batch.word_mask)


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

    def bits(self) -> dict[str, float]:
        low, high = self.bits_per_param
        return {"lower": self.probe_params * low, "upper": self.probe_params * high}
