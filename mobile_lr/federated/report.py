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

from mobile_lr.atomic_files import write_atomic
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


def _round_axis(ax: Any, last: int) -> None:
    """Rounds are whole numbers: a tick per round (at most ~12 ticks), never a fraction."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(-0.5, last + 0.5)
    if last <= 12:
        ax.set_xticks(range(0, last + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.grid(alpha=0.25, lw=0.5)


def _legend_above(ax: Any) -> None:
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=8, frameon=False)


def figure(report: dict[str, Any]) -> Any:
    """Four panels on one round axis: global accuracy (%), energy per round (kJ, the part lost
    to drop-outs on top), phones asked per round split into trained / declined / dropped, and
    the lowest battery margin above a floor (percentage points). Values are written when the
    rounds are few; legends sit above the panels, outside the data."""
    with optional_imports(__name__):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

    rows = report["rows"]
    rounds = [r["round"] for r in rows]
    last = max(rounds, default=0)
    few = len(rounds) <= 10
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    acc_ax, e_ax, ph_ax, m_ax = ax.flat
    a0 = report["totals"]["initial_accuracy"]
    xs = [0, *rounds] if a0 is not None else rounds
    acc = [100.0 * a if a is not None else float("nan") for a in ([a0] if a0 is not None else [])
           + [r["accuracy"] for r in rows]]
    acc_ax.plot(xs, acc, marker="o", color="tab:blue")
    if few:
        for x, a in zip(xs, acc, strict=True):
            acc_ax.annotate(f"{a:.1f}", (x, a), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=8)
    acc_ax.margins(y=0.25)
    acc_ax.set(title="global accuracy, held-out users (round 0: before)", ylabel="accuracy (%)")
    kept = [(r["energy_j"] - r["energy_lost_j"]) / 1000 for r in rows]
    lost = [r["energy_lost_j"] / 1000 for r in rows]
    e_ax.bar(rounds, kept, width=0.6, label="kept (phones that reported)", color="tab:blue")
    e_ax.bar(rounds, lost, width=0.6, bottom=kept, label="lost (dropped phones)", color="tab:red")
    if few:
        for x, k, lo in zip(rounds, kept, lost, strict=True):
            e_ax.annotate(f"{k + lo:.1f}", (x, k + lo), textcoords="offset points", xytext=(0, 3),
                          ha="center", fontsize=8)
    e_ax.set_ylim(0.0, 1.18 * max([k + lo for k, lo in zip(kept, lost, strict=True)] or [1.0]))
    e_ax.set(title="energy per round", ylabel="energy (kJ)")
    _legend_above(e_ax)
    bottom = [0] * len(rows)
    for key, colour in (("trained", "tab:green"), ("declined", "tab:gray"), ("dropped", "tab:red")):
        vals = [r[key] for r in rows]
        ph_ax.bar(rounds, vals, width=0.6, bottom=bottom, label=key, color=colour)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    if few:
        for x, b in zip(rounds, bottom, strict=True):
            ph_ax.annotate(f"{b}", (x, b), textcoords="offset points", xytext=(0, 3), ha="center",
                           fontsize=8)
    ph_ax.set_ylim(0.0, 1.18 * max(bottom or [1]))
    ph_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ph_ax.set(title="phones asked per round", ylabel="phones")
    _legend_above(ph_ax)
    margin = [100.0 * r["floor_margin_min"] if r["floor_margin_min"] is not None else float("nan")
              for r in rows]
    m_ax.plot(rounds, margin, marker="o", color="tab:blue")
    m_ax.axhline(0.0, color="tab:red", lw=1, label="a floor (below: a violation)")
    m_ax.set_ylim(bottom=min(0.0, *[m for m in margin if m == m]) - 2.0 if margin else -2.0)
    m_ax.margins(y=0.2)
    m_ax.set(title="lowest battery above its floor", ylabel="level - floor (percentage points)")
    _legend_above(m_ax)
    for a in ax.flat:
        _round_axis(a, last)
    for a in ax.flat:
        a.set_title(a.get_title(), pad=22)
    fig.suptitle(f"fleet-train: {report['strategy']}, {report['config']['clients']} phones, "
                 f"{len(rows)} round{'s' if len(rows) != 1 else ''}")
    fig.tight_layout()
    return fig


def _plot(report: dict[str, Any], path: Path) -> None:
    from mobile_lr.report import figures

    figures.save(figure(report), path, dpi=100)


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """``run.json``, ``fleet.png`` and ``report.md`` in ``out_dir``; returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "run.json", json.dumps(report, indent=2) + "\n")
    _plot(report, out / "fleet.png")
    md = out / "report.md"
    md.write_text(f"# Fleet run: {report['strategy']}\n\n{format_table(report)}\n\n![fleet](fleet.png)\n",
                  encoding="utf-8")
    return md
