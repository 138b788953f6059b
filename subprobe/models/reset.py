"""Random-model controls: re-initialise the encoder blocks (and the embeddings), seeded."""

from __future__ import annotations

import re

import torch
from torch import nn

from subprobe.errors import ConfigError

SETTINGS = ("pretrained", "reset-encoder", "reset-all")
INITS = ("torch-default", "model")
#: Module names inside a transformer block (BERT ``layer.3``, Llama ``layers.3``, GPT-2 ``h.3``).
BLOCK_PATTERN = re.compile(r"(^|\.)(layer|layers|h|block|blocks)\.\d+(\.|$)")


def _is_block(name: str) -> bool:
    return bool(BLOCK_PATTERN.search(name))


def reset_modules(model: nn.Module, setting: str) -> list[tuple[str, nn.Module]]:
    """The modules a setting re-initialises (leaf modules with parameters)."""
    if setting not in SETTINGS:
        raise ConfigError(f"--setting {setting!r} is not known; use one of {', '.join(SETTINGS)}")
    if setting == "pretrained":
        return []
    chosen = []
    for name, module in model.named_modules():
        if not list(module.parameters(recurse=False)):
            continue
        if setting == "reset-all" or _is_block(name):
            chosen.append((name, module))
    return chosen


def apply_setting(model: nn.Module, setting: str, init: str = "torch-default", seed: int = 0) -> int:
    """Re-initialise ``model`` in place for ``setting``; returns the number of parameters reset.

    ``torch-default`` (what the paper's code did): each module's ``reset_parameters()``, so
    Linear gets Kaiming-uniform, LayerNorm ones/zeros and Embedding N(0, 1).
    ``model``: the model's own initialiser (``_init_weights``, e.g. N(0, ``initializer_range``) for
    BERT). Transformers 5 initialisers skip every tensor flagged ``_is_hf_initialized``, which
    ``from_pretrained`` sets on every loaded weight; the flags of the chosen modules are cleared
    first, so the draw really replaces the loaded values.
    The draw is seeded by ``seed`` and leaves the global random state untouched.
    """
    if init not in INITS:
        raise ConfigError(f"--init {init!r} is not known; use one of {', '.join(INITS)}")
    modules = reset_modules(model, setting)
    count = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            for _name, module in modules:
                if init == "model" and hasattr(model, "_init_weights"):
                    _clear_initialised_flags(module)
                    model._init_weights(module)
                elif hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                else:
                    raise ConfigError(
                        f"--init torch-default: module {_name} ({type(module).__name__}) has no default "
                        "initialiser; use --init model"
                    )
                count += sum(p.numel() for p in module.parameters(recurse=False))
    return count


def _clear_initialised_flags(module: nn.Module) -> None:
    """Drop transformers' ``_is_hf_initialized`` marks from ``module`` and its own tensors."""
    tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
    for tensor in [module, *tensors]:
        if hasattr(tensor, "_is_hf_initialized"):
            delattr(tensor, "_is_hf_initialized")
