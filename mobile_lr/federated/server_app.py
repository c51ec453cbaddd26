"""The Flower ServerApp: rounds of the chosen strategy, global accuracy on held-out users, the report.

Its settings are the run config (``FleetConfig``'s hyphenated keys): on the
deployment engine they come from the Flower app's ``pyproject.toml`` and
``flwr run --run-config``; :func:`make_server_app` bakes them in for the
in-process simulation (``flwr.simulation.run_simulation`` gives a ServerApp an
empty run config). The ServerApp sends them to the phones with every message,
so the ClientApp needs no configuration of its own.

Each round: :meth:`Strategy.start <flwr.serverapp.strategy.Strategy.start>`
(Flower's round loop) asks the strategy whom to train, sends the global model,
aggregates, and calls the central evaluation: the global model on the held-out
digits of ``eval-users`` users outside the fleet (their own handwriting: the
question is whether the fleet's model generalises to new users).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp

from mobile_lr.datasets import user_split
from mobile_lr.federated.client_app import arrays_to_numpy, numpy_to_arrays
from mobile_lr.federated.fleet import FleetConfig, eval_user_seeds
from mobile_lr.federated.strategies import make_strategy
from mobile_lr.runtime import open_runtime
from mobile_lr.validation import ValidationError

__all__ = ["app", "make_server_app", "run_rounds"]


def _evaluator(cfg: FleetConfig) -> tuple[dict[str, np.ndarray], Callable[[int, ArrayRecord], MetricRecord]]:
    """The initial global weights (the bundle's) and the central evaluation function."""
    runtime = open_runtime(cfg.runtime, cfg.bundle_dir, expected_sha256=cfg.bundle_sha256 or None)
    params = runtime.parameters()
    initial = {k: params[k] for k in runtime.trainable_names}
    tests = [user_split(seed=s, n_train=cfg.n_train)[1] for s in eval_user_seeds(cfg)]
    x = np.concatenate([t.x for t in tests])
    y = np.concatenate([t.y for t in tests])

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        runtime.set_parameters(arrays_to_numpy(arrays))
        m = runtime.evaluate(x, y)
        return MetricRecord({"accuracy": float(m["accuracy"]), "loss": float(m["loss"])})

    return initial, evaluate


def run_rounds(grid: Grid, cfg: FleetConfig, progress: Callable[[dict[str, Any]], None] | None = None
               ) -> dict[str, Any]:
    """Run the fleet on ``grid``; returns the report (and writes it when ``out-dir`` is set)."""
    if not cfg.bundle_dir:
        raise ValidationError("bundle-dir", "missing", "a bundle exported once for the fleet "
                                                       "(mobile-lr fleet-train makes one)")
    t0 = time.perf_counter()
    strategy = make_strategy(cfg)
    initial, evaluate = _evaluator(cfg)
    accuracy: dict[int, dict[str, float]] = {}

    def central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        m = evaluate(server_round, arrays)
        accuracy[server_round] = dict(m)
        if server_round > 0 and strategy.rows and progress is not None:
            progress({**strategy.rows[-1], **accuracy[server_round]})
        return m

    strategy.start(grid, numpy_to_arrays(initial), num_rounds=cfg.num_rounds, train_config=ConfigRecord(),
                   evaluate_fn=central)
    rows = []
    for row in strategy.rows:
        acc = accuracy.get(row["round"], {})
        rows.append({**row, "accuracy": acc.get("accuracy"), "loss": acc.get("loss")})
    from mobile_lr.federated.report import summarize, write_report

    report = summarize(cfg, rows, accuracy.get(0, {}), wall_s=time.perf_counter() - t0)
    if cfg.out_dir:
        write_report(report, cfg.out_dir)
    return report


def make_server_app(overrides: Mapping[str, Any] | None = None,
                    sink: list[dict[str, Any]] | None = None,
                    progress: Callable[[dict[str, Any]], None] | None = None) -> ServerApp:
    """A ServerApp whose run config is ``context.run_config`` updated with ``overrides``;
    the report is appended to ``sink`` (in-process runs)."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = FleetConfig.from_run_config({**dict(context.run_config), **dict(overrides or {})})
        report = run_rounds(grid, cfg, progress)
        if sink is not None:
            sink.append(report)

    return server


app = make_server_app()
