"""The run report: timelines read back from real runs, the verdict's statistics and words, the
figures' marks, and report.html rendered in a real browser (headless Chromium).

The runs are real: the exported digits model trains in ONNX Runtime Training on simulated
phones (flagship on a hot day: thermal pauses; mid-range with the charger pulled: an event).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest

from mobile_lr.report import assess, write_report
from mobile_lr.report.document import SUMMARY_COLUMNS
from mobile_lr.report.figures import accuracy_figure, gain_figure, run_figure
from mobile_lr.report.story import timeline
from mobile_lr.report.verdict import compare_cell, headline, paired_gain, signed
from mobile_lr.sim.scenario import load_scenario
from mobile_lr.sim.simulate import bundle_schedule, simulate

POLICIES = ("manager", "naive", "constant")
CELLS = (("flagship", "hot-day"), ("mid-range", "unplugged-midway"))


@pytest.fixture(scope="module")
def demo_like(mlp_bundle, user_data):
    """The demo's shape on two cells: runs of seed 0 (plotted) and summaries over seeds 0 and 1."""
    train, test = user_data
    data = ((train.x, train.y), (test.x, test.y))
    runs, summaries = [], []
    for prof, scen in CELLS:
        for k in range(2):
            got = simulate(mlp_bundle, profile=prof, scenario=scen, policies=POLICIES, data=data, seed=k)
            if k == 0:
                runs += got
                summaries += [{**r.summary(), "accuracy_seeds": []} for r in got]
            for row, r in zip(summaries[-len(got):], got, strict=True):
                row["accuracy_seeds"].append(r.result.accuracy)
    for row in summaries:
        row["accuracy"] = float(np.mean(row["accuracy_seeds"]))
        row["accuracy_sd"] = float(np.std(row["accuracy_seeds"], ddof=1))
    return runs, summaries


def _run(runs, profile, scenario, policy="manager"):
    return next(r for r in runs if (r.profile, r.scenario, r.policy) == (profile, scenario, policy))


def _timeline(run):
    return timeline(run.policy, run.result.rows, run.result.plan_history, run.result.stop_reason)


@pytest.fixture(scope="module")
def report_dir(demo_like, mlp_bundle, tmp_path_factory):
    runs, summaries = demo_like
    out = tmp_path_factory.mktemp("report")
    write_report(runs, out, title="test report", notes=["first note", "second note"], summaries=summaries,
                 base_lr=bundle_schedule(mlp_bundle)["base_lr"], resolution=100 / 300)
    return out


def test_timeline_reads_pauses_events_replans_and_the_stop(demo_like):
    runs, _ = demo_like
    hot = _run(runs, "flagship", "hot-day")
    tl = _timeline(hot)
    assert len(tl.time_s) == hot.result.steps and np.all(np.diff(tl.time_s) > 0)
    thermal = [p for p in tl.manager_pauses if p.reason == "thermal"]
    assert thermal and all(p.end_s > p.start_s for p in thermal)
    assert len(tl.step_gaps()) == len(tl.pauses)          # each rest falls between two steps
    assert tl.stop is not None and tl.stop.label == "budget: thermal"  # the stop's detail is logged
    assert len(tl.replans) == len(hot.result.plan_history) - 1 > 0
    times = [r.time_s for r in tl.replans]
    assert times == sorted(times) and times[0] >= 0.0 and times[-1] <= tl.end_s
    assert tl.first_plan == hot.result.plan_history[0][1]
    unplug = _timeline(_run(runs, "mid-range", "unplugged-midway"))
    assert [e.label for e in unplug.events] == ["charger pulled"]
    assert 300.0 <= unplug.events[0].time_s < 330.0      # applied at the first decision after 300 s


def test_paired_gain_calls_ahead_tied_behind_from_the_spread():
    base = [0.90, 0.91, 0.90, 0.92]
    ahead = paired_gain("p", [a + 0.01 for a in base], base)
    assert ahead.verdict == "ahead" and ahead.mean == pytest.approx(1.0) and ahead.sd == pytest.approx(0.0)
    noisy = paired_gain("p", [0.91, 0.90, 0.93, 0.91], base)          # +1, -1, +3, -1 points
    assert noisy.verdict == "tied" and noisy.spread() == "+0.5 ± 1.9"
    behind = paired_gain("p", [a - 0.02 for a in base], [a + 0.001 for a in base])
    assert behind.verdict == "behind"
    tiny = paired_gain("p", [a + 0.001 for a in base], base, resolution=1 / 3)  # under half a sample
    assert tiny.verdict == "tied"
    assert paired_gain("p", [0.92], [0.90]).verdict == "one order"
    assert signed(-0.04) == "+0.0" and signed(-0.06) == "-0.1"


def test_strongest_peer_and_headline_name_every_cell_not_won():
    def rows(cell, mgr, peers):
        return [{"profile": "x", "scenario": cell, "policy": p, "accuracy_seeds": a, "steps": 50,
                 "stop_reason": "budget"} for p, a in [("manager", mgr), *peers.items()]]

    won = compare_cell(rows("cut", [0.92, 0.93, 0.92], {"naive": [0.90, 0.91, 0.90],
                                                        "constant": [0.91, 0.92, 0.91]}))
    assert won.strongest.peer == "constant" and won.strongest.verdict == "ahead"
    lost = compare_cell(rows("long", [0.90, 0.91, 0.90], {"constant": [0.92, 0.93, 0.92]}))
    lines = headline([won, lost], {"cut": 100, "long": 40})   # "long": 50 steps of 40, not cut
    assert lines[0].startswith("In the 1 cell where the budget cut the run")
    assert "ahead in 1" in lines[0] and "+1.0 points (± 0.0 s.e. over 3 paired runs)" in lines[0]
    assert lines[0].startswith("In the 1 cell where the budget cut the run (fewer steps than the "
                               "nominal), to 50 % of it, the manager")
    assert "Behind: x / long (-2.0 ± 0.0 against constant)." in lines
    assert lines[-1] == "Strongest peer: naive in 0 cells, constant in 2 cells."


def test_report_says_per_scenario_what_limited_what_the_manager_did_and_bought(report_dir, demo_like):
    _, summaries = demo_like
    md = (report_dir / "report.md").read_text()
    assert "- first note\n- second note\n" in md                      # notes as a list
    assert "## Verdict" in md and "where the budget cut the run" in md
    hot = md.split("### flagship / hot-day")[1].split("###")[0]
    assert "**Limit:** The thermal limit (44.0 °C skin) ended the run after" in hot
    assert re.search(r"\*\*Manager:\*\* first plan \d+ steps, \d+ re-plans \(last \d+ steps\), "
                     r"\d+ pauses to cool down", hot)
    assert re.search(r"\*\*Bought:\*\* [\d.]+ % against [\d.]+ % for the strongest peer, \w+: "
                     r"[+-][\d.]+ ± [\d.]+ points \(mean ± s.d. over 2 paired batch orders", hot)
    unplug = md.split("### mid-range / unplugged-midway")[1]
    assert "charger" in unplug and "![mid-range / unplugged-midway" in unplug
    table = [ln for ln in md.splitlines() if ln.startswith("| flagship | hot-day | manager |")]
    cells = table[0].split(" | ")
    heads = [h for _, h, _ in SUMMARY_COLUMNS]
    assert cells[heads.index("energy (% batt)")].endswith(" %")
    assert cells[heads.index("batt end")].endswith("%")
    verdict = assess(summaries, {s: load_scenario(s).nominal_steps for _, s in CELLS})
    assert [r[:2] for r in verdict.table.rows] == [list(c) for c in CELLS]
    assert "| strongest peer | gain (points) | verdict |" in md


def _vlines_at(ax, x):
    return [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2
            and np.allclose(np.asarray(ln.get_xdata(), dtype=float), x)]


def test_run_figure_marks_the_story_on_every_panel_with_the_legend_outside(demo_like):
    runs, _ = demo_like
    tls = [_timeline(_run(runs, "flagship", "hot-day", p)) for p in POLICIES]
    main = tls[0]
    fig = run_figure(tls, title="t", floor=0.2, thresholds={"LIGHT": 39.0, "SEVERE": 45.0}, limit_c=44.0)
    axes = fig.axes
    assert len(axes) == 4 and {ax.get_xlabel() for ax in axes} == {"", "simulated time (min)"}
    for ax in axes:
        assert _vlines_at(ax, main.stop.time_s / 60.0), "the stop is drawn on every panel"
        assert _vlines_at(ax, main.replans[0].time_s / 60.0), "re-plans are drawn on every panel"
        spans = [p for p in ax.patches if p.get_x() == pytest.approx(main.manager_pauses[0].start_s / 60)]
        assert spans, "pauses are shaded on every panel"
    assert axes[1].get_yscale() == "log"       # the loss spans more than a decade here
    assert all("%" in axes[2].get_ylabel() or "°C" in ax.get_ylabel() for ax in axes[2:])
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert all(legend.x0 >= ax.get_window_extent().x1 for ax in axes), "the legend is outside the data"


def test_accuracy_is_a_dot_plot_with_values_and_the_spread(demo_like):
    _, summaries = demo_like
    fig = accuracy_figure(summaries)
    for ax in fig.axes:
        assert not [p for p in ax.patches], "no bars"
        # every policy's value is written (two policies may show the same value)
        texts = [t.get_text().strip() for t in ax.texts if t.get_text().strip()]
        assert len(texts) >= len(POLICIES)
    shown = {t.get_text().strip() for ax in fig.axes for t in ax.texts}
    assert f"{100 * summaries[0]['accuracy']:.1f}" in shown
    ranges = [c for ax in fig.axes for c in ax.collections]       # a bar over each policy's orders
    assert len(ranges) == len(summaries)
    cells = assess(summaries, {}).cells
    gain = gain_figure(cells)
    assert any(ln.get_xdata()[0] == 0.0 for ln in gain.axes[0].get_lines()
               if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1])


def test_fleet_figure_has_whole_rounds_and_percent_scales():
    from mobile_lr.federated.report import figure

    row = {"round": 1, "asked": 3, "trained": 3, "declined": 0, "dropped": 0, "steps": 127, "steps_lost": 0,
           "energy_j": 3283.0, "energy_lost_j": 0.0, "battery_min": 0.55, "floor_margin_min": 0.354,
           "accuracy": 0.6458, "wall_s": 11.3}
    report = {"strategy": "battery-aware", "config": {"clients": 6}, "rows": [row],
              "totals": {"initial_accuracy": 0.60}}
    fig = figure(report)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [float(t.get_text().replace("−", "-")) for t in ax.get_xticklabels() if t.get_text()]
        assert ticks == [0.0, 1.0], ticks
    acc, _, _, margin = fig.axes
    assert "%" in acc.get_ylabel() and "points" in margin.get_ylabel()
    assert max(acc.get_lines()[0].get_ydata()) == pytest.approx(64.58)


# ----------------------------------------------------------------------------- the browser

_CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync")

# Appended to a copy of report.html: after the page has loaded, what the browser made of it.
_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({src: i.getAttribute('src'),
      ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, h: i.naturalHeight}));
  const tables = [...document.querySelectorAll('table')].map(t => ({rows: t.rows.length,
      cells: t.rows.length ? t.rows[t.rows.length - 1].cells.length : 0, width: t.offsetWidth}));
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({imgs, tables, lis: document.querySelectorAll('li').length});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("MOBILE_LR_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is missing (make test installs it: tests/ensure-chromium.sh)")
    pytest.skip("chromium is not installed (make test installs it)")


def _render(directory, tmp_path) -> dict:
    page = directory / "probe.html"
    page.write_text((directory / "report.html").read_text().replace("</body>", _PROBE + "</body>"))
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    proc = subprocess.run([_chromium(), *_CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe in the DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_html_renders_in_chromium_with_every_image_and_the_tables(report_dir, demo_like, tmp_path):
    _, summaries = demo_like
    pngs = sorted(p.name for p in report_dir.glob("*.png"))
    got = _render(report_dir, tmp_path)
    assert sorted(i["src"] for i in got["imgs"]) == pngs
    for img in got["imgs"]:
        assert img["ok"], f"{img['src']} did not load"
        assert (img["w"], img["h"]) == _png_size(report_dir / img["src"])
    gain, full = got["tables"]
    assert gain["rows"] == 1 + len(CELLS) and full["rows"] == 1 + len(summaries)
    assert full["cells"] == len([c for c in SUMMARY_COLUMNS]) and full["width"] > 0
    assert got["lis"] >= 2 + 2     # the notes and the verdict lines are list items
    # The probe sees a broken image: a copy of the report without one figure fails.
    broken = tmp_path / "broken"
    shutil.copytree(report_dir, broken)
    (broken / "accuracy.png").unlink()
    bad = _render(broken, tmp_path)
    assert [i["src"] for i in bad["imgs"] if not i["ok"]] == ["accuracy.png"]


def test_docs_quote_the_demo_verdict_in_the_form_the_demo_writes_it():
    """docs/SIMULATION.md pastes runs/demo/verdict.md between two markers: the table has the
    columns and the cells the demo generates (a change of the demo's peers shows up here)."""
    from pathlib import Path

    from mobile_lr.cli.demo_cmd import DEMO_POLICIES
    from mobile_lr.device import BUILTIN_PROFILES
    from mobile_lr.report.document import gain_table
    from mobile_lr.sim.scenario import builtin_scenarios

    doc = (Path(__file__).resolve().parents[1] / "docs" / "SIMULATION.md").read_text()
    block = doc.split("<!-- demo-verdict:start")[1].split("<!-- demo-verdict:end -->")[0]
    lines = [ln for ln in block.splitlines() if ln.startswith(("- ", "| "))]
    assert lines[0].startswith("- In the ") and "strongest peer" in lines[0]
    table = [ln.strip("| ").split(" | ") for ln in lines if ln.startswith("| ")]
    head = gain_table([{"policy": p} for p in DEMO_POLICIES], [], {}).head
    assert table[0] == head
    cells = [(p, s) for p in BUILTIN_PROFILES for s in builtin_scenarios()]
    assert [tuple(r[:2]) for r in table[1:]] == cells


def test_fleet_out_writes_a_figure_with_percent_scales(tmp_path):
    from mobile_lr.cli import main
    from mobile_lr.report.figures import fleet_figure

    assert main(["budgets", "--profiles", "low-end,flagship", "--scenarios", "hot-day,commute-low-battery",
                 "--devices", "80", "--seed", "1", "--out", str(tmp_path)]) == 0
    assert _png_size(tmp_path / "budgets.png")[0] > 500
    out = json.loads((tmp_path / "budgets.json").read_text())
    fig = fleet_figure(out)
    steps, reasons = fig.axes
    assert "% of the scenario's nominal" in steps.get_xlabel() and "% of the phones" in reasons.get_xlabel()
    ends = {}
    for bar in reasons.patches:     # the stop reasons of each cell stack to 100 %
        y = round(bar.get_y(), 3)
        ends[y] = max(ends.get(y, 0.0), bar.get_x() + bar.get_width())
    assert len(ends) == len(out["cells"]) and all(v == pytest.approx(100.0) for v in ends.values())


def test_fleet_out_without_matplotlib_writes_the_json_and_names_the_extra(tmp_path):
    """The core install (numpy only) runs `fleet`: the figure is skipped with one line."""
    import sys

    args = ["budgets", "--devices", "12", "--scenarios", "hot-day", "--out", str(tmp_path)]
    code = ("import sys\nsys.modules['matplotlib'] = None\nfrom mobile_lr.cli import main\n"
            f"sys.exit(main({args!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "budgets.json").is_file() and not (tmp_path / "budgets.png").exists()
    assert "budgets.png not written: mobile_lr.report needs matplotlib: pip install 'mobile-lr[demo]'" \
        in proc.stderr


def test_the_peak_note_tells_a_raised_peak_from_schedule_free_adamws_lr_convention():
    """The manager's LR above the bundle's base LR is either the EMA flavour's raised peak (the
    formula of its first plan) or schedule-free AdamW's stated LR factor: the note says which."""
    from types import SimpleNamespace

    from mobile_lr.manager import SetupOptions
    from mobile_lr.report.verdict import peak_note

    sf = SetupOptions().sf_lr_factor
    run = SimpleNamespace(lr=np.array([0.3 * sf * 0.01, sf * 0.01, sf * 0.01]), first_plan=290)
    note = peak_note(run, 0.01, 300)
    assert "schedule-free AdamW" in note and f"{sf:g} ×" in note and "first plan" not in note
    raised = SimpleNamespace(lr=np.array([0.01 * (300 / 30) ** 0.3]), first_plan=30)
    note = peak_note(raised, 0.01, 300)
    assert "= min(2.5, (300 / 30)^0.3)" in note and "schedule-free" not in note
    assert peak_note(SimpleNamespace(lr=np.array([0.01]), first_plan=300), 0.01, 300) == ""
