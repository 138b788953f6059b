"""What ``subprobe reproduce`` writes after running a grid: the writers a grid names (``writer:`` in its YAML).

Each writer takes the finished runs of the grid's points and writes its files into the store root (Markdown, CSV,
JSON and plots); it returns what :func:`subprobe.experiments.reproduce.reproduce` returns besides the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from subprobe.runs import write_json, write_text

#: A writer: ``(grid name, results of its points, store root, model name, echo) -> dict``.
Writer = Callable[[str, list[dict], Path, str, Callable], dict]


def _paper_table(build, name: str, results: list[dict], root: Path, model: str, echo, show_claims: bool) -> dict:
    """Table 1 or Table 2 of the paper (``build``) beside its numbers, and the paper's claims (``NAME.md``,
    ``NAME.csv``, ``NAME-claims.json``)."""
    from subprobe.report import tables
    from subprobe.report.claims import all_claims

    markdown, csv_text = build(results, "dev", model)
    test_md, _ = build(results, "test", model)
    claims = all_claims(results, "dev")
    write_text(root / f"{name}.md", markdown + "\n" + test_md)
    write_text(root / f"{name}.csv", csv_text)
    write_json(root / f"{name}-claims.json", claims)
    echo(markdown)
    if show_claims and claims["table1"]:
        echo(f"The paper's claims on this model (dev; p: paired bootstrap over dev sentences; {name}-claims.json):\n"
             + tables.claims_text(claims["table1"]))
    return {"claims": claims, "markdown": markdown, "files": "tables"}


def _table1(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    from subprobe.report import tables

    return _paper_table(tables.table1, name, results, root, model, echo, show_claims=True)


def _table2(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    from subprobe.report import tables

    return _paper_table(tables.table2, name, results, root, model, echo, show_claims=False)


def _tasks(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    """Any grid's runs by task, probe and model setting (``NAME.md``, ``NAME.csv``)."""
    from subprobe.report import render, tables

    shown, data = tables.tasks_tables(results, "dev", model, name)
    test_shown, _ = tables.tasks_tables(results, "test", model, name)
    markdown = render.markdown(shown)
    write_text(root / f"{name}.md", markdown + "\n" + render.markdown(test_shown))
    write_text(root / f"{name}.csv", render.to_csv(data))
    echo(markdown)
    return {"rows": data.rows, "markdown": markdown, "files": "table"}


def _selectivity(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    """The selectivity table (task - control task per probe)."""
    from subprobe.report import render, selectivity

    table = selectivity.selectivity_table(results)
    markdown = render.markdown(table)
    write_text(root / f"{name}.md", markdown)
    write_text(root / f"{name}.csv", render.to_csv(table))
    echo(markdown)
    return {"rows": table.rows, "markdown": markdown, "files": "table"}


def _density(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    """Accuracy against density: numbers and plots."""
    from subprobe.report import figures

    written = figures.write_density(results, root)
    echo(written["markdown"])
    return {"report": written["report"], "rows": written["table"].rows, "markdown": written["markdown"],
            "images": written["images"], "files": "density.{md,csv,json} and figures/density-<task>.{png,svg}"}


def _figure1(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    """Figure 1 (Pareto curves): numbers and plots."""
    from subprobe.report import figures

    written = figures.write_figure1(results, root)
    echo(written["markdown"])
    return {"report": written["report"], "markdown": written["markdown"],
            "files": "numbers and plots (HTML: subprobe report STORE)"}


def _figure2(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    """Figure 2 (localisation): numbers and plots."""
    from subprobe.report import figures

    written = figures.write_figure2(results, root)
    echo(written["markdown"])
    return {"report": written["report"], "markdown": written["markdown"],
            "files": "numbers and plots (HTML: subprobe report STORE)"}


def _mdl(name: str, results: list[dict], root: Path, model: str, echo) -> dict:
    """MDL's online codes (every point's block runs assembled): mdl.{json,md,csv} and codelength-vs-data plots."""
    from subprobe.report import figures

    written = figures.write_mdl(results, root)
    echo(written["markdown"])
    return {"report": written["report"], "rows": written["table"].rows, "markdown": written["markdown"],
            "images": written["images"], "files": "mdl.{md,csv,json} and figures/mdl-<task>.{png,svg}"}


def _mdl_blocks(points: list[dict]) -> list[dict]:
    """Every point of an MDL grid as its online code's block runs (:func:`subprobe.complexity.mdl.expand_points`)."""
    from subprobe.complexity.mdl import expand_points

    return expand_points(points)


#: Writer names (a grid's ``writer:``) -> writers.
WRITERS: dict[str, Writer] = {
    "table1": _table1, "table2": _table2, "tasks": _tasks, "selectivity": _selectivity, "density": _density,
    "figure1": _figure1, "figure2": _figure2, "mdl": _mdl,
}
#: Writers whose grid points are expanded before they run (each point's values -> the runs it stands for).
EXPANDS: dict[str, Callable[[list[dict]], list[dict]]] = {"mdl": _mdl_blocks}
#: Writers that read the store's own records (config: the grid point); the others read the runs as the report does
#: (config.yaml with the point overlaid, series labels).
STORE_RECORDS = ("table1", "table2")
