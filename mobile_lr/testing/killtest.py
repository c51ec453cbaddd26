"""SIGKILL harness: kill a training process at random instants, check every checkpoint survives.

A phone kills background work without warning (OS window over, low memory,
battery out). The promise of :mod:`mobile_lr.runtime.checkpoint` is that a kill
at *any* instant, including mid-save, leaves the last checkpoint loadable and
nothing lost beyond it. This module tests that promise for real:

* a worker process trains a bundle with one runtime and saves a checkpoint
  after every step, logging ``saving k`` before and ``saved k`` after each save
  (one ``os.write`` each on an ``O_APPEND`` file: a line is there whole or not);
* the parent sends SIGKILL after a random delay, then starts the next worker,
  which must resume from the checkpoint: at the last ``saved`` step, or at the
  step whose save was in flight when the kill came (the rename may have
  happened just before the kill);
* after the last kill a worker trains to a final step and the result is
  compared with an uninterrupted run in the parent: with deterministic batches
  (a function of the step) and the optimizer state in the checkpoint, the
  weights must be *bit-identical*.

Workers are forked from a ``multiprocessing`` fork server that has imported the
runtime once, so a trial costs a fork and a runtime load, not a fresh
interpreter importing torch and ORT (several seconds each here). Batches are
synthetic (seeded random inputs and labels of the bundle's shapes): the test is
about state, not accuracy.

Used by ``tests/test_runtime_kill.py`` (50+ kills) and ``bench`` (500+)::

    python -m mobile_lr.testing.killtest BUNDLE --kills 500 --runtime ort --json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.bundle import Manifest, verify_bundle
from mobile_lr.runtime.checkpoint import CheckpointError, read_checkpoint

__all__ = ["KillReport", "batch_at", "lr_at", "run_kill_trials", "worker"]

CHECKPOINT = "train.ckpt"
_MODULE = "mobile_lr.testing.killtest"  # by name: under `python -m` this file also runs as __main__
BATCH = 16


@dataclass
class KillReport:
    """What happened over all trials; ``problems`` is empty when every promise held."""

    runtime: str
    kills: int = 0
    kills_during_save: int = 0  # the kill came between "saving k" and "saved k"
    kills_before_resume: int = 0  # the kill came while the worker was still loading
    resumed_steps: list[int] = field(default_factory=list)
    final_step: int = 0
    final_bit_identical: bool | None = None
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def lr_at(step: int) -> float:
    """A learning rate that changes every step (so a resume with a wrong step shows)."""
    return 0.01 * (0.55 + 0.45 * np.cos(step / 7.0))


def batch_at(manifest: Manifest, step: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch of ``step``: a pure function of (seed, step) and the bundle's shapes."""
    model = manifest.model
    rng = np.random.default_rng([seed, step])
    x = rng.random((BATCH, *model.input.shape[1:]), dtype=np.float32)
    labels = model.labels
    if labels.dtype == "int64":
        y = rng.integers(0, labels.classes, BATCH).astype(np.int64)
    else:
        y = rng.random((BATCH, *labels.shape[1:]), dtype=np.float32)
    return x, y


def _open(kind: str, bundle: str, ema: float | None):
    from mobile_lr.runtime import open_runtime

    return open_runtime(kind, bundle, ema=ema)


def worker(kind: str, bundle: str, workdir: str, log_name: str, stop_at: int, seed: int,
           ema: float | None) -> None:
    """Child process: resume from the checkpoint if any, then train and checkpoint every step."""
    log = os.open(Path(workdir) / log_name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def say(msg: str) -> None:
        os.write(log, (msg + "\n").encode())

    ckpt = Path(workdir) / CHECKPOINT
    manifest = verify_bundle(bundle)
    rt = _open(kind, bundle, ema)
    if ckpt.exists():
        extra = rt.load(ckpt)
        if extra.get("step") != rt.step_count:
            say(f"error extra step {extra.get('step')} != {rt.step_count}")
    say(f"resumed {rt.step_count}")
    while rt.step_count < stop_at:
        x, y = batch_at(manifest, rt.step_count, seed)
        rt.step(x, y, lr_at(rt.step_count))
        say(f"saving {rt.step_count}")
        rt.save(ckpt, extra={"step": rt.step_count})
        say(f"saved {rt.step_count}")
    say("done")


def _read_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _context(kind: str) -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    engine = {"ort": "mobile_lr.runtime.ort_rt", "executorch": "mobile_lr.runtime.executorch_rt",
              "torch": "mobile_lr.runtime.torch_rt"}[kind]
    preload = [_MODULE, engine]
    if kind == "ort":
        preload.append("onnxruntime.training.api")
    elif kind == "executorch":
        preload.append("executorch.extension.training")
    ctx.set_forkserver_preload(preload)
    return ctx


def run_kill_trials(bundle: str | os.PathLike[str], workdir: str | os.PathLike[str], kills: int, *,
                    runtime: str = "ort", max_delay: float = 0.6, seed: int = 0,
                    ema: float | None = 0.9, final_extra_steps: int = 5) -> KillReport:
    """Kill ``kills`` workers at uniform random instants in [0, ``max_delay``] s after their start."""
    bundle, work = str(bundle), Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    manifest = verify_bundle(bundle)
    report = KillReport(runtime=runtime)
    ctx = _context(runtime)
    rng = np.random.default_rng(seed)
    durable, in_flight = 0, None  # last step known saved; step whose save may or may not have landed
    start = time.monotonic()
    for trial in range(kills + 1):
        final = trial == kills
        log_name = f"trial-{trial:04d}.log"
        stop_at = durable + final_extra_steps if final else 1 << 30
        proc = ctx.Process(target=worker, args=(runtime, bundle, str(work), log_name, stop_at, seed, ema))
        proc.start()
        if final:
            proc.join(timeout=300)
        else:
            time.sleep(float(rng.uniform(0.0, max_delay)))
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            report.kills += 1
        lines = _read_log(work / log_name)
        resumed = [int(x.split()[1]) for x in lines if x.startswith("resumed ")]
        if any(x.startswith("error") for x in lines):
            report.problems.append(f"trial {trial}: {[x for x in lines if x.startswith('error')]}")
        if resumed:
            allowed = {durable} | ({in_flight} if in_flight is not None else set())
            report.resumed_steps.append(resumed[0])
            if resumed[0] not in allowed:
                report.problems.append(f"trial {trial}: resumed at {resumed[0]}, expected one of "
                                       f"{sorted(allowed)}")
            durable, in_flight = resumed[0], None
        else:
            report.kills_before_resume += 1
        saved = [int(x.split()[1]) for x in lines if x.startswith("saved ")]
        saving = [int(x.split()[1]) for x in lines if x.startswith("saving ")]
        if saved:
            durable = saved[-1]
        if saving and (not saved or saving[-1] > saved[-1]):
            in_flight = saving[-1]
            report.kills_during_save += 1
        if (work / CHECKPOINT).exists():
            try:
                meta, _ = read_checkpoint(work / CHECKPOINT)
            except CheckpointError as err:
                report.problems.append(f"trial {trial}: checkpoint unreadable after the kill: {err}")
            else:
                if meta["step"] not in {durable, in_flight}:
                    report.problems.append(f"trial {trial}: checkpoint at step {meta['step']}, log says "
                                           f"{durable} (in flight {in_flight})")
        if final:
            if proc.exitcode != 0 or "done" not in lines:
                report.problems.append(f"final worker failed (exit code {proc.exitcode})")
            report.final_step = saved[-1] if saved else durable
    stale = list(work.glob(f".{CHECKPOINT}.*.tmp"))
    if len(stale) > 1:
        report.problems.append(f"{len(stale)} temporary files left behind")
    report.final_bit_identical = _compare_with_uninterrupted(runtime, bundle, work, manifest, seed, ema,
                                                             report)
    report.elapsed_s = time.monotonic() - start
    return report


def _compare_with_uninterrupted(kind: str, bundle: str, work: Path, manifest: dict[str, Any], seed: int,
                                ema: float | None, report: KillReport) -> bool:
    """Train the same steps without interruption; the killed-and-resumed run must match bit for bit."""
    ref = _open(kind, bundle, ema)
    for step in range(report.final_step):
        x, y = batch_at(manifest, step, seed)
        ref.step(x, y, lr_at(step))
    resumed = _open(kind, bundle, ema)
    resumed.load(work / CHECKPOINT)
    a, b = ref.parameters(), resumed.parameters()
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    x, _ = batch_at(manifest, 0, seed)
    if ema is not None:
        same = same and np.array_equal(ref.predict(x), resumed.predict(x))
    if not same:
        report.problems.append("the resumed run's weights differ from an uninterrupted run's")
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobile_lr.testing.killtest",
                                     description="Kill training workers with SIGKILL at random instants "
                                                 "and check that every checkpoint survives.")
    parser.add_argument("bundle", help="bundle directory (mobile-lr export)")
    parser.add_argument("--kills", type=int, default=500)
    parser.add_argument("--runtime", choices=("ort", "executorch", "torch"), default="ort")
    parser.add_argument("--workdir", help="where checkpoints and logs go (default: a temporary directory)")
    parser.add_argument("--max-delay", type=float, default=0.6, help="kill within this many seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import tempfile

    from mobile_lr.testing import killtest  # workers must be pickled by module name, not __main__

    with tempfile.TemporaryDirectory() as tmp:
        report = killtest.run_kill_trials(args.bundle, args.workdir or tmp, args.kills, runtime=args.runtime,
                                 max_delay=args.max_delay, seed=args.seed)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(f"{report.kills} kills ({report.kills_during_save} during a save, {report.kills_before_resume} "
              f"while loading), final step {report.final_step}, bit-identical to an uninterrupted run: "
              f"{report.final_bit_identical}, {report.elapsed_s:.1f} s")
        for p in report.problems:
            print("PROBLEM:", p)
    return 1 if report.problems else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
