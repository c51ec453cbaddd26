"""``report.md`` and ``report.html`` of a simulation or the demo, written from one list of blocks.

The document, top to bottom: the title; the notes (a list); the verdict (where the
budget cut the run and where not, against the strongest peer); the gain table (per
(profile, scenario): steps, stop, each policy's accuracy with its spread, the
manager's paired gain over the strongest peer); one section per (profile, scenario)
with its paragraph (what limited the run, what the manager did, what it bought) and
its figure; the accuracy and gain figures; the full summary table. Markdown and HTML
are rendered from the same blocks, so they say the same thing.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.atomic_files import write_atomic
from mobile_lr.report import figures
from mobile_lr.report.story import Timeline, timeline
from mobile_lr.report.verdict import Cell, accuracies, compare_cell, headline, paragraph, peak_note

__all__ = ["SUMMARY_COLUMNS", "Assessment", "Table", "assess", "format_table", "gain_table", "write_report"]

# (key, header, format) of the summary table, shared by the CLI and the report.
SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    ("profile", "profile", "{}"),
    ("scenario", "scenario", "{}"),
    ("policy", "policy", "{}"),
    ("accuracy_before", "acc before", "{:.1%}"),
    ("accuracy", "acc after", "{:.1%}"),
    ("accuracy_sd", "acc s.d.", "±{:.1%}"),
    ("steps", "steps", "{}"),
    ("replans", "re-plans", "{}"),
    ("sim_minutes", "time (min)", "{:.1f}"),
    ("energy_j", "energy (J)", "{:.0f}"),
    ("energy_pct_battery", "energy (% batt)", "{:.2f} %"),
    ("battery_start", "batt start", "{:.1%}"),
    ("battery_end", "batt end", "{:.1%}"),
    ("battery_min", "batt min", "{:.1%}"),
    ("battery_floor", "floor", "{:.0%}"),
    ("max_thermal", "max thermal", "{}"),
    ("stop_reason", "stop", "{}"),
    ("final_loss", "final loss", "{:.3f}"),
]


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def _columns(summaries: Sequence[Mapping[str, Any]],
             columns: Sequence[str] | None) -> list[tuple[str, str, str]]:
    """The columns asked for; the spread column only when some summary has one."""
    cols = [c for c in SUMMARY_COLUMNS if columns is None or c[0] in columns]
    return [c for c in cols if c[0] != "accuracy_sd" or any(s.get(c[0]) is not None for s in summaries)]


@dataclass(frozen=True)
class Table:
    head: list[str]
    rows: list[list[str]]
    right: frozenset[int] = frozenset()   # right-aligned columns (numbers)

    def text(self) -> str:
        """Plain text, columns padded (what the CLI prints)."""
        cells = [self.head, *self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.head))]

        def line(row: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in self.right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

        return "\n".join([line(self.head), "  ".join("-" * w for w in widths), *map(line, self.rows)])


def format_table(summaries: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of run summaries (the CLI prints it)."""
    return _summary_table(summaries, columns).text()


# ----------------------------------------------------------------------------- blocks


Block = tuple[str, Any]   # ("h1"|"h2"|"h3"|"p"|"ul"|"table"|"img", payload)


def _md(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for kind, x in blocks:
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + x, ""]
        elif kind == "p":
            out += [x, ""]
        elif kind == "ul":
            out += [f"- {item}" for item in x] + [""]
        elif kind == "table":
            out.append("| " + " | ".join(x.head) + " |")
            out.append("|" + "|".join("---:" if i in x.right else "---" for i in range(len(x.head))) + "|")
            out += ["| " + " | ".join(r) + " |" for r in x.rows] + [""]
        elif kind == "img":
            src, alt, caption = x
            out += [f"![{alt}]({src})", ""] + ([f"*{caption}*", ""] if caption else [])
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escape, then Markdown's ``**bold**``, ``*italics*`` and `` `code` `` as HTML."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![*\w])\*([^*]+?)\*(?![*\w])", r"<em>\1</em>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;"
        "line-height:1.45}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 7px}th{background:#f3f3f3}td.n{text-align:right}"
        "figure{margin:1em 0}img{max-width:100%}figcaption{font-size:13px;color:#444}")


def _html(title: str, blocks: Sequence[Block]) -> str:
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body>"]
    for kind, x in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline(x)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(x)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in x) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in x.head)
            body = "".join("<tr>" + "".join(
                f"<td{' class=n' if i in x.right else ''}>{_inline(c)}</td>" for i, c in enumerate(r))
                + "</tr>" for r in x.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            src, alt, caption = x
            cap = f"<figcaption>{_inline(caption)}</figcaption>" if caption else ""
            out.append(f"<figure><img src='{html.escape(src)}' alt='{html.escape(alt)}'>{cap}</figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- content


def _summary_table(summaries: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Table:
    cols = _columns(summaries, columns)
    right = frozenset(i for i, (k, _, _) in enumerate(cols) if k not in ("profile", "scenario", "policy",
                                                                       "max_thermal", "stop_reason"))
    return Table([h for _, h, _ in cols], [[_fmt(s.get(k), f) for k, _, f in cols] for s in summaries], right)


def _mean_sd(accs: Sequence[float]) -> str:
    a = 100.0 * np.asarray(accs, dtype=float)
    return f"{a.mean():.1f}" if len(a) < 2 else f"{a.mean():.1f} ± {a.std(ddof=1):.1f}"


def gain_table(summaries: Sequence[Mapping[str, Any]], cells: Sequence[Cell],
               nominal: Mapping[str, int]) -> Table:
    """Per (profile, scenario): the manager's steps (of the nominal) and stop, each policy's
    accuracy (mean ± s.d. over batch orders, %), the paired gain over the strongest peer."""
    policies = list(dict.fromkeys(s["policy"] for s in summaries))
    head = ["profile", "scenario", "steps", "stop", *[f"{p} (%)" for p in policies],
            "strongest peer", "gain (points)", "verdict"]
    rows = []
    for c in cells:
        group = {s["policy"]: s for s in summaries
                 if (s["profile"], s["scenario"]) == (c.profile, c.scenario)}
        steps = f"{c.manager['steps']}" + (f" / {nominal[c.scenario]}" if c.scenario in nominal else "")
        best = c.strongest
        rows.append([c.profile, c.scenario, steps, str(c.manager["stop_reason"]),
                     *[_mean_sd(accuracies(group[p])) if p in group else "-" for p in policies],
                     best.peer if best else "-", best.spread() if best else "-",
                     best.verdict if best else "-"])
    right = frozenset(range(2, 2 + 1)) | frozenset(range(4, 4 + len(policies))) | {len(head) - 2}
    return Table(head, rows, right)


def _context(scenario: Any, profile: Any) -> dict[str, Any]:
    """What the text and the figure need from a scenario and profile (limits, thresholds).

    ``profile`` is the run's own profile (a ``--profile FILE.json`` is no built-in name) or a
    built-in name."""
    from mobile_lr.device import ThermalStatus, load_profile

    prof = load_profile(profile)
    thresholds = {s.name: prof.threshold(s) for s in (ThermalStatus.LIGHT, ThermalStatus.MODERATE,
                                                       ThermalStatus.SEVERE)}
    if scenario is None:
        return {"nominal": None, "limit_c": None, "thresholds": thresholds, "description": ""}
    return {"nominal": scenario.nominal_steps, "limit_c": scenario.policy.thermal_limit_c(prof),
            "thresholds": thresholds, "description": scenario.description}


def _scenario(name: str, scenarios: Mapping[str, Any] | None) -> Any:
    if scenarios is not None and name in scenarios:
        return scenarios[name]
    from mobile_lr.sim.scenario import builtin_scenarios, load_scenario

    return load_scenario(name) if name in builtin_scenarios() else None


def _caption(tl: Timeline, policies: Sequence[str]) -> str:
    return ("Every panel shares the simulated-time axis. " f"Policies: {', '.join(policies)}; the marks "
            "are the manager's run: grey = no OS window open, orange = the manager paused (heat or "
            "battery), purple dots = a re-plan (▼ on top), black dashes = a scenario event, red = the "
            f"manager's stop ({tl.stop.label if tl.stop else '-'}). All policies share the manager's "
            "safety gate, so their battery and temperature curves nearly coincide.")


@dataclass(frozen=True)
class Assessment:
    """The verdict of a set of summaries: one :class:`Cell` per (profile, scenario) with a
    manager, the verdict lines and the gain table."""

    cells: list[Cell]
    lines: list[str]
    table: Table

    def cell(self, profile: str, scenario: str) -> Cell | None:
        return next((c for c in self.cells if (c.profile, c.scenario) == (profile, scenario)), None)

    def markdown(self) -> str:
        """The verdict lines as a list and the gain table (what the docs quote)."""
        return _md([("ul", self.lines or ["no comparison"]), ("table", self.table)])


def assess(summaries: Sequence[Mapping[str, Any]], nominal: Mapping[str, int],
           resolution: float = 0.0) -> Assessment:
    """Compare the manager with its peers in every (profile, scenario) of ``summaries``;
    ``nominal`` maps scenario names to their nominal steps (a run with fewer was cut)."""
    keys = list(dict.fromkeys((s["profile"], s["scenario"]) for s in summaries))
    cells = [c for c in (compare_cell([s for s in summaries if (s["profile"], s["scenario"]) == k],
                                      resolution) for k in keys) if c is not None]
    return Assessment(cells, headline(cells, nominal), gain_table(summaries, cells, nominal))


def write_report(runs: Sequence[Any], out_dir: str | Path, *, title: str = "mobile-lr simulation",
                 notes: Sequence[str] = (), summaries: Sequence[Mapping[str, Any]] | None = None,
                 scenarios: Mapping[str, Any] | None = None, base_lr: float | None = None,
                 resolution: float = 0.0, intro: Sequence[str] = ()) -> Path:
    """Write ``report.md``, ``report.html`` and the PNGs into ``out_dir``; returns the Markdown path.

    ``runs`` are :class:`mobile_lr.sim.simulate.PolicyRun` objects (plotted: one batch
    order); ``summaries`` replace their own summaries in the tables and the verdict (e.g.
    with ``accuracy_seeds``, the accuracies over several batch orders). ``scenarios`` maps
    scenario names to :class:`~mobile_lr.sim.scenario.Scenario` objects (built-in names
    are found without it); ``base_lr`` is the bundle's (to explain the manager's peak);
    ``resolution`` is one test sample in points (a smaller gain is a tie); ``intro`` are
    paragraphs before the verdict (what the document shows).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [r.summary() for r in runs] if summaries is None else list(summaries)
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in runs:
        groups.setdefault((r.profile, r.scenario), []).append(r)
    contexts = {k: _context(_scenario(k[1], scenarios), getattr(g[0], "device", None) or k[0])
                for k, g in groups.items()}
    nominal = {k[1]: c["nominal"] for k, c in contexts.items() if c["nominal"]}
    verdict = assess(summaries, nominal, resolution)
    sections: list[Block] = []
    for (prof, scen), group in groups.items():
        ctx = contexts[(prof, scen)]
        tls = [timeline(r.policy, r.result.rows, r.result.plan_history, r.result.stop_reason) for r in group]
        main = next((t for t in tls if t.policy == "manager"), None)
        name = f"run-{prof}-{scen}.png"
        figures.save(figures.run_figure(tls, title=f"{prof} / {scen}", floor=group[0].result.battery_floor,
                                        thresholds=ctx["thresholds"], limit_c=ctx["limit_c"],
                                        lr_note=peak_note(main, base_lr, ctx["nominal"])), out / name)
        sections.append(("h3", f"{prof} / {scen}"))
        if ctx["description"]:
            sections.append(("p", f"*{ctx['description']}*"))
        cell = verdict.cell(prof, scen)
        if cell is not None:
            sections.append(("p", paragraph(cell, main, nominal=ctx["nominal"], base_lr=base_lr,
                                            limit_c=ctx["limit_c"])))
        sections.append(("img", (name, f"{prof} / {scen}: LR, loss, battery, temperature",
                                 _caption(main or tls[0], [t.policy for t in tls]))))
    doc: list[Block] = [("h1", title)]
    if notes:
        doc.append(("ul", list(notes)))
    doc += [("p", p) for p in intro]
    if verdict.cells:
        doc += [("h2", "Verdict"), ("ul", verdict.lines or ["no comparison"]), ("table", verdict.table)]
    figures.save(figures.accuracy_figure(summaries), out / "accuracy.png")
    doc.append(("img", ("accuracy.png", "held-out accuracy per scenario and policy", "")))
    if any(c.gains for c in verdict.cells):
        figures.save(figures.gain_figure(verdict.cells), out / "gain.png")
        doc.append(("img", ("gain.png", "the manager's paired gain over each peer", "")))
    doc += [("h2", "Runs"), *sections, ("h2", "Summary of every run"), ("table", _summary_table(summaries))]
    md_path = out / "report.md"
    write_atomic(md_path, _md(doc))   # (a full disk leaves the old report or none, never half)
    write_atomic(out / "report.html", _html(title, doc))
    return md_path
