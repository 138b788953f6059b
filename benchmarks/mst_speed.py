"""Time the single-rooted MST decoder (Chu-Liu-Edmonds) on random score matrices.

    python -m benchmarks.mst_speed [--words 60] [--sentences 200]

Prints milliseconds per sentence. A timing, not a test: tests/test_metrics_mst.py checks correctness
only, so a busy machine cannot fail it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from subprobe.metrics.mst import mst_decode


def time_mst(words: int, sentences: int, seed: int = 0) -> float:
    """Mean seconds per :func:`mst_decode` call on ``sentences`` random (words+1)^2 score matrices."""
    rng = np.random.default_rng(seed)
    mats = [rng.normal(size=(words + 1, words + 1)) for _ in range(sentences)]
    start = time.perf_counter()
    for m in mats:
        mst_decode(m, words)
    return (time.perf_counter() - start) / sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--sentences", type=int, default=200)
    args = parser.parse_args(argv)
    per = time_mst(args.words, args.sentences)
    print(f"mst_decode: {args.words} words, {args.sentences} sentences: {per * 1000:.2f} ms per sentence")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
