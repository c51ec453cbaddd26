"""What the manager bought: paired accuracy gains over the peers, and the report's words for them.

Every policy of a (profile, scenario) cell ran on the same mini-batch orders
(seeds), so the manager's gain over a peer is the *paired* difference of held-out
accuracy, seed by seed; its spread over the batch orders is what says whether a
gain is real. The strongest peer of a cell is the peer with the highest mean
accuracy there (picked after the fact: optimistic for the peers, so a lead over it
is conservative). A gain is called

* ``ahead`` / ``behind`` when its mean is more than two standard errors of the paired
  differences (s.d. / sqrt(n)) and at least half a test sample away from zero,
* ``tied`` otherwise (within the spread),
* ``one order`` with a single batch order: a sign, not a verdict.

Accuracies are fractions in the summaries; gains are in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobile_lr.manager import PEAK_LR_POLICIES, recommended_setup
from mobile_lr.report.story import Timeline

__all__ = ["LIMITS", "Cell", "Gain", "accuracies", "compare_cell", "headline", "limited_by", "paired_gain",
           "paragraph", "peak_note", "signed"]


@dataclass(frozen=True)
class Gain:
    """The manager's accuracy minus one peer's, paired over the batch orders (points)."""

    peer: str
    peer_mean: float        # the peer's mean accuracy (%)
    mean: float
    sd: float | None        # None with one batch order
    lo: float
    hi: float
    n: int
    verdict: str            # "ahead", "behind", "tied" or "one order"
    diffs: tuple[float, ...] = ()   # the paired differences, one per batch order

    def spread(self) -> str:
        """``+0.9 ± 0.3`` (mean ± s.d.) or ``+0.9`` with one batch order."""
        return signed(self.mean) if self.sd is None else f"{signed(self.mean)} ± {self.sd:.1f}"


@dataclass(frozen=True)
class Cell:
    """One (profile, scenario): the manager's summary, its gain over every peer, the strongest."""

    profile: str
    scenario: str
    manager: Mapping[str, Any]
    gains: tuple[Gain, ...]

    @property
    def strongest(self) -> Gain | None:
        return max(self.gains, key=lambda g: g.peer_mean) if self.gains else None


def accuracies(summary: Mapping[str, Any]) -> list[float]:
    """A summary's held-out accuracies, one per batch order (``accuracy_seeds`` or ``accuracy``)."""
    seeds = summary.get("accuracy_seeds")
    values = seeds if seeds else [summary.get("accuracy")]
    return [float(v) for v in values if v is not None]


def paired_gain(peer: str, manager: Sequence[float], other: Sequence[float],
                resolution: float = 0.0) -> Gain:
    """The :class:`Gain` of ``manager`` over ``other`` (accuracies as fractions, same seeds in the
    same order); ``resolution`` is one test sample in points (0: unknown)."""
    d = 100.0 * (np.asarray(manager, dtype=float) - np.asarray(other, dtype=float))
    n = len(d)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else None
    if sd is None:
        verdict = "one order"
    else:
        se = sd / math.sqrt(n)
        clear = abs(mean) > 2.0 * se and abs(mean) >= resolution / 2.0 and mean != 0.0
        verdict = ("ahead" if mean > 0 else "behind") if clear else "tied"
    return Gain(peer, 100.0 * float(np.mean(other)), mean, sd, float(d.min()), float(d.max()), n,
                verdict, tuple(float(x) for x in d))


def compare_cell(rows: Sequence[Mapping[str, Any]], resolution: float = 0.0) -> Cell | None:
    """The :class:`Cell` of one (profile, scenario)'s summaries; None without a manager row."""
    manager = next((r for r in rows if r["policy"] == "manager"), None)
    if manager is None or not accuracies(manager):
        return None
    mine = accuracies(manager)
    gains = []
    for r in rows:
        theirs = accuracies(r)
        if r["policy"] != "manager" and len(theirs) == len(mine):
            gains.append(paired_gain(r["policy"], mine, theirs, resolution))
    return Cell(manager["profile"], manager["scenario"], manager, tuple(gains))


def _minutes(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f} h" if seconds >= 3 * 3600 else f"{seconds / 60.0:.1f} min"


def signed(x: float) -> str:
    """``+0.3``, ``-1.2``; a value that rounds to zero is ``+0.0`` (never ``-0.0``)."""
    return f"{(round(x, 1) or 0.0):+.1f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


#: A budget stop's detail (the planner's limiting factor) in words.
LIMITS = {"battery": "the battery floor", "thermal": "the thermal limit", "time": "the OS window closing"}
_PAUSES = {"thermal": "to cool down", "battery": "to charge", "battery-low": "to charge",
           "not-charging": "for the charger"}


def _detail(summary: Mapping[str, Any], tl: Timeline | None) -> str:
    """What a ``budget`` stop ran into (battery, thermal, time): the session's word for it."""
    if summary.get("stop_detail"):
        return str(summary["stop_detail"])
    if tl is not None and tl.stop is not None and ": " in tl.stop.label:
        return tl.stop.label.partition(": ")[2]
    return ""


def limited_by(summary: Mapping[str, Any], tl: Timeline | None, nominal: int | None,
               limit_c: float | None = None) -> str:
    """One sentence: what ended the manager's run, after how many of the nominal steps."""
    steps = summary["steps"]
    of = f"{steps} of {nominal} nominal steps" if nominal else f"{_plural(steps, 'step')}"
    when = _minutes(60.0 * summary["sim_minutes"])
    reason = summary["stop_reason"]
    if reason == "done":
        return f"Nothing cut the run: the nominal {steps} steps ran ({when})."
    what = {"windows-over": "the OS windows", "deadline": "the deadline"}.get(reason)
    if reason in ("budget", "budget-cut"):
        detail = _detail(summary, tl)
        what = LIMITS.get(detail, f"the budget ({detail})" if detail else "the budget")
        if detail == "battery":
            what += f" ({100.0 * summary['battery_floor']:.0f} %)"
        elif detail == "thermal" and limit_c is not None:
            what += f" ({limit_c:.1f} °C skin)"
    if what is None:
        what = f"the session ({reason})"
    return f"{what[0].upper()}{what[1:]} ended the run after {of} ({when})."


def peak_note(tl: Timeline | None, base_lr: float | None, nominal: int | None, *,
              short: bool = False) -> str:
    """Why the manager's LR curve peaks above the others' (empty when it does not); ``short``
    for the report's paragraph (the figure carries the formula)."""
    if tl is None or base_lr is None or not len(tl.lr) or base_lr <= 0:
        return ""
    factor = float(np.nanmax(tl.lr)) / base_lr
    if factor < 1.005:
        return ""
    formula = ""
    if tl.first_plan and nominal:
        ema = recommended_setup("ort", None, 1.0, nominal, {"averaging": "ema"})
        rule = dict(ema.config.peak_lr or {"type": "none"})
        name = rule.pop("type")
        expected = PEAK_LR_POLICIES[name](tl.first_plan, nominal, rule)
        formula = (f" = min({rule.get('max_factor')}, ({nominal} / {tl.first_plan})^{rule.get('power')})"
                   if name == "budget_power" and abs(expected - factor) <= 2e-3 * factor else "")
    convention = float(recommended_setup("ort", None, 1.0, max(nominal or 1, 1),
                                         {"averaging": "schedulefree"}).schedule["base_lr"])
    if not formula and abs(convention - factor) <= 2e-3 * factor:
        # not a raised peak: schedule-free AdamW's LR is stated relative to the bundle's AdamW LR
        if short:
            return f"LR {factor:.2f} × the base (schedule-free AdamW's LR convention)"
        return (f"The manager's LR is {factor:.2f} × the base LR: its set-up trains schedule-free "
                f"AdamW, whose LR is {convention:g} × the bundle's (an AdamW LR) by convention.")
    if short:
        return f"peak LR {factor:.2f} × the base (raised for a first plan shorter than the nominal)"
    why = ""
    if tl.first_plan and nominal:
        why = f" (first plan {tl.first_plan} of {nominal} nominal steps{formula})"
    return (f"The manager's peak LR is {factor:.2f} × the base LR: its set-up raises the peak when the "
            f"first plan is shorter than the nominal{why}, because a short fine-tune does best with "
            "a higher LR.")


def _manager_sentence(tl: Timeline | None, peak: str) -> str:
    if tl is None:
        return ""
    last = f" (last {tl.replans[-1].label} steps)" if tl.replans else ""
    parts = [f"first plan {tl.first_plan} steps" if tl.first_plan is not None else "",
             _plural(len(tl.replans), "re-plan") + last]
    by_reason: dict[str, list[float]] = {}
    for p in tl.manager_pauses:
        by_reason.setdefault(_PAUSES.get(p.reason, f"({p.reason})"), []).append(p.end_s - p.start_s)
    parts += [f"{_plural(len(v), 'pause')} {k} ({_minutes(sum(v))})" for k, v in by_reason.items()]
    if not by_reason:
        parts.append("no pause for heat or battery")
    closed = [p.end_s - p.start_s for p in tl.pauses if p.os_window]
    if closed:
        parts.append(f"{_minutes(sum(closed))} waiting for closed OS windows")
    if tl.stop is not None:
        parts.append(f"stop at {_minutes(tl.stop.time_s)} ({tl.stop.label})")
    if peak:
        parts.append(peak)
    return "**Manager:** " + ", ".join(p for p in parts if p) + "."


def gain_sentence(cell: Cell) -> str:
    """Against the strongest peer: both accuracies, the paired gain with its spread, the verdict."""
    best = cell.strongest
    mine = 100.0 * float(np.mean(accuracies(cell.manager)))
    if best is None:
        return f"**Bought:** {mine:.1f} % held-out accuracy (no peer to compare with)."
    if best.sd is None:
        spread = "one batch order, no spread: a sign, not a verdict"
    else:
        spread = (f"mean ± s.d. over {best.n} paired batch orders, range {signed(best.lo)} to "
                  f"{signed(best.hi)}")
    word = {"ahead": "ahead", "behind": "behind", "tied": "tied within the spread",
            "one order": "undecided"}[best.verdict]
    return (f"**Bought:** {mine:.1f} % against {best.peer_mean:.1f} % for the strongest peer, "
            f"{best.peer}: {best.spread()} points ({spread}), **{word}**.")


def paragraph(cell: Cell, tl: Timeline | None, *, nominal: int | None = None,
              base_lr: float | None = None, limit_c: float | None = None) -> str:
    """The report's paragraph for one (profile, scenario): what limited the run, what the manager
    did, what it bought against the strongest peer."""
    parts = ["**Limit:** " + limited_by(cell.manager, tl, nominal, limit_c),
             _manager_sentence(tl, peak_note(tl, base_lr, nominal, short=True)), gain_sentence(cell)]
    return " ".join(p for p in parts if p)


def headline(cells: Sequence[Cell], nominal: Mapping[str, int]) -> list[str]:
    """The verdict lines: where the budget cut the run and where it did not, the verdicts counted,
    the gain over the strongest peer pooled over every paired run, the cells it does not win named."""
    def kind(c: Cell) -> str:
        if c.scenario not in nominal:
            return "unknown"
        return "cut" if c.manager["steps"] < nominal[c.scenario] else "whole"

    out = []
    for cut, name in (("cut", "where the budget cut the run (fewer steps than the nominal)"),
                      ("whole", "where it did not"), ("unknown", "of a scenario whose nominal is unknown")):
        group = [c for c in cells if c.strongest is not None and kind(c) == cut]
        if not group:
            continue
        if cut == "cut":
            shares = [100.0 * c.manager["steps"] / nominal[c.scenario] for c in group]
            name += f", to {min(shares):.0f}-{max(shares):.0f} % of it" if len(group) > 1 \
                else f", to {shares[0]:.0f} % of it"
        best = [c.strongest for c in group if c.strongest is not None]
        counts = {v: sum(1 for g in best if g.verdict == v) for v in ("ahead", "tied", "behind", "one order")}
        said = ", ".join(f"{k} in {v}" for k, v in counts.items() if v)
        d = np.concatenate([g.diffs for g in best])
        pooled = signed(float(d.mean())) + " points"
        if len(d) > 1:
            pooled += f" (± {d.std(ddof=1) / math.sqrt(len(d)):.1f} s.e. over {len(d)} paired runs)"
        lo, hi = signed(min(g.mean for g in best)), signed(max(g.mean for g in best))
        span = f"from {lo} to {hi} per cell" if len(best) > 1 else "in that cell"
        if counts["one order"] == len(best):
            out.append(f"In the {_plural(len(group), 'cell')} {name}, with one batch order (no spread: a "
                       f"sign, not a verdict) the manager's gain over the strongest peer is {pooled}, "
                       f"{span}.")
            continue
        out.append(f"In the {_plural(len(group), 'cell')} {name}, the manager against the strongest peer "
                   f"of each is {said}; the gain is {pooled}, {span}.")
        for verdict, say in (("behind", "Behind"), ("tied", "Not a win (tied)")):
            named = [c for c in group if c.strongest is not None and c.strongest.verdict == verdict]
            if named:
                out.append(f"{say}: " + "; ".join(
                    f"{c.profile} / {c.scenario} ({c.strongest.spread()} against {c.strongest.peer})"
                    for c in named) + ".")
    peers = [c.strongest.peer for c in cells if c.strongest is not None]
    if len(peers) > 1:
        names = dict.fromkeys(g.peer for c in cells for g in c.gains)
        out.append("Strongest peer: " + ", ".join(f"{p} in {_plural(peers.count(p), 'cell')}"
                                                  for p in names) + ".")
    return out
