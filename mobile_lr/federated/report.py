"""The fleet run's report: per-round table, totals, JSON and PNG plots in the run directory.

``run.json`` (``format: mobile-lr.fleet-run/1``) holds the config, one row per
round and the totals; ``report.md`` the table and the plots (``fleet.png``:
global accuracy, energy per round with the part lost to drop-outs, who trained /
declined / dropped, and the lowest battery margin above the floors).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mobile_lr.extras import optional_imports
from mobile_lr.federated.fleet import FleetConfig

__all__ = ["REPORT_FORMAT", "format_table", "summarize", "write_report"]

REPORT_FORMAT = "mobile-lr.fleet-run/1"

_COLUMNS = (("round", "round", "{}"), ("asked", "asked", "{}"), ("trained", "trained", "{}"),
            ("declined", "declined", "{}"), ("dropped", "dropped", "{}"), ("steps", "steps", "{}"),
            ("steps_lost", "lost steps", "{}"), ("energy_j", "energy J", "{:.0f}"),
            ("energy_lost_j", "lost J", "{:.0f}"), ("battery_min", "min batt", "{:.1%}"),
            ("floor_margin_min", "floor margin", "{:+.2%}"), ("accuracy", "accuracy", "{:.2%}"),
            ("wall_s", "wall s", "{:.1f}"))


def summarize(cfg: FleetConfig, rows: list[dict[str, Any]], initial: dict[str, float], *,
              wall_s: float) -> dict[str, Any]:
    """Totals over the run; accuracy per kJ is the gain over the initial model per kJ spent."""
    energy = sum(r["energy_j"] for r in rows)
    lost = sum(r["energy_lost_j"] for r in rows)
    final = rows[-1]["accuracy"] if rows else None
    start = initial.get("accuracy")
    margins = [r["floor_margin_min"] for r in rows if r["floor_margin_min"] is not None]
    gain = None if final is None or start is None else final - start
    totals = {
        "initial_accuracy": start, "final_accuracy": final,
        "energy_j": energy, "energy_lost_j": lost,
        "lost_share": lost / energy if energy > 0 else 0.0,
        "accuracy_gain_per_kj": None if gain is None or energy <= 0 else gain / (energy / 1000.0),
        "trained": sum(r["trained"] for r in rows), "declined": sum(r["declined"] for r in rows),
        "dropped": sum(r["dropped"] for r in rows), "steps": sum(r["steps"] for r in rows),
        "steps_lost": sum(r["steps_lost"] for r in rows),
        "floor_margin_min": min(margins) if margins else None,
        "battery_min": min((r["battery_min"] for r in rows if r["battery_min"] is not None), default=None),
        "wall_s": wall_s,
    }
    return {"format": REPORT_FORMAT, "strategy": cfg.strategy, "config": cfg.to_run_config(),
            "rows": rows, "totals": totals}


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def format_table(report: dict[str, Any]) -> str:
    """The per-round table (Markdown) and a totals line."""
    head = "| " + " | ".join(title for _, title, _ in _COLUMNS) + " |"
    sep = "|" + "|".join("---:" for _ in _COLUMNS) + "|"
    lines = [head, sep]
    for r in report["rows"]:
        lines.append("| " + " | ".join(_cell(r.get(k), f) for k, _, f in _COLUMNS) + " |")
    t = report["totals"]
    lines.append("")
    lines.append(
        f"{report['strategy']}: accuracy {_cell(t['initial_accuracy'], '{:.2%}')} -> "
        f"{_cell(t['final_accuracy'], '{:.2%}')}, energy {t['energy_j'] / 1000:.1f} kJ "
        f"({t['lost_share']:.0%} lost to drop-outs), {_cell(t['accuracy_gain_per_kj'], '{:+.3%}')} per kJ, "
        f"trained {t['trained']}, declined {t['declined']}, dropped {t['dropped']}, "
        f"lowest battery margin above a floor {_cell(t['floor_margin_min'], '{:+.2%}')}")
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    with optional_imports(__name__):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

    rows = report["rows"]
    rounds = [r["round"] for r in rows]
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    acc = [r["accuracy"] for r in rows]
    a0 = report["totals"]["initial_accuracy"]
    ax[0, 0].plot([0, *rounds], [a0, *acc], marker="o")
    ax[0, 0].set(title="global accuracy (held-out users)", xlabel="round", ylabel="accuracy")
    ok = [(r["energy_j"] - r["energy_lost_j"]) / 1000 for r in rows]
    lost = [r["energy_lost_j"] / 1000 for r in rows]
    ax[0, 1].bar(rounds, ok, label="kept")
    ax[0, 1].bar(rounds, lost, bottom=ok, label="lost (dropped)", color="tab:red")
    ax[0, 1].set(title="energy per round", xlabel="round", ylabel="kJ")
    ax[0, 1].legend()
    for key, colour in (("trained", "tab:green"), ("declined", "tab:gray"), ("dropped", "tab:red")):
        ax[1, 0].plot(rounds, [r[key] for r in rows], marker="o", label=key, color=colour)
    ax[1, 0].set(title="phones per round", xlabel="round", ylabel="phones")
    ax[1, 0].legend()
    margin = [r["floor_margin_min"] for r in rows]
    ax[1, 1].plot(rounds, [m if m is not None else float("nan") for m in margin], marker="o")
    ax[1, 1].axhline(0.0, color="tab:red", lw=1)
    ax[1, 1].set(title="lowest battery above its floor", xlabel="round", ylabel="level - floor")
    for a in ax.flat:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"fleet-train: {report['strategy']}, {report['config']['clients']} phones")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """``run.json``, ``fleet.png`` and ``report.md`` in ``out_dir``; returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _plot(report, out / "fleet.png")
    md = out / "report.md"
    md.write_text(f"# Fleet run: {report['strategy']}\n\n{format_table(report)}\n\n![fleet](fleet.png)\n",
                  encoding="utf-8")
    return md
