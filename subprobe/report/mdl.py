"""MDL probing in the report: the online code (:mod:`subprobe.metrics.online_code`) of every probe point found.

An MDL block run (``metrics.json`` with ``codelength``: ``subprobe mdl``'s ``OUT/blocks/*`` or ``reproduce mdl``'s
store) belongs to the point of its configuration without the block's own settings (``max_train_samples``,
``mdl_block_end`` and ``epochs``, which :func:`subprobe.complexity.mdl.block_configs` sets per block); a point's
blocks are assembled into its online code. Block runs are kept out of every other table and figure.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from subprobe.config import settings_where
from subprobe.metrics.online_code import assemble
from subprobe.report import intervals
from subprobe.report.render import Table

#: Settings that differ between the blocks of one MDL point, or never change a result.
BLOCK_FIELDS = frozenset({"max_train_samples", "mdl_block_end", "epochs", *settings_where(in_key=False)})
#: Settings that differ between the replicas (seeds) of one row of the table (``replica`` in subprobe.config).
SEED_FIELDS = frozenset(settings_where(replica=True))
PROBE_ORDER = {"subnetwork": 0, "mlp": 1, "linear": 2, "finetune": 3}
SETTING_ORDER = {"pretrained": 0, "reset-encoder": 1, "reset-all": 2}


def is_block(result: dict) -> bool:
    """An MDL block run (it codes the block after its training prefix)."""
    return "codelength" in result


def _key(result: dict, skip: frozenset) -> tuple:
    config = result.get("config", {})
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in skip))


def _unit(result: dict) -> str:
    config = result.get("config", {})
    return {"subnetwork": str(config.get("granularity", "neuron")),
            "mlp": f"r={config.get('rank', 'd')}"}.get(result["probe"], "")


def mdl_report(results: list[dict]) -> list[dict]:
    """One entry per MDL point (its blocks' configuration; each seed apart): task, model, probe, unit, setting,
    seed, control and the assembled online code (:func:`subprobe.metrics.online_code.assemble`), in the order
    task, model, setting, probe."""
    from subprobe.report.tables import TASK_TITLES

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        if is_block(r):
            groups[(r["task"], str(r.get("model", "")), _key(r, BLOCK_FIELDS))].append(r)
    out = []
    for (task, model, _), runs in groups.items():
        first = runs[0]
        config = first.get("config", {})
        found = assemble([{**r["codelength"], "run_dir": r.get("run_dir")} for r in runs])
        out.append({"task": task, "model": model, "probe": first["probe"], "unit": _unit(first),
                    "setting": first["setting"], "seed": config.get("seed", 0), "control": bool(first.get("control")),
                    "row": _key(first, BLOCK_FIELDS | SEED_FIELDS), **found})
    order = {t: i for i, t in enumerate(TASK_TITLES)}
    out.sort(key=lambda e: (order.get(e["task"], 99), e["model"], e["control"], SETTING_ORDER.get(e["setting"], 9),
                            PROBE_ORDER.get(e["probe"], 9), e["unit"], e["seed"]))
    return out


HEADER = ["task", "model", "setting", "probe", "unit", "labels", "sentences", "words", "uniform (kbits)",
          "online (kbits)", "compression", "blocks", "seeds"]


def mdl_rows(report: list[dict]) -> list[list]:
    """One row per point over seeds (see :data:`HEADER`): codelengths in kbits, compression with its spread."""
    rows: dict[tuple, list[dict]] = {}
    for e in report:
        rows.setdefault((e["task"], e["model"], e["row"]), []).append(e)
    out = []
    for entries in rows.values():
        e = entries[0]
        done = [x for x in entries if x["complete"]]
        probe = e["probe"] + (" (control task)" if e["control"] else "")
        blocks = f"{len(e['blocks']) - 1}/{len(e['boundaries_percent']) - 1}" if e["blocks"] else "0"
        out.append([
            e["task"], Path(e["model"]).name, e["setting"], probe, e["unit"], e["labels"], e["sentences"], e["words"],
            intervals.cell([x["uniform_bits"] / 1000 for x in done], scale=1.0, clip=False),
            intervals.cell([x["online_bits"] / 1000 for x in done], scale=1.0, clip=False),
            intervals.cell([x["compression"] for x in done], scale=1.0, clip=False),
            blocks if all(x["complete"] for x in entries) else f"{blocks} (incomplete)", len(entries),
        ])
    return out


def mdl_table(report: list[dict]) -> Table:
    """The MDL table of the report (id ``mdl``)."""
    code = next((e["code"] for e in report if e.get("code")), "")
    return Table(
        "mdl", "Minimum description length: online code of the labels (Voita & Titov 2020)", HEADER,
        mdl_rows(report),
        notes=["Online codelength: the first block (0.1% of the sentences) in the uniform code, then every block "
               "coded by the probe trained on all sentences before it (block boundaries at 0.1, 0.2, 0.4, 0.8, 1.6, "
               "3.2, 6.25, 12.5, 25, 50 and 100% of the sentences). Uniform codelength: all labels in the uniform "
               "code. Compression = uniform / online: higher means the labels are easier to learn from the "
               f"representation. Code: {code}. Several seeds: mean ± sd [Student-t 95% interval]."],
        empty="No MDL runs (subprobe mdl or subprobe reproduce mdl).",
    )
