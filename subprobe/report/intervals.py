"""How the report writes a number with its uncertainty (one format for every table).

* several runs (seeds) of one cell: ``mean ± sd [lo, hi]``, the sample standard deviation over the runs and the
  Student-t 95% interval of their mean (:func:`subprobe.metrics.bootstrap.seed_interval`), clipped to [0, 1]
  (every value here is a fraction; with 2 or 3 seeds the t multiplier is 12.7 or 4.3);
* one run: ``value [lo, hi]``, the run's paired bootstrap 95% interval over sentences (``metrics.json``'s
  ``<split>_ci``), or the bare value when the run has none (older runs);
* no run: "–".
"""

from __future__ import annotations

from collections.abc import Sequence

from subprobe.metrics.bootstrap import seed_interval

DASH = "–"

#: The table note that says what the brackets are.
NOTE = ("Brackets: 95% intervals. A cell of several runs (seeds) is mean ± standard deviation [Student-t interval of "
        "the mean over seeds, clipped to [0, 100]]; a cell of one run is its value [paired bootstrap interval over "
        "the split's sentences, 1,000 resamples].")


def cell(values: Sequence[float], intervals: Sequence[Sequence[float] | None] = (), scale: float = 100.0,
         digits: int = 2, count: bool = False, clip: bool = True) -> str:
    """``values`` (fractions) as a cell (see the module docstring); ``intervals``: each run's bootstrap interval
    (used when there is one run); ``count``: add ``(n=...)`` for several runs; ``clip=False`` for values that are
    not fractions (bits, ratios): the t interval is not clipped to [0, 1]."""
    if not values:
        return DASH
    spread = seed_interval(values)
    mean = f"{spread['mean'] * scale:.{digits}f}"
    if spread["n"] > 1:
        lo, hi = (max(spread["lo"], 0.0), min(spread["hi"], 1.0)) if clip else (spread["lo"], spread["hi"])
        text = f"{mean} ± {spread['sd'] * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"
        return text + (f" (n={spread['n']})" if count else "")
    ci = intervals[0] if intervals else None
    if ci is None:
        return mean
    return f"{mean} [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def run_interval(result: dict, key: str, metric: str) -> list[float] | None:
    """The bootstrap interval of ``metric`` in ``result[key + "_ci"]`` (``key``: ``dev``, ``dev_soft``, ...)."""
    value = (result.get(f"{key}_ci") or {}).get(metric)
    return list(value) if value else None
