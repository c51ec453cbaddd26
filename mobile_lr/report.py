"""The run report: a Markdown file, an HTML file that opens in a browser, and PNG plots.

For every (profile, scenario) one figure with three panels sharing the story of
the run: the learning rate against the step (re-plan events of the
battery-aware manager marked), the training loss, and battery level and skin
temperature against simulated time with the user's floor and the throttle
thresholds drawn. One summary figure shows accuracy per policy and scenario,
with the accuracy before fine-tuning as a reference line.

Only matplotlib's Agg backend is used: no screen is needed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

from mobile_lr.device import ThermalStatus, load_profile

__all__ = ["SUMMARY_COLUMNS", "format_table", "write_report"]

COLORS = {"manager": "#1f77b4", "naive": "#d62728", "constant": "#7f7f7f", "linear": "#ff7f0e",
          "wsd": "#2ca02c", "replan": "#9467bd"}

# (key, header, format) of the summary table, shared by the CLI and the report.
SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    ("profile", "profile", "{}"),
    ("scenario", "scenario", "{}"),
    ("policy", "policy", "{}"),
    ("accuracy_before", "acc before", "{:.1%}"),
    ("accuracy", "acc after", "{:.1%}"),
    ("steps", "steps", "{}"),
    ("sim_minutes", "minutes", "{:.1f}"),
    ("energy_j", "energy J", "{:.0f}"),
    ("energy_pct_battery", "% battery", "{:.2f}"),
    ("battery_start", "battery start", "{:.1%}"),
    ("battery_end", "battery end", "{:.1%}"),
    ("battery_min", "battery min", "{:.1%}"),
    ("battery_floor", "floor", "{:.0%}"),
    ("max_thermal", "max thermal", "{}"),
    ("stop_reason", "stop", "{}"),
    ("final_loss", "final loss", "{:.3f}"),
]


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def format_table(summaries: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of run summaries (the CLI prints it)."""
    cols = [c for c in SUMMARY_COLUMNS if columns is None or c[0] in columns]
    cells = [[h for _, h, _ in cols]] + [[_fmt(s.get(k), f) for k, _, f in cols] for s in summaries]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    head = "| " + " | ".join(h for _, h, _ in SUMMARY_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in SUMMARY_COLUMNS) + "|"
    rows = ["| " + " | ".join(_fmt(s.get(k), f) for k, _, f in SUMMARY_COLUMNS) + " |" for s in summaries]
    return "\n".join([head, sep, *rows])


def _steps(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] == "step" and r["note"] == "train"]


def _run_figure(runs: Sequence[Any], path: Path) -> None:
    """LR, loss, battery and temperature of the policies of one (profile, scenario)."""
    first = runs[0]
    profile = load_profile(first.profile)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax_lr, ax_loss, ax_bat = axes
    for run in runs:
        steps = _steps(run.result.rows)
        if not steps:
            continue
        color = COLORS.get(run.policy)
        t = [r["step"] for r in steps]
        ax_lr.plot(t, [r["lr"] for r in steps], label=run.policy, color=color, lw=1.5)
        loss = np.array([r["loss"] for r in steps], dtype=float)
        k = min(10, len(loss))
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax_loss.plot(t[k - 1:], smooth, label=run.policy, color=color, lw=1.2)
        if run.policy == "manager":
            for step, _total in run.result.plan_history[1:]:
                ax_lr.axvline(step, color=color, alpha=0.15, lw=0.8)
    ax_lr.set(title="Learning rate (manager's re-plans: faint lines)", xlabel="training step",
              ylabel="learning rate")
    ax_loss.set(title="Training loss (10-step mean)", xlabel="training step", ylabel="cross-entropy")
    # Battery and temperature of the manager's run (all policies share the gate; their
    # device paths differ only by where they stopped).
    main = next((r for r in runs if r.policy == "manager"), first)
    rows = [r for r in main.result.rows if r["time_s"] is not None]
    minutes = np.array([r["time_s"] for r in rows], dtype=float) / 60.0
    ax_bat.plot(minutes, [100.0 * r["level"] for r in rows], color="#2ca02c", label="battery (%)")
    ax_bat.axhline(100.0 * main.result.battery_floor, color="#2ca02c", ls="--", lw=1,
                   label=f"floor {main.result.battery_floor:.0%}")
    ax_bat.set(title=f"Device ({main.policy} run)", xlabel="simulated time (min)",
               ylabel="battery level (%)")
    ax_t = ax_bat.twinx()
    ax_t.plot(minutes, [r["temperature_c"] for r in rows], color="#d62728", label="skin temp (°C)")
    for status in (ThermalStatus.LIGHT, ThermalStatus.MODERATE, ThermalStatus.SEVERE):
        ax_t.axhline(profile.threshold(status), color="#d62728", ls=":", lw=0.8)
        ax_t.text(minutes[-1] if len(minutes) else 0, profile.threshold(status), status.name,
                  color="#d62728", fontsize=7, ha="right", va="bottom")
    ax_t.set_ylabel("skin temperature (°C)")
    lines = ax_bat.get_legend_handles_labels()
    lines2 = ax_t.get_legend_handles_labels()
    ax_bat.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower left")
    ax_lr.legend(fontsize=8)
    ax_loss.legend(fontsize=8)
    fig.suptitle(f"{first.profile} / {first.scenario}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _accuracy_figure(summaries: Sequence[dict[str, Any]], path: Path) -> None:
    profiles = list(dict.fromkeys(s["profile"] for s in summaries))
    scenarios = list(dict.fromkeys(s["scenario"] for s in summaries))
    policies = list(dict.fromkeys(s["policy"] for s in summaries))
    fig, axes = plt.subplots(1, len(profiles), figsize=(5 * len(profiles), 4), squeeze=False,
                             sharey=True)
    width = 0.8 / max(len(policies), 1)
    for ax, prof in zip(axes[0], profiles, strict=True):
        x = np.arange(len(scenarios))
        for i, pol in enumerate(policies):
            vals = [next((100.0 * (s["accuracy"] or 0.0) for s in summaries if s["profile"] == prof
                          and s["scenario"] == sc and s["policy"] == pol), np.nan) for sc in scenarios]
            ax.bar(x + (i - (len(policies) - 1) / 2) * width, vals, width, label=pol,
                   color=COLORS.get(pol))
        before = [s["accuracy_before"] for s in summaries if s["profile"] == prof and s["accuracy_before"]]
        if before:
            ax.axhline(100.0 * before[0], color="black", ls="--", lw=1, label="before fine-tuning")
        ax.set_xticks(x, scenarios, rotation=20, ha="right", fontsize=8)
        ax.set(title=prof, ylabel="held-out user accuracy (%)")
        lo = min([100.0 * b for b in before] + [80.0])
        ax.set_ylim(max(0.0, lo - 5.0), 100.0)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=len(labels))
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(runs: Sequence[Any], out_dir: str | Path, *, title: str = "mobile-lr simulation",
                 notes: Sequence[str] = (), summaries: Sequence[dict[str, Any]] | None = None) -> Path:
    """Write ``report.md``, ``report.html`` and the PNGs into ``out_dir``; returns the Markdown path.

    ``runs`` are :class:`mobile_lr.sim.simulate.PolicyRun` objects (plotted); ``summaries``
    replace their own summaries in the tables (e.g. accuracies averaged over seeds).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [r.summary() for r in runs] if summaries is None else list(summaries)
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in runs:
        groups.setdefault((r.profile, r.scenario), []).append(r)
    images = []
    for (prof, scen), group in groups.items():
        name = f"run-{prof}-{scen}.png"
        _run_figure(group, out / name)
        images.append((f"{prof} / {scen}", name))
    _accuracy_figure(summaries, out / "accuracy.png")
    md = [f"# {title}", "", *notes, "", "## Summary", "", _markdown_table(summaries), "",
          "![accuracy per policy and scenario](accuracy.png)", "", "## Runs", ""]
    for caption, name in images:
        md += [f"### {caption}", "", f"![{caption}]({name})", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in SUMMARY_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(s.get(k), f))}</td>"
                                     for k, _, f in SUMMARY_COLUMNS) + "</tr>" for s in summaries)
    figs = "".join(f"<h3>{html.escape(c)}</h3><img src='{html.escape(n)}' alt='{html.escape(c)}'>"
                   for c, n in images)
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes if n)
    (out / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{notes_html}<h2>Summary</h2><table><tr>{head}</tr>{body}</table>"
        f"<img src='accuracy.png' alt='accuracy'><h2>Runs</h2>{figs}</body></html>\n", encoding="utf-8")
    return md_path
