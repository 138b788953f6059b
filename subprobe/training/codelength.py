"""MDL's block code: after training on a prefix, the bits the probe needs to transmit the next block's labels."""

from __future__ import annotations

from subprobe.data.pipeline import NEXT_BLOCK
from subprobe.training.evaluate import codelengths


def code_block(cfg, task, built, splits: dict, vocabs, pad_id: int) -> dict:
    """``metrics.json``'s ``codelength`` of an MDL block run (``cfg.max_train_samples`` training sentences, the
    next block in ``splits[NEXT_BLOCK]``): the block's span, sentences (over-long ones dropped and counted, in
    neither code), words, ``bits`` under the trained probe (the hard mask of a subnetwork, as its scores) and under
    the uniform code, and the same counts and uniform code of the training prefix (the online code's first block
    when the prefix is the first one; :func:`subprobe.metrics.online_code.assemble`)."""
    block, prefix = splits[NEXT_BLOCK], splits["train"]
    bits = codelengths(built.model, task, block, pooling=cfg.word_pooling, pad_id=pad_id,
                       mask_mode="hard" if built.masked else None)
    return {
        "block": [cfg.max_train_samples, cfg.mdl_block_end],
        "code": task.code,
        "labels": len(vocabs[task.field]),
        "mask": "hard" if built.masked else None,
        "sentences": len(block.encoded),
        "dropped_long": block.dropped,
        "words": block.n_words,
        "bits": float(sum(bits.values())),
        "uniform_bits": float(task.uniform_bits(block, vocabs)),
        "prefix": {"sentences": len(prefix.encoded), "dropped_long": prefix.dropped, "words": prefix.n_words,
                   "uniform_bits": float(task.uniform_bits(prefix, vocabs))},
    }
