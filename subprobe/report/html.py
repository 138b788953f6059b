"""``subprobe report RUNS_DIR --report-dir DIR``: a static HTML page (and Markdown) of everything that has run.

The page works from file:// with no server and no network: styles and the one small script are
inline, images are PNG files referenced by relative paths (``figures/...``), and each run links to
its run directory by a relative path. The script only marks images that failed to load (and
records the count on ``<body data-images="loaded/total">``, which the browser test reads).
"""

from __future__ import annotations

import html
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

from subprobe.errors import SubprobeError
from subprobe.report import figures, localisation, mdl, pareto, render, selectivity, stability, tables
from subprobe.report.claims import all_claims, claims_table
from subprobe.report.loading import load_results, run_label
from subprobe.report.mask_sources import controls_table
from subprobe.report.render import Table
from subprobe.runs import RunDir, write_json, write_text

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

def write_report(runs_dir: str | Path, out: str | Path, *, split: str = "dev", num_heads: int | None = None,
                 echo=print) -> Path:
    """Write ``OUT/index.html``, ``OUT/report.md`` and the figures' numbers and plots; returns index.html."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SubprobeError(f"--report-dir {out}: exists and is not a directory; choose another --report-dir")
    notes: list[str] = []
    every = load_results(runs_dir, notes)
    if not every:
        left = f" ({len(notes)} left out, the first: {notes[0]})" if notes else ""
        raise SubprobeError(
            f"{runs_dir}: no finished runs to report{left}; give a results store or a directory of run "
            "directories, after a sweep or probe has finished"
        )
    for note in notes:  # nothing left out silently
        echo(f"subprobe: note: {note}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    blocks = [r for r in every if mdl.is_block(r)]  # MDL block runs: the MDL table and plot only
    every = [r for r in every if not mdl.is_block(r)]
    results = [r for r in every if not selectivity.is_control(r)]  # control tasks: the selectivity table only
    selective = selectivity.selectivity_table(every, split)
    write_text(out / "selectivity.csv", render.to_csv(selective))
    fig1 = figures.write_figure1(results, out, split)
    fig1["mdl"] = figures.write_mdl(blocks, out)  # beside Figure 1: complexity as description length
    found = all_claims(results, split, fig1["report"])  # Table 1, Pareto dominance, learnt vs controls; p-values
    write_json(out / "table1-claims.json", found)
    fig2 = figures.write_figure2(results, out, split, num_heads)
    models = sorted({str(r.get("model", "")) for r in results})
    model_label = ", ".join(models) or "no runs"
    paper_tables = {}
    for name, build in (("table1", tables.table1_tables), ("table2", tables.table2_tables)):
        for s in dict.fromkeys((split, "test")):
            shown, data = build(results, s, model_label)
            paper_tables[(name, s)] = shown
            write_text(out / f"{name}-{s}.md", render.markdown(shown))
            write_text(out / f"{name}-{s}.csv", render.to_csv(data))
    stable = stability.stability_table(results)
    write_text(out / "stability.csv", render.to_csv(stable))
    masks_matter = controls_table(results, split)  # learnt vs random-like vs complement
    write_text(out / "mask-controls.csv", render.to_csv(masks_matter))
    dense = figures.write_density(results, out, split)  # subnetworks at target densities: table and curves
    extra = [claims_table(found), selective, stable, masks_matter, dense["table"]]
    page = render_html(every, out, Path(runs_dir), split, paper_tables, fig1, fig2, extra, dense)
    index = out / "index.html"
    write_text(index, page)
    write_text(out / "report.md", render_markdown(every, split, paper_tables, fig1, fig2, extra, dense))
    mdl_note = f" and {len(blocks)} MDL block run(s)" if blocks else ""
    echo(f"report of {len(every)} run(s){mdl_note} from {runs_dir}: {index} (open it in a browser) and "
         f"{out / 'report.md'}")
    return index


# ---------------------------------------------------------------------------------------------- HTML


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


def render_html(results, out: Path, runs_dir: Path, split: str, paper_tables: dict, fig1: dict, fig2: dict,
                extra: list[Table] = (), dense: dict | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    body = [
        "<h1>subprobe report</h1>",
        f"<p>{len(results)} finished run(s) from <code>{html.escape(str(runs_dir))}</code>, written {stamp}. "
        f"Metrics on the <b>{html.escape(split)}</b> split unless marked test; accuracy is each task's primary "
        "metric in %. Numbers are also in the CSV/JSON files beside this page.</p>",
        '<nav><a href="#tables">Tables 1 and 2</a><a href="#pareto">Pareto curves and MDL</a>'
        '<a href="#localisation">Localisation</a><a href="#controls">Claims, selectivity, stability, mask controls</a>'
        '<a href="#runs">Runs</a></nav>',
        '<h2 id="tables">Table 1 and Table 2</h2>',
    ]
    for name, title in (("table1", "Table 1: probe accuracy"), ("table2", "Table 2: subnetworks by λmax")):
        for s in dict.fromkeys((split, "test")):
            body.append(f"<h3>{title} ({s})</h3>")
            body.append(render.to_html(paper_tables[(name, s)]))
    body += _pareto_html(fig1, out)
    body += _localisation_html(fig2, out)
    if extra:
        body += ['<h2 id="controls">Claims, selectivity, stability and mask controls</h2>', render.to_html(extra)]
    figs = [_figure(e.get("images", []), f"{e['task']} ({e['model']}): accuracy vs density", out)
            for e in (dense or {}).get("report", [])]
    if any(figs):
        body.append('<div class="figures">' + "".join(figs) + "</div>")
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
             render.to_html(fig1["summary"])]
    seen: set[str] = set()
    for entry in fig1["report"]:
        task = entry["task"]
        key = _id_key(task, entry["model"], seen)
        parts.append(f"<h3>{html.escape(task)} ({html.escape(entry['model'])})</h3>")
        parts.append('<div class="figures">' + _figure(entry.get("images", []), f"{task}: accuracy vs ln(bits)", out)
                     + "</div>")
        parts.append(render.to_html(pareto.entry_tables(entry, key)))
    written = fig1.get("mdl")
    if written and written["report"]:
        parts += ['<h3 id="mdl">Minimum description length (online code)</h3>', render.to_html(written["table"])]
        figs = [_figure(e.get("images", []), f"{e['task']} ({e['model']}): codelength vs data", out)
                for e in written["entries"]]
        parts.append('<div class="figures">' + "".join(figs) + "</div>")
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
             render.to_html(fig2["summary"])]
    parts.append("<h3>Centre of mass per task: layer (normalised); kept weights and the paper's statistic</h3>")
    parts.append(render.to_html(localisation.centre_of_mass_table(report)))
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
        parts.append(render.to_html(localisation.task_tables(sels, key)))
    return parts


def _runs_html(results: list[dict], out: Path) -> list[str]:
    rows = []
    for m in results:
        run_dir = Path(m["run_dir"])
        link = f'<a href="{_href(run_dir, out)}">{html.escape(run_dir.name)}</a>'
        config_path = RunDir(run_dir).config_path
        config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else "(no config.yaml)"
        details = (f"<details><summary>config.yaml</summary><pre>{html.escape(config_text)}</pre></details>")
        key = m["primary_metric"]
        bits = m.get("bits") or {}
        rows.append([
            link, html.escape(m["task"]), html.escape(m["probe"]), html.escape(m["setting"]), html.escape(run_label(m)),
            html.escape(key), _pct((m.get("dev") or {}).get(key)), _pct((m.get("test") or {}).get(key)),
            "–" if m.get("density") is None else f"{m['density']:.4f}",
            "–" if bits.get("lower") is None else f"{bits['lower']:,.0f}",
            "–" if bits.get("upper") is None else f"{bits['upper']:,.0f}", details,
        ])
    table = Table("runs", "", ["run", "task", "probe", "setting", "unit", "metric", "dev (%)", "test (%)", "density",
                               "bits (lower)", "bits (upper)", "config"], rows, raw=True)
    return ['<h2 id="runs">Runs</h2>',
            f"<p>{len(results)} finished run(s); the name links to the run directory.</p>",
            render.to_html(table)]


# ------------------------------------------------------------------------------------------ Markdown


def render_markdown(results, split: str, paper_tables: dict, fig1: dict, fig2: dict,
                    extra: list[Table] = (), dense: dict | None = None) -> str:
    lines = ["# subprobe report", "", f"{len(results)} finished run(s); metrics on the {split} split.", ""]
    for name in ("table1", "table2"):
        for s in dict.fromkeys((split, "test")):
            lines += [f"## {name.capitalize()} ({s})", "", render.markdown(paper_tables[(name, s)]), ""]
    lines += ["## Accuracy against complexity (Figure 1)", "", fig1["markdown"], ""]
    for entry in fig1["report"]:
        png = next((p for p in entry.get("images", []) if p.endswith(".png")), None)
        if png:
            lines.append(f"![{entry['task']}: accuracy vs ln(bits)]({png})")
    written = fig1.get("mdl")
    if written and written["report"]:
        lines += ["", "## Minimum description length (online code)", "", written["markdown"]]
        for e in written["entries"]:
            png = next((p for p in e.get("images", []) if p.endswith(".png")), None)
            if png:
                lines.append(f"![{e['task']}: codelength vs data]({png})")
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
    if extra:
        lines += ["", "## Claims, selectivity, stability and mask controls", "", render.markdown(extra).rstrip("\n")]
    for e in (dense or {}).get("report", []):
        png = next((p for p in e.get("images", []) if p.endswith(".png")), None)
        if png:
            lines += ["", f"![{e['task']}: accuracy vs density]({png})"]
    rows = []
    for m in results:
        key = m["primary_metric"]
        dens = "–" if m.get("density") is None else f"{m['density']:.4f}"
        bits = (m.get("bits") or {}).get("lower")
        rows.append([Path(m["run_dir"]).name, m["task"], m["probe"], m["setting"], run_label(m), key,
                     _pct((m.get("dev") or {}).get(key)), dens, "–" if bits is None else f"{bits:,.0f}"])
    runs = Table("runs", "", ["run", "task", "probe", "setting", "unit", "metric", "dev", "density", "bits (lower)"],
                 rows)
    lines += ["", "## Runs", "", render.markdown(runs).rstrip("\n")]
    return "\n".join(lines) + "\n"
