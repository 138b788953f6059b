"""``subprobe report RUNS_DIR --out DIR``: a static HTML page (and Markdown) of everything that has run.

The page works from file:// with no server and no network: styles and the one small script are
inline, images are PNG files referenced by relative paths (``figures/...``), and each run links to
its run directory by a relative path. The script only marks images that failed to load (and
records the count on ``<body data-images="loaded/total">``, which the browser test reads).
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from urllib.parse import quote

from subprobe.report import figures, tables
from subprobe.report.loading import load_results
from subprobe.runs import write_text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures figure { margin: 0; max-width: 580px; } figcaption { font-size: 0.8em; color: #555; }
pre { background: #f6f6f6; padding: 0.5em; font-size: 0.8em; overflow-x: auto; max-width: 60em; }
.note { color: #8a5a00; } .broken { outline: 3px solid #c00; } .broken-note { color: #c00; font-weight: bold; }
nav a { margin-right: 1em; }
"""

SCRIPT = """
window.addEventListener('load', function () {
  var images = document.querySelectorAll('img');
  var loaded = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { loaded += 1; return; }
    img.classList.add('broken');
    var note = document.createElement('span');
    note.className = 'broken-note';
    note.textContent = 'image failed to load: ' + img.getAttribute('src');
    img.insertAdjacentElement('afterend', note);
  });
  document.body.setAttribute('data-images', loaded + '/' + images.length);
});
"""

AUC_TITLES = {"lower": "subnetwork vs MLP-1 lower bound", "upper": "subnetwork vs MLP-1 upper bound",
              "all": "all three curves"}
VERDICT_TEXT = {"subnetwork": "subnetwork higher", "mlp": "MLP-1 higher", "tie": "tie",
                "no-subnetwork": "no subnetwork that small"}


def write_report(runs_dir: str | Path, out: str | Path, *, split: str = "dev", num_heads: int | None = None,
                 echo=print) -> Path:
    """Write ``OUT/index.html``, ``OUT/report.md`` and the figures' numbers and plots; returns index.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(runs_dir)
    fig1 = figures.write_figure1(results, out, split)
    fig2 = figures.write_figure2(results, out, split, num_heads)
    models = sorted({str(r.get("model", "")) for r in results})
    model_label = ", ".join(models) or "no runs"
    table_md = {}
    for name, build in (("table1", tables.table1), ("table2", tables.table2)):
        for s in dict.fromkeys((split, "test")):
            md, csv_text = build(results, s, model_label)
            table_md[(name, s)] = md
            write_text(out / f"{name}-{s}.md", md)
            write_text(out / f"{name}-{s}.csv", csv_text)
    page = render_html(results, out, Path(runs_dir), split, table_md, fig1, fig2)
    index = out / "index.html"
    write_text(index, page)
    write_text(out / "report.md", render_markdown(results, out, split, table_md, fig1, fig2))
    echo(f"report of {len(results)} run(s) from {runs_dir}: {index} (open it in a browser) and {out / 'report.md'}")
    return index


# ---------------------------------------------------------------------------------------------- HTML


def md_to_html(text: str, ids: list[str] | None = None) -> str:
    """The small Markdown subset the table and summary writers emit: ### headings, pipe tables, - lists, text.

    The n-th table gets ``ids[n]`` as its id when given.
    """
    ids = list(ids or [])
    parts: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if paragraph:
            parts.append(f"<p>{html.escape(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if table:
            table_id = ids.pop(0) if ids else None
            parts.append(_table(table[0], table[1:], table_id))
            table.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            if paragraph or items:
                flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if all(set(c) <= set("-: ") and c for c in cells):
                continue  # the separator row
            table.append(cells)
            continue
        if table:
            flush()
        if not stripped:
            flush()
        elif stripped.startswith("#"):
            flush()
            level = min(6, len(stripped) - len(stripped.lstrip("#")) + 1)
            parts.append(f"<h{level}>{html.escape(stripped.lstrip('#').strip())}</h{level}>")
        elif stripped.startswith("- "):
            if paragraph:
                flush()
            items.append(stripped[2:])
        else:
            paragraph.append(stripped)
    flush()
    return "\n".join(parts)


def _table(header: list[str], rows: list[list], table_id: str | None = None, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are HTML already)."""
    def cell(value, tag: str) -> str:
        text = "–" if value is None or value == "" else value
        content = str(text) if raw and tag == "td" else html.escape(str(text))
        numeric = tag == "td" and _is_number(str(text))
        return f"<{tag}{' class=num' if numeric else ''}>{content}</{tag}>"

    attr = f' id="{html.escape(table_id)}"' if table_id else ""
    head = "<tr>" + "".join(cell(h, "th") for h in header) + "</tr>"
    body = "\n".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table{attr}>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("%", "").split(" ")[0])
    except ValueError:
        return False
    return True


def _href(target: str | Path, out: Path) -> str:
    """A relative URL from the report directory to ``target``."""
    rel = os.path.relpath(Path(target).resolve(), out.resolve())
    return quote(Path(rel).as_posix())


def _figure(paths: list[str], caption: str, out: Path) -> str:
    png = next((p for p in paths if p.endswith(".png")), None)
    svg = next((p for p in paths if p.endswith(".svg")), None)
    if png is None:
        return ""
    link = f' (<a href="{_href(out / svg, out)}">SVG</a>)' if svg else ""
    return (f'<figure><img src="{_href(out / png, out)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}{link}</figcaption></figure>")


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.2f}"


def render_html(results, out: Path, runs_dir: Path, split: str, table_md: dict, fig1: dict, fig2: dict) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    body = [
        "<h1>subprobe report</h1>",
        f"<p>{len(results)} finished run(s) from <code>{html.escape(str(runs_dir))}</code>, written {stamp}. "
        f"Metrics on the <b>{html.escape(split)}</b> split unless marked test; accuracy is each task's primary "
        "metric in %. Numbers are also in the CSV/JSON files beside this page.</p>",
        '<nav><a href="#tables">Tables 1 and 2</a><a href="#pareto">Pareto curves</a>'
        '<a href="#localisation">Localisation</a><a href="#runs">Runs</a></nav>',
        '<h2 id="tables">Table 1 and Table 2</h2>',
    ]
    for name, title in (("table1", "Table 1: probe accuracy"), ("table2", "Table 2: subnetworks by λmax")):
        for s in dict.fromkeys((split, "test")):
            body.append(f"<h3>{title} ({s})</h3>")
            blocks = table_md[(name, s)].count("### Ours")  # one per series (model and budget)
            ids = [f"{name}-{s}", *(f"{name}-{s}-{i}" for i in range(2, blocks + 1))]
            body.append(md_to_html(table_md[(name, s)], ids))
    body += _pareto_html(fig1, out)
    body += _localisation_html(fig2, out)
    body += _runs_html(results, out)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>subprobe report</title>\n<style>{STYLE}</style>\n<script>{SCRIPT}</script>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _pareto_html(fig1: dict, out: Path) -> list[str]:
    parts = ['<h2 id="pareto">Accuracy against complexity (Figure 1)</h2>',
             "<p>Pretrained model. Complexity in bits: one per subnetwork mask parameter; MLP-1 at 1 bit (lower "
             "bound) and 32 bits (upper bound) per parameter. The frontier is the best accuracy reachable with at "
             "most that many bits (bold lines). Dominance: at each MLP-1 complexity, the subnetwork frontier "
             "against the MLP-1 accuracy. AUC: mean frontier accuracy over the common ln(bits) range.</p>",
             md_to_html(fig1["markdown"], ["pareto-summary"])]
    seen: set[str] = set()
    for entry in fig1["report"]:
        task = entry["task"]
        key = _id_key(task, entry["model"], seen)
        parts.append(f"<h3>{html.escape(task)} ({html.escape(entry['model'])})</h3>")
        parts.append('<div class="figures">' + _figure(entry.get("images", []), f"{task}: accuracy vs ln(bits)", out)
                     + "</div>")
        rows = [[curve, p["label"], f"{p['bits']:,.0f}", f"{p['ln_bits']:.2f}", _pct(p["accuracy"]),
                 "yes" if p["on_frontier"] else "", p["n"]]
                for curve, pts in entry["points"].items() for p in pts]
        parts.append(_table(["curve", "point", "bits", "ln bits", "accuracy (%)", "on frontier", "runs"], rows,
                            f"pareto-points-{key}"))
        lower = entry["dominance"]["lower"]["points"]
        upper = {p["label"]: p for p in entry["dominance"]["upper"]["points"]}
        rows = []
        for p in lower:
            u = upper.get(p["label"], {})
            rows.append([p["label"], _pct(p["mlp_accuracy"]), f"{p['ln_bits']:.2f}", _pct(p["subnetwork_accuracy"]),
                         VERDICT_TEXT[p["verdict"]], f"{u.get('ln_bits', 0):.2f}",
                         _pct(u.get("subnetwork_accuracy")), VERDICT_TEXT.get(u.get("verdict"), "–")])
        parts.append(_table(["MLP-1", "MLP-1 accuracy (%)", "ln bits (1/param)", "subnetwork frontier (%)", "verdict",
                             "ln bits (32/param)", "subnetwork frontier (%)", "verdict"], rows,
                            f"pareto-dominance-{key}"))
        rows = []
        for comparison, a in entry["auc"].items():
            rng = "–" if not a["range"] else f"[{a['range'][0]:.2f}, {a['range'][1]:.2f}]"
            rows.append([AUC_TITLES[comparison], rng] + [_pct(a["auc"][n]) if n in a["auc"] else ""
                                                         for n in ("subnetwork", "mlp_lower", "mlp_upper")]
                        + [a.get("note", "")])
        parts.append(_table(["curves compared", "common ln(bits) range", "AUC subnetwork (%)",
                             "AUC MLP-1, 1 bit/param (%)", "AUC MLP-1, 32 bits/param (%)", "note"], rows,
                            f"pareto-auc-{key}"))
    return parts


def _id_key(task: str, series: str, seen: set[str]) -> str:
    """The task's name for table ids; a later series of the same task gets its own (ids stay unique)."""
    key = task if task not in seen else figures.slug(task, series)
    seen.add(task)
    return key


def _localisation_html(fig2: dict, out: Path) -> list[str]:
    report = fig2["report"]
    parts = ['<h2 id="localisation">Where the subnetworks are (Figure 2)</h2>',
             "<p>Neuron subnetworks. Per task and model setting, the largest λmax whose accuracy is within 10% of "
             "fine-tuning accuracy (acc ≥ 0.9 × fine-tuning; the same setting's fine-tuning run if there is one, "
             "else the pretrained one). Fractions count weights kept by the hard mask. Centre of mass: "
             "Σ l·kept_l / Σ kept_l over 0-based layers, normalised by L−1. Beside it, the paper's statistic: the "
             "mean soft mask of Q, K and V per layer, normalised over layers, and its centre of mass.</p>",
             md_to_html(fig2["markdown"], ["localisation-summary"])]
    com = report["centre_of_mass"]
    settings = sorted({s for per in com.values() for s in per}, key=lambda s: tables.SETTINGS.index(s)
                      if s in tables.SETTINGS else 99)
    rows = []
    for task, per in com.items():
        row = [task]
        for s in settings:
            c = per.get(s)
            for key, norm in (("centre_of_mass", "normalised"), ("paper_centre_of_mass", "paper_normalised")):
                value = (c or {}).get(key)
                row.append("–" if value is None else
                           f"{value:.2f} ({c[norm]:.3f})" if c.get(norm) is not None else f"{value:.2f}")
        rows.append(row)
    parts.append("<h3>Centre of mass per task: layer (normalised); kept weights and the paper's statistic</h3>")
    header = ["task"] + [f"{s}: {kind}" for s in settings for kind in ("kept weights", "paper's statistic")]
    parts.append(_table(header, rows, "centre-of-mass"))
    tasks = list(dict.fromkeys((e["task"], e["model"]) for e in report["selections"]))
    seen: set[str] = set()
    for task, model in tasks:
        key = _id_key(task, model, seen)
        sels = [e for e in report["selections"] if e["task"] == task and e["model"] == model]
        parts.append(f"<h3>{html.escape(task)} ({html.escape(model)})</h3>")
        figs = [_figure(report["layer_images"].get(f"{task}|{model}", []), f"{task}: kept weights per layer", out),
                _figure(report.get("layer_images_paper", {}).get(f"{task}|{model}", []),
                        f"{task}: the paper's statistic (mean soft Q/K/V mask per layer, normalised)", out)]
        for e in sels:
            for kind, caption in (("matrix", "per layer and matrix type"), ("heads", "per layer and head")):
                figs.append(_figure((e.get("images") or {}).get(kind, []),
                                    f"{task}, {e['setting']}, λmax={e['selected_lambda']:g}: {caption}", out))
        parts.append('<div class="figures">' + "".join(figs) + "</div>")
        for e in sels:
            if e["note"]:
                parts.append(f'<p class="note">{html.escape(e["setting"])}: {html.escape(e["note"])}</p>')
            loc = e["localisation"]
            if loc and loc["heads"] is None:
                parts.append(f'<p class="note">{html.escape(e["setting"])}: no per-head table; head count '
                             f'{html.escape(str(e["heads_source"]))}</p>')
        rows = [[e["setting"], f"{c['lambda_max']:g}", _pct(c["accuracy"]),
                 "–" if c["density"] is None else f"{c['density']:.4f}",
                 {True: "yes", False: "no", None: "–"}[c["within"]],
                 "selected" if c["lambda_max"] == e["selected_lambda"] else ""]
                for e in sels for c in e["candidates"]]
        header = ["setting", "λmax", "accuracy (%)", "density", "within 10% of fine-tuning", "selected"]
        parts.append(_table(header, rows, f"selection-{key}"))
        with_loc = [e for e in sels if e["localisation"]]
        if with_loc:
            n_layers = max(len(e["localisation"]["layers"]) for e in with_loc)
            rows = [[layer] + [_pct(_at(e["localisation"]["layer"]["fraction"], layer)) for e in with_loc]
                    for layer in range(n_layers)]
            parts.append(_table(["layer"] + [f"{e['setting']} kept (%)" for e in with_loc], rows, f"layers-{key}"))
    return parts


def _at(values: list, i: int):
    return values[i] if i < len(values) else None


def _unit(m: dict) -> str:
    cfg = m.get("config", {})
    if m["probe"] == "subnetwork":
        return f"{cfg.get('granularity', 'neuron')}, λmax={float(cfg.get('lambda_max', 1.0)):g}"
    if m["probe"] == "mlp":
        return f"rank {cfg.get('rank', 'd')}"
    return ""


def _runs_html(results: list[dict], out: Path) -> list[str]:
    rows = []
    for m in results:
        run_dir = Path(m["run_dir"])
        link = f'<a href="{_href(run_dir, out)}">{html.escape(run_dir.name)}</a>'
        config_path = run_dir / "config.yaml"
        config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else "(no config.yaml)"
        details = (f"<details><summary>config.yaml</summary><pre>{html.escape(config_text)}</pre></details>")
        key = m["primary_metric"]
        bits = m.get("bits") or {}
        rows.append([
            link, html.escape(m["task"]), html.escape(m["probe"]), html.escape(m["setting"]), html.escape(_unit(m)),
            html.escape(key), _pct((m.get("dev") or {}).get(key)), _pct((m.get("test") or {}).get(key)),
            "–" if m.get("density") is None else f"{m['density']:.4f}",
            "–" if bits.get("lower") is None else f"{bits['lower']:,.0f}",
            "–" if bits.get("upper") is None else f"{bits['upper']:,.0f}", details,
        ])
    return ['<h2 id="runs">Runs</h2>',
            f"<p>{len(results)} finished run(s); the name links to the run directory.</p>",
            _table(["run", "task", "probe", "setting", "unit", "metric", "dev (%)", "test (%)", "density",
                    "bits (lower)", "bits (upper)", "config"], rows, "runs", raw=True)]


# ------------------------------------------------------------------------------------------ Markdown


def render_markdown(results, out: Path, split: str, table_md: dict, fig1: dict, fig2: dict) -> str:
    lines = ["# subprobe report", "", f"{len(results)} finished run(s); metrics on the {split} split.", ""]
    for name in ("table1", "table2"):
        for s in dict.fromkeys((split, "test")):
            lines += [f"## {name.capitalize()} ({s})", "", table_md[(name, s)], ""]
    lines += ["## Accuracy against complexity (Figure 1)", "", fig1["markdown"], ""]
    for entry in fig1["report"]:
        png = next((p for p in entry.get("images", []) if p.endswith(".png")), None)
        if png:
            lines.append(f"![{entry['task']}: accuracy vs ln(bits)]({png})")
    lines += ["", "## Where the subnetworks are (Figure 2)", "", fig2["markdown"], ""]
    for key, paths in fig2["report"].get("layer_images", {}).items():
        png = next((p for p in paths if p.endswith(".png")), None)
        if png:
            lines.append(f"![{key.split('|')[0]}: kept weights per layer]({png})")
    for e in fig2["report"]["selections"]:
        for kind, paths in (e.get("images") or {}).items():
            png = next((p for p in paths if p.endswith(".png")), None)
            if png:
                lines.append(f"![{e['task']}, {e['setting']}, λmax={e['selected_lambda']:g}: kept per {kind}]({png})")
    lines += ["", "## Runs", "", "| run | task | probe | setting | unit | metric | dev | density | bits (lower) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in results:
        key = m["primary_metric"]
        dens = "–" if m.get("density") is None else f"{m['density']:.4f}"
        bits = (m.get("bits") or {}).get("lower")
        lines.append(f"| {Path(m['run_dir']).name} | {m['task']} | {m['probe']} | {m['setting']} | {_unit(m)} | "
                     f"{key} | {_pct((m.get('dev') or {}).get(key))} | {dens} | "
                     f"{'–' if bits is None else f'{bits:,.0f}'} |")
    return "\n".join(lines) + "\n"
