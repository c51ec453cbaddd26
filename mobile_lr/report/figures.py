"""The report's PNG figures (matplotlib, Agg backend: no screen needed).

* :func:`run_figure`: one (profile, scenario), four panels on one simulated-time
  axis: learning rate, training loss (log scale when it spans decades), battery
  level and skin temperature, every policy in its colour. On every panel: the
  closed OS windows (grey), the manager's pauses (orange), the scenario's events
  (black dashes: charger plugged or pulled, ambient change), the manager's re-plans
  (purple dots) and its stop (red). Labels sit above the top panel, the legend
  right of the panels, outside the data.
* :func:`accuracy_figure`: held-out accuracy per scenario and policy as dots (the
  mean over batch orders) with the range over the orders and the value written.
* :func:`gain_figure`: the manager's paired gain over each peer, with its range and a
  zero line: what the manager bought, cell by cell.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from mobile_lr.atomic_files import write_atomic
from mobile_lr.report.story import Timeline
from mobile_lr.report.verdict import LIMITS, Cell, accuracies

__all__ = ["COLORS", "accuracy_figure", "fleet_figure", "gain_figure", "run_figure", "save"]

# Policy colours; red is the stop's, purple the re-plans', black the events'.
COLORS = {"manager": "#1f77b4", "naive": "#ff7f0e", "constant": "#7f7f7f", "linear": "#bcbd22",
          "wsd": "#2ca02c", "replan": "#17becf", "sf-adamw": "#8c564b"}
_REPLAN, _EVENT, _STOP, _PAUSE, _CLOSED = "#9467bd", "#222222", "#d62728", "#ff7f0e", "#d9d9d9"
_DPI = 100


def _color(policy: str) -> str:
    return COLORS.get(policy, "#e377c2")


def _time_axis(end_s: float) -> tuple[float, str]:
    """Seconds per unit and the axis label: hours for runs over 3 h, else minutes."""
    return (3600.0, "simulated time (h)") if end_s > 3 * 3600 else (60.0, "simulated time (min)")


def _broken(x: np.ndarray, y: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``y`` with a NaN after each index of ``gaps``: the line breaks across a rest."""
    if not len(gaps):
        return x, y
    return np.insert(x, gaps + 1, np.nan), np.insert(y, gaps + 1, np.nan)


def _smooth(loss: np.ndarray, k: int = 10) -> np.ndarray:
    """Trailing mean over ``k`` steps (the first steps average what there is)."""
    c = np.cumsum(np.nan_to_num(loss))
    out = np.empty_like(c)
    out[:k] = c[:k] / np.arange(1, min(k, len(c)) + 1)
    out[k:] = (c[k:] - c[:-k]) / k
    return out


def _marks(axes: Sequence[Any], main: Timeline, unit: float) -> list[Any]:
    """Draw the manager's story on every panel; returns the legend handles of what was drawn."""
    handles = []
    closed = [p for p in main.pauses if p.os_window]
    for ax in axes:
        for p in closed:
            ax.axvspan(p.start_s / unit, p.end_s / unit, color=_CLOSED, alpha=0.6, lw=0, zorder=0)
        for p in main.manager_pauses:
            ax.axvspan(p.start_s / unit, p.end_s / unit, color=_PAUSE, alpha=0.25, lw=0, zorder=0)
        for e in main.events:
            ax.axvline(e.time_s / unit, color=_EVENT, ls="--", lw=1.1, zorder=3)
        for r in main.replans:
            ax.axvline(r.time_s / unit, color=_REPLAN, ls=":", lw=0.9, alpha=0.8, zorder=1)
        if main.stop is not None:
            ax.axvline(main.stop.time_s / unit, color=_STOP, lw=1.4, zorder=3)
    top = axes[0]
    tx = top.get_xaxis_transform()
    if main.replans:
        top.plot([r.time_s / unit for r in main.replans], [0.97] * len(main.replans), "v", color=_REPLAN,
                 ms=5, transform=tx, clip_on=False, zorder=4)
        handles.append(Line2D([], [], color=_REPLAN, ls=":", marker="v", ms=5,
                              label=f"manager re-plan ({len(main.replans)})"))
    for e in main.events:
        top.text(e.time_s / unit, 1.03, e.label, transform=tx, ha="center", va="bottom", fontsize=8,
                 color=_EVENT)
    if main.events:
        handles.append(Line2D([], [], color=_EVENT, ls="--", label="scenario event"))
    if main.manager_pauses:
        handles.append(Patch(color=_PAUSE, alpha=0.35, label="manager pause"))
    if closed:
        handles.append(Patch(color=_CLOSED, alpha=0.8, label="no OS window open"))
    if main.stop is not None:
        reason, _, detail = main.stop.label.partition(": ")
        top.text(main.stop.time_s / unit, 1.03, f"stop: {LIMITS.get(detail, detail) or reason}",
                 transform=tx, ha="right", va="bottom", fontsize=8, color=_STOP)
        handles.append(Line2D([], [], color=_STOP, label="manager stop"))
    return handles


def _right_labels(ax: Any, lines: Sequence[tuple[float, str, str]], gap: float = 0.09) -> None:
    """Name horizontal reference lines right of the panel, outside the data; labels of lines
    closer than ``gap`` (axes fraction) are pushed apart and joined to their line by a tick."""
    lo, hi = ax.get_ylim()
    scale = ax.get_yscale() == "log"

    def frac(y: float) -> float:
        if scale:
            return float((np.log10(y) - np.log10(lo)) / (np.log10(hi) - np.log10(lo)))
        return (y - lo) / (hi - lo)

    placed: list[float] = []
    for y, text, color in sorted(lines, key=lambda t: t[0]):
        f = frac(y)
        if not 0.0 <= f <= 1.0:
            continue
        at = max(f, placed[-1] + gap) if placed else f
        placed.append(at)
        ax.annotate(text, xy=(1.0, f), xycoords="axes fraction", xytext=(1.03, at),
                    textcoords="axes fraction", va="center", ha="left", fontsize=7, color=color,
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6})


def save(fig: Figure, path: Path, dpi: int = _DPI) -> None:
    """Write ``fig`` (in the format of ``path``'s suffix, PNG without one) atomically and free it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=dpi, format=Path(path).suffix[1:].lower() or "png")
    finally:
        plt.close(fig)
    write_atomic(path, buf.getvalue())


def run_figure(timelines: Sequence[Timeline], *, title: str, floor: float,
               thresholds: Mapping[str, float], limit_c: float | None = None,
               lr_note: str = "") -> Figure:
    """The four-panel figure of one (profile, scenario); see the module doc.

    ``thresholds`` maps thermal status names to the skin temperature (°C) where they
    begin; ``limit_c`` is the user's limit (no step may end above it); ``lr_note`` is
    written under the title (why the manager's peak differs).
    """
    main = next((t for t in timelines if t.policy == "manager"), timelines[0])
    end = max(t.end_s for t in timelines)
    unit, xlabel = _time_axis(end)
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(11, 10.5),
                             gridspec_kw={"height_ratios": [1.15, 1.15, 0.9, 0.9]})
    ax_lr, ax_loss, ax_bat, ax_tmp = axes
    spans = []
    for tl in sorted(timelines, key=lambda t: t.policy == "manager"):  # the manager on top
        lw = 1.9 if tl.policy == "manager" else 1.2
        gaps = tl.step_gaps(min_s=0.02 * end)  # short pauses are shaded, the line goes on
        x = tl.time_s / unit
        ax_lr.plot(*_broken(x, tl.lr, gaps), color=_color(tl.policy), lw=lw, label=tl.policy)
        smooth = _smooth(tl.loss)
        ax_loss.plot(*_broken(x, smooth, gaps), color=_color(tl.policy), lw=lw)
        spans.append(smooth[np.isfinite(smooth) & (smooth > 0)])
        dx = tl.device_time_s / unit
        ax_bat.plot(dx, 100.0 * tl.level, color=_color(tl.policy), lw=lw)
        ax_tmp.plot(dx, tl.temperature_c, color=_color(tl.policy), lw=lw)
    values = np.concatenate(spans) if spans else np.zeros(0)
    log_loss = len(values) > 1 and values.max() / values.min() > 30.0
    if log_loss:
        ax_loss.set_yscale("log")
    top_lr = max((float(np.nanmax(t.lr)) for t in timelines if len(t.lr)), default=1.0)
    ax_lr.set_ylim(0.0, 1.12 * top_lr)  # headroom: the re-plan marks sit above the curves
    ax_lr.set_ylabel("learning rate")
    ax_loss.set_ylabel("training loss\n(10-step mean" + (", log)" if log_loss else ")"))
    ax_bat.axhline(100.0 * floor, color="#2ca02c", ls="--", lw=1)
    ax_bat.set_ylabel("battery (%)")
    lo_t = float(np.nanmin([np.nanmin(t.temperature_c) for t in timelines]))
    hi_t = float(np.nanmax([np.nanmax(t.temperature_c) for t in timelines]))
    refs = [(temp, f"{name} from {temp:.0f} °C", "#d62728") for name, temp in thresholds.items()
            if lo_t - 3.0 <= temp <= hi_t + 6.0]
    for temp, _, _ in refs:
        ax_tmp.axhline(temp, color="#d62728", ls=":", lw=0.8)
    if limit_c is not None:
        ax_tmp.axhline(limit_c, color="#d62728", ls="--", lw=1.1)
        refs.append((limit_c, f"user's limit {limit_c:.1f} °C", "#d62728"))
        ax_tmp.set_ylim(min(lo_t, limit_c) - 1.5, max(hi_t, limit_c, *(r[0] for r in refs)) + 1.5)
    ax_tmp.set_ylabel("skin temperature (°C)")
    ax_tmp.set_xlabel(xlabel)
    ax_tmp.set_xlim(0.0, end / unit * 1.01)
    for ax in axes:
        ax.grid(alpha=0.25, lw=0.5)
    _right_labels(ax_bat, [(100.0 * floor, f"user's floor {floor:.0%}", "#2ca02c")])
    _right_labels(ax_tmp, refs)
    marks = _marks(axes, main, unit)
    policy_handles = [Line2D([], [], color=_color(t.policy), lw=2, label=t.policy) for t in timelines]
    fig.legend(handles=policy_handles + marks, loc="upper left", bbox_to_anchor=(0.835, 0.87),
               fontsize=8, frameon=False, title="policy / marks", title_fontsize=8, alignment="left")
    fig.suptitle(title, x=0.08, y=0.985, ha="left", fontsize=12)
    if lr_note:
        fig.text(0.08, 0.955, "\n".join(textwrap.wrap(lr_note, 125)), fontsize=8.5, va="top", ha="left")
    fig.subplots_adjust(left=0.08, right=0.83, top=0.87, bottom=0.055, hspace=0.18)
    return fig


def _policies(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(s["policy"] for s in summaries))
    return sorted(names, key=lambda p: p != "manager")


def _separators(ax: Any, groups: int, per_group: int) -> None:
    """Faint lines between the groups of rows of a dot plot."""
    for i in range(1, groups):
        ax.axhline(i * (per_group + 1) - 1, color="#cccccc", lw=0.6)


def accuracy_figure(summaries: Sequence[Mapping[str, Any]]) -> Figure:
    """Held-out accuracy: a dot per (scenario, policy) at the mean over batch orders, a bar over
    their range, ticks for each order, the mean written beside it."""
    profiles = list(dict.fromkeys(s["profile"] for s in summaries))
    scenarios = list(dict.fromkeys(s["scenario"] for s in summaries))
    policies = _policies(summaries)
    rows = len(scenarios) * (len(policies) + 1)
    fig, axes = plt.subplots(1, len(profiles), sharey=True, sharex=True, squeeze=False,
                             figsize=(3.6 * len(profiles) + 2.4, 0.2 * rows + 1.9))
    n_orders = max((len(accuracies(s)) for s in summaries), default=1)
    for ax, prof in zip(axes[0], profiles, strict=True):
        before = [s["accuracy_before"] for s in summaries
                  if s["profile"] == prof and s.get("accuracy_before")]
        for i, scen in enumerate(scenarios):
            for j, pol in enumerate(policies):
                s = next((s for s in summaries if (s["profile"], s["scenario"], s["policy"])
                          == (prof, scen, pol)), None)
                accs = 100.0 * np.array(accuracies(s) if s else [], dtype=float)
                if not len(accs):
                    continue
                y = i * (len(policies) + 1) + j
                c = _color(pol)
                ax.hlines(y, accs.min(), accs.max(), color=c, lw=2.2, alpha=0.5)
                ax.plot(accs, [y] * len(accs), "|", color=c, ms=6, alpha=0.8)
                ax.plot(accs.mean(), y, "o", color=c, ms=5.5, mec="white", mew=0.6)
                ax.text(accs.max(), y, f"  {accs.mean():.1f}", va="center", fontsize=7, color=c)
        head = prof + (f"\nbefore fine-tuning {100.0 * before[0]:.1f} %" if before else "")
        ax.set_title(head, fontsize=9)
        ax.set_xlabel("held-out accuracy (%)")
        ax.grid(axis="x", alpha=0.3, lw=0.5)
        _separators(ax, len(scenarios), len(policies))
    lo, hi = axes[0][0].get_xlim()
    axes[0][0].set_xlim(lo, hi + 0.12 * (hi - lo))  # room for the values
    centers = [i * (len(policies) + 1) + (len(policies) - 1) / 2 for i in range(len(scenarios))]
    axes[0][0].set_yticks(centers, scenarios, fontsize=8)
    axes[0][0].set_ylim(rows - 0.5, -1.0)
    handles = [Line2D([], [], color=_color(p), marker="o", lw=2, alpha=0.8, label=p) for p in policies]
    spread = (f"dot: mean over {n_orders} batch orders, bar and ticks: each order"
              if n_orders > 1 else "one batch order")
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0 - 2.1 / fig.get_figwidth(), 0.88),
               fontsize=8, frameon=False, title="policy", title_fontsize=8)
    fig.suptitle(f"Held-out accuracy after fine-tuning ({spread})", fontsize=10)
    fig.subplots_adjust(left=1.45 / fig.get_figwidth(), right=1.0 - 2.2 / fig.get_figwidth(),
                        top=1.0 - 0.95 / fig.get_figheight(), bottom=0.6 / fig.get_figheight(),
                        wspace=0.08)
    return fig


def gain_figure(cells: Sequence[Cell]) -> Figure:
    """The manager's paired gain over each peer (points) per (profile, scenario): the dot is the
    mean over batch orders, the bar their range; the strongest peer's value is written."""
    peers = list(dict.fromkeys(g.peer for c in cells for g in c.gains))
    rows = len(cells) * (len(peers) + 1)
    fig, ax = plt.subplots(figsize=(8.6, 0.19 * rows + 1.8))
    for i, cell in enumerate(cells):
        best = cell.strongest
        for g in cell.gains:
            y = i * (len(peers) + 1) + peers.index(g.peer)
            c = _color(g.peer)
            ax.hlines(y, g.lo, g.hi, color=c, lw=2.2, alpha=0.5)
            strong = best is not None and g.peer == best.peer
            ax.plot(g.mean, y, "D" if strong else "o", color=c, ms=6 if strong else 4.5, mec="black" if strong
                    else "white", mew=0.7)
            if strong:
                ax.text(max(g.hi, g.mean), y, f"  {g.spread()} ({g.verdict})", va="center", fontsize=7)
    ax.axvline(0.0, color="black", lw=0.9)
    _separators(ax, len(cells), len(peers))
    centers = [i * (len(peers) + 1) + (len(peers) - 1) / 2 for i in range(len(cells))]
    ax.set_yticks(centers, [f"{c.profile} / {c.scenario}" for c in cells], fontsize=8)
    ax.set_ylim(rows - 0.5, -1.0)
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo, hi + 0.3 * (hi - lo))
    ax.set_xlabel("manager minus peer, held-out accuracy (percentage points; > 0: the manager is ahead)")
    ax.grid(axis="x", alpha=0.3, lw=0.5)
    handles = [Line2D([], [], color=_color(p), marker="o", lw=2, alpha=0.8, label=p) for p in peers]
    handles.append(Line2D([], [], color="white", marker="D", mec="black", mfc="white", lw=0,
                          label="strongest peer"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="peer", title_fontsize=8)
    ax.set_title("What the manager bought: paired gain over each peer\n(dot: mean over batch orders, "
                 "bar: their range; written: the strongest peer's mean ± s.d. and verdict)", fontsize=9)
    fig.tight_layout()
    return fig


_STOP_COLORS = {"done": "#2ca02c", "window": "#7f7f7f", "battery": "#1f77b4", "thermal": "#d62728",
                "not-charging": "#9467bd", "battery-low": "#17becf", "no-window": "#bcbd22"}


def fleet_figure(out: Mapping[str, Any]) -> Figure:
    """``mobile-lr fleet``'s result: per (profile, scenario) the steps a phone could run as a
    share of the nominal (p50 dot, p25-p75 thick, p5-p95 thin) and why the phones' training
    ended (shares of the phones, stacked to 100 %)."""
    cells = list(out["cells"])
    labels = [f"{c['profile']} / {c['scenario']}" for c in cells]
    y = np.arange(len(cells))
    fig, (ax_s, ax_r) = plt.subplots(1, 2, sharey=True, figsize=(12, 0.42 * len(cells) + 2.2),
                                     gridspec_kw={"width_ratios": [1.2, 1.0]})
    for i, c in enumerate(cells):
        q = {k: 100.0 * v / c["nominal_steps"] for k, v in c["steps"].items()}
        ax_s.hlines(i, q["p5"], q["p95"], color="#1f77b4", lw=1.2)
        ax_s.hlines(i, q["p25"], q["p75"], color="#1f77b4", lw=5, alpha=0.5)
        ax_s.plot(q["p50"], i, "o", color="#1f77b4", ms=6, mec="white")
        ax_s.text(max(q["p95"], q["p50"]), i, f"  {c['steps']['p50']:.0f} of {c['nominal_steps']}",
                  va="center", fontsize=7)
    ax_s.axvline(100.0, color="black", lw=0.9, ls="--")
    ax_s.text(100.0, -0.8, "nominal", ha="center", va="bottom", fontsize=7)
    ax_s.set_xlim(0.0, max(130.0, ax_s.get_xlim()[1] * 1.1))
    ax_s.set_xlabel("steps a phone could run (% of the scenario's nominal)")
    ax_s.set_title("dot: median phone; bars: p25-p75 and p5-p95 of the phones", fontsize=8)
    ax_s.set_yticks(y, labels, fontsize=8)
    ax_s.set_ylim(len(cells) - 0.5, -1.2)
    reasons = [r for r in _STOP_COLORS if any(c["stop_reasons"].get(r) for c in cells)]
    left = np.zeros(len(cells))
    for r in reasons:
        share = np.array([100.0 * c["stop_reasons"].get(r, 0) / max(c["device_days"], 1) for c in cells])
        ax_r.barh(y, share, left=left, color=_STOP_COLORS[r], label=r, height=0.6)
        left += share
    ax_r.set_xlim(0.0, 100.0)
    ax_r.set_xlabel("why the day's training ended (% of the phones)")
    ax_r.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=8, frameon=False)
    for ax in (ax_s, ax_r):
        ax.grid(axis="x", alpha=0.3, lw=0.5)
    cfg = out["config"]
    fig.suptitle(f"mobile-lr fleet: {cfg['devices'] * cfg['days']} device-days ({cfg['devices']} phones × "
                 f"{cfg['days']} day(s), seed {cfg['seed']})", fontsize=10)
    fig.tight_layout()
    return fig
