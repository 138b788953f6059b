"""Figures as PNG and SVG (matplotlib with the Agg backend, imported only when a figure is drawn)."""

from __future__ import annotations

import math
from pathlib import Path

from subprobe.atomic import atomic_path
from subprobe.report.pareto import curves
from subprobe.report.tables import metric_title

FORMATS = ("png", "svg")
SETTING_COLOURS = {"pretrained": "#1f77b4", "reset-encoder": "#ff7f0e", "reset-all": "#7f7f7f"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight",
                        metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _steps(front: list[dict], x_max: float) -> tuple[list[float], list[float]]:
    """The frontier step function as a polyline from its first point to ``x_max``."""
    xs, ys = [], []
    for i, p in enumerate(front):
        x = math.log(p["bits"])
        if i:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(p["accuracy"] * 100)
    if xs and x_max > xs[-1]:
        xs.append(x_max)
        ys.append(ys[-1])
    return xs, ys


def pareto_plot(entry: dict, stem: Path) -> list[Path]:
    """Accuracy against ln(bits): subnetwork points and MLP-1 at 1 and 32 bits per parameter, frontiers in bold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sub, lower, upper = curves()
    styles = {
        sub: dict(color="#d62728", marker="o", label="subnetwork (1 bit / mask)"),
        lower: dict(color="#1f77b4", marker="s", label="MLP-1, 1 bit / param (lower bound)"),
        upper: dict(color="#17becf", marker="^", label="MLP-1, 32 bits / param (upper bound)"),
    }
    all_x = [p["ln_bits"] for pts in entry["points"].values() for p in pts]
    x_max = max(all_x) if all_x else 1.0
    for curve, style in styles.items():
        pts = entry["points"].get(curve) or []
        if not pts:
            continue
        xs = [p["ln_bits"] for p in pts]
        ys = [p["accuracy"] * 100 for p in pts]
        ax.plot(xs, ys, linestyle=":", linewidth=1, color=style["color"], alpha=0.6)
        ax.scatter(xs, ys, s=28, marker=style["marker"], color=style["color"], label=style["label"], zorder=3)
        fx, fy = _steps(entry["frontier"][curve], x_max)
        ax.plot(fx, fy, color=style["color"], linewidth=2.4, alpha=0.85, zorder=2)
        if curve == sub:
            for p in pts:
                ax.annotate(p["label"].replace("paper-", "p"), (p["ln_bits"], p["accuracy"] * 100), fontsize=6,
                            textcoords="offset points", xytext=(3, -8), color=style["color"])
    ax.set_xlabel("complexity, ln(bits)")
    metric = metric_title(entry["task"])
    ax.set_ylabel(f"{entry['split']} {metric} (%)")
    ax.set_title(f"{entry['task']}: accuracy vs complexity ({Path(entry['model']).name})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, stem)


def layer_bars(task: str, by_setting: dict[str, list[float | None]], stem: Path,
               what: str = "kept weights per layer", ylabel: str = "weights kept (%)") -> list[Path]:
    """Per-layer fractions in %, one bar group per layer, settings side by side.

    ``by_setting`` maps a legend label (starting with the setting's name) to the per-layer fractions;
    ``what`` and ``ylabel`` name the statistic (default: the fraction of weights kept).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    settings = list(by_setting)
    n_layers = max((len(v) for v in by_setting.values()), default=0)
    width = 0.8 / max(1, len(settings))
    for i, setting in enumerate(settings):
        vals = [(v or 0.0) * 100 for v in by_setting[setting]]
        xs = [layer - 0.4 + width * (i + 0.5) for layer in range(len(vals))]
        ax.bar(xs, vals, width=width, label=setting, color=SETTING_COLOURS.get(setting.split(" ")[0]))
    ax.set_xticks(range(n_layers))
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{task}: {what}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    top = max((x or 0.0) * 100 for v in by_setting.values() for x in v) if n_layers else 1.0
    ax.set_ylim(0, top * 1.25 + 1e-9)  # headroom so the legend never covers a bar
    ax.legend(fontsize=7, loc="upper center", ncol=max(1, len(settings)), frameon=False)
    return _save(fig, stem)


def heatmap(values: list[list[float | None]], row_labels: list, col_labels: list, title: str, xlabel: str,
            stem: Path) -> list[Path]:
    """A rows x columns heatmap of fractions kept, in %, annotated when small enough to read."""
    plt = _pyplot()
    import numpy as np

    data = np.array([[np.nan if v is None else v * 100 for v in row] for row in values], dtype=float)
    rows, cols = data.shape if data.size else (0, 0)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.45 * cols + 2), max(2.5, 0.35 * rows + 1.5)))
    image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=100, origin="lower")
    ax.set_xticks(range(cols))
    ax.set_xticklabels([str(c) for c in col_labels], fontsize=7, rotation=45 if cols > 8 else 0)
    ax.set_yticks(range(rows))
    ax.set_yticklabels([str(r) for r in row_labels], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    if rows * cols <= 200:
        for r in range(rows):
            for c in range(cols):
                if not np.isnan(data[r, c]):
                    ax.text(c, r, f"{data[r, c]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if data[r, c] < 60 else "black")
    fig.colorbar(image, ax=ax, label="kept (%)")
    return _save(fig, stem)


def density_plot(entry: dict, stem: Path) -> list[Path]:
    """Accuracy against achieved density (log x): one line per line of a :func:`subprobe.report.density`
    entry, error bars of one standard deviation over seeds, each point labelled with its target density."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    for i, line in enumerate(entry["lines"]):
        pts = [p for p in line["points"] if p["density"] is not None and p["density"] > 0]
        if not pts:
            continue
        colour = SETTING_COLOURS.get(line["setting"]) if len(entry["lines"]) > 1 else colours[0]
        colour = colour or colours[i % len(colours)]
        label = ", ".join(x for x in (line["setting"], line["granularity"], line["variant"]) if x)
        xs = [p["density"] for p in pts]
        ys = [p["accuracy"] * 100 for p in pts]
        errs = [(p["std"] or 0.0) * 100 for p in pts]
        ax.errorbar(xs, ys, yerr=errs if any(errs) else None, color=colour, marker="o", markersize=4, linewidth=1.5,
                    capsize=3, label=label)
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(f"p={p['target']:g}", (x, y), fontsize=6, textcoords="offset points", xytext=(3, -9),
                        color=colour)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter

    ticks = sorted({p["target"] for line in entry["lines"] for p in line["points"]})
    ax.xaxis.set_major_locator(FixedLocator(ticks))  # the targets, labelled plainly (not 10^x)
    ax.set_xticklabels([f"{t:g}" for t in ticks], fontsize=7)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("achieved density (fraction of masked weights kept, log scale; ticks at the targets)")
    metric = metric_title(entry["task"])
    ax.set_ylabel(f"{entry['split']} {metric} (%)")
    ax.set_title(f"{entry['task']}: accuracy vs density ({Path(entry['model']).name})", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, stem)


#: A colour per probe family, in the registry's order.
PROBE_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
SETTING_STYLES = {"pretrained": "-", "reset-encoder": ":", "reset-all": "--"}


def _probe_colour(probe: str) -> str:
    from subprobe.probes.registry import PROBE_NAMES

    index = PROBE_NAMES.index(probe) if probe in PROBE_NAMES else len(PROBE_COLOURS)
    return PROBE_COLOURS[index] if index < len(PROBE_COLOURS) else "#7f7f7f"


def mdl_plot(entry: dict, stem: Path) -> list[Path]:
    """Codelength against data (MDL's online code): for every probe and setting of ``entry`` (``task``, ``model``,
    ``points``: :func:`subprobe.report.mdl.mdl_report` entries), the bits per word of each block against the
    training sentences its probe saw (log x; seeds averaged), and the uniform code's bits per word."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    lines: dict[tuple, list[dict]] = {}
    for point in entry["points"]:  # one line per point of the table (its settings but seeds), seeds averaged
        if point["complete"]:
            described = (point["probe"], point["unit"], point["setting"], point["control"])
            lines.setdefault((described, point.get("row")), []).append(point)
    uniform = []
    for ((probe, unit, setting, control), _), points in lines.items():
        coded = [b for b in points[0]["blocks"] if b["coded_with"] == "probe"]
        xs = [b["trained_on"] for b in coded]
        ys = [sum(p["blocks"][i + 1]["bits"] / max(p["blocks"][i + 1]["words"], 1) for p in points) / len(points)
              for i in range(len(coded))]
        label = f"{probe}{' ' + unit if unit else ''}, {setting}{' (control task)' if control else ''}"
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, color=_probe_colour(probe),
                linestyle=SETTING_STYLES.get(setting, "-"), label=label)
        uniform.append(points[0]["uniform_bits"] / max(points[0]["words"], 1))
    if uniform:
        ax.axhline(max(uniform), color="#555555", linewidth=1, linestyle="-.", label="uniform code")
    ax.set_xscale("log")
    ax.set_xlabel("training sentences the block's probe saw (log scale)")
    ax.set_ylabel("codelength of the next block (bits per word)")
    ax.set_title(f"{entry['task']}: codelength vs data, MDL online code ({Path(entry['model']).name})", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right", handlelength=4)  # long enough to show the dashes of reset settings
    return _save(fig, stem)
