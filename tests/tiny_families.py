"""Tiny random models of every supported family, built offline from configs, with a tokenizer each:
WordPiece for the encoders, byte-level BPE (trained on the fly with ``tokenizers``) for the decoders."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CONLLU, WORDS, build_tiny_model

H, L, NH, FF = 32, 2, 4, 64
_ENC = dict(hidden_size=H, num_hidden_layers=L, num_attention_heads=NH, intermediate_size=FF)
_DEC = dict(hidden_size=H, num_hidden_layers=L, num_attention_heads=NH, intermediate_size=FF, num_key_value_heads=2)

#: model_type -> (config kwargs, tokenizer kind: "wordpiece" | "bpe" | "bpe+bos")
FAMILIES: dict[str, tuple[dict, str]] = {
    "bert": (_ENC, "wordpiece"),
    "roberta": (_ENC, "wordpiece"),
    "xlm-roberta": (_ENC, "wordpiece"),
    "electra": ({**_ENC, "embedding_size": 16}, "wordpiece"),
    "camembert": (_ENC, "wordpiece"),
    "distilbert": (dict(dim=H, n_layers=L, n_heads=NH, hidden_dim=FF), "wordpiece"),
    "deberta-v2": (
        {**_ENC, "relative_attention": True, "pos_att_type": ["p2c", "c2p"], "share_att_key": False,
         "max_relative_positions": 16, "position_buckets": 8},
        "wordpiece",
    ),
    "modernbert": ({**_ENC, "global_attn_every_n_layers": 1, "cls_token_id": 2, "sep_token_id": 3}, "wordpiece"),
    "gpt2": (dict(n_embd=H, n_layer=L, n_head=NH, n_inner=FF), "bpe"),
    "gpt_neox": ({**_ENC, "rotary_pct": 0.5}, "bpe"),
    "opt": (dict(hidden_size=H, num_hidden_layers=L, num_attention_heads=NH, ffn_dim=FF, word_embed_proj_dim=H),
            "bpe+bos"),
    "llama": (_DEC, "bpe+bos"),
    "mistral": (_DEC, "bpe+bos"),
    "qwen2": (_DEC, "bpe"),
    "gemma": ({**_DEC, "head_dim": H // NH}, "bpe+bos"),
    "phi3": (_DEC, "bpe+bos"),
}


def corpus() -> list[str]:
    words = [line.split("\t")[1] for line in CONLLU.splitlines() if line and not line.startswith("#")]
    return [" ".join(WORDS), " ".join(words), " ".join(w.capitalize() for w in WORDS)] * 4


def build_bpe_tokenizer(path: Path, with_bos: bool) -> int:
    """A byte-level BPE tokenizer (GPT-2 style, optionally adding a BOS token) saved to ``path``; its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<pad>", "<s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    if with_bos:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>" if with_bos else "<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<pad>",
        model_max_length=64,
    )
    fast.save_pretrained(path)
    return len(fast)


def build_family(path: Path, model_type: str, **overrides) -> Path:
    """Save a tiny random ``model_type`` model and its tokenizer to ``path`` (``overrides``: config values)."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModel

    kwargs, kind = FAMILIES[model_type]
    kwargs = {**kwargs, **overrides}
    if kind == "wordpiece":
        build_tiny_model(path, family="bert")  # writes the word-piece tokenizer (and a BERT we overwrite)
        for leftover in ("model.safetensors", "config.json"):
            (path / leftover).unlink(missing_ok=True)
        vocab = len((path / "vocab.txt").read_text().splitlines())
        ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)
    else:
        path.mkdir(parents=True, exist_ok=True)
        vocab = build_bpe_tokenizer(path, with_bos=kind == "bpe+bos")
        ids = dict(pad_token_id=1, bos_token_id=2 if kind == "bpe+bos" else 0, eos_token_id=0)
    config = CONFIG_MAPPING[model_type](vocab_size=vocab, max_position_embeddings=64, **ids, **kwargs)
    torch.manual_seed(0)
    model = AutoModel.from_config(config)
    with torch.no_grad():  # every bias non-zero, so that slicing mistakes in biases show
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(path)
    return path
