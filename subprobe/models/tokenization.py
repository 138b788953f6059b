"""Tokenising pre-split words the way a model saw running text, and the ROOT slot of decoders.

* Byte-level BPE (GPT-2, RoBERTa, GPT-NeoX, OPT, Llama 3, ...) marks a word that follows a space
  with a leading ``Ġ``; pre-split words are tokenised one by one, so without ``add_prefix_space``
  every word would be tokenised as if it started the text (``dog`` instead of ``Ġdog``).
  :func:`prefix_space_for_words` switches it on in the tokenizer's ByteLevel pre-tokenizer.
* Word slot 0 is the state at subword position 0: [CLS] for BERT-likes, and the ROOT of dependency
  parsing. A decoder tokenizer that adds no leading special token (GPT-2, GPT-NeoX, Qwen2) gets
  its BOS token (else EOS, which GPT-2-style models use as the document separator) prepended to
  every sentence, so that slot 0 is the BOS state -- TransformerLens's ``prepend_bos`` default --
  and no word's state is used for ROOT.
"""

from __future__ import annotations

import json

CAUSAL_MODEL_TYPES = ("gpt2", "gpt_neox", "opt", "llama", "mistral", "qwen2", "gemma", "phi3", "gpt_neo", "gptj")


def prefix_space_for_words(tokenizer) -> bool:
    """Give a byte-level BPE tokenizer ``add_prefix_space=True``; True if it was changed."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    state = json.loads(backend.to_str())
    if not _set_prefix_space(state.get("pre_tokenizer")):
        return False
    from tokenizers import Tokenizer

    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(state))
    if hasattr(tokenizer, "add_prefix_space"):
        tokenizer.add_prefix_space = True
    return True


def _set_prefix_space(node) -> bool:
    if not isinstance(node, dict):
        return False
    if node.get("type") == "ByteLevel" and not node.get("add_prefix_space", False):
        node["add_prefix_space"] = True
        return True
    if node.get("type") == "Sequence":
        return any([_set_prefix_space(child) for child in node.get("pretokenizers", [])])
    return False


def adds_leading_special(tokenizer) -> bool:
    """Whether the tokenizer puts a special token ([CLS], <s>, ...) before the first word."""
    word_ids = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True).word_ids(0)
    return bool(word_ids) and word_ids[0] is None


def root_prefix_id(tokenizer) -> int | None:
    """The token to prepend so that slot 0 is not a word (None when the tokenizer adds one itself
    or has neither a BOS nor an EOS token)."""
    if adds_leading_special(tokenizer):
        return None
    for attr in ("bos_token_id", "eos_token_id", "cls_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return None


def is_causal(config) -> bool:
    """A decoder (left-to-right) language model: only a word's last subword has seen the whole word."""
    if getattr(config, "model_type", "") in CAUSAL_MODEL_TYPES or getattr(config, "is_decoder", False):
        return True
    return any("CausalLM" in a for a in (getattr(config, "architectures", None) or []))
