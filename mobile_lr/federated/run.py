"""Running a fleet: the bundle, Flower's simulation engine, or a Flower app for the deployment engine.

* :func:`prepare_bundle` — the model every phone fine-tunes: digits-mlp
  pre-trained on the general population, exported once (ORT artifacts, plain
  SGD: a federated client starts every round from the server's weights, so no
  optimizer state carries over between rounds).
* :func:`simulate` — ``flwr.simulation.run_simulation`` with one virtual
  SuperNode per phone on Ray; ``actors`` Ray actors (1 CPU each) run the
  ClientApps. (Flower 1.42 marks ``run_simulation`` deprecated in favour of
  ``flwr run`` on a local SuperLink; it is still the in-process entry point.)
* :func:`write_flower_app` — a Flower app directory (``pyproject.toml`` with
  ``[tool.flwr.app]``) whose components are this package's ServerApp and
  ClientApp and whose run config is this run's: ``flwr run`` submits it to a
  SuperLink, and SuperNodes started with ``--node-config 'partition-id=i'`` are
  the phones. No code changes between the two engines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobile_lr.extras import optional_imports
from mobile_lr.federated.fleet import FleetConfig

__all__ = ["FLOWER_APP_DIR", "prepare_bundle", "simulate", "write_flower_app"]

FLOWER_APP_DIR = "flower-app"


def prepare_bundle(out_dir: str | os.PathLike[str], *, seed: int = 0, epochs: int = 3) -> tuple[str, str]:
    """Export the fleet's bundle into ``out_dir`` (reused if it is already there); returns
    (absolute path, manifest SHA-256)."""
    from mobile_lr.bundle import load_bundle

    out = Path(out_dir).resolve()  # absolute: Ray actors and SuperNodes do not share our cwd
    if (out / "manifest.json").is_file():
        return str(out), load_bundle(out).sha256
    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import OptimizerSpec, load_recipe, pretrain

    recipe = load_recipe("digits-mlp")
    pretrain(recipe, epochs=epochs, seed=seed)
    recipe = dataclasses.replace(recipe, optimizer=OptimizerSpec("sgd"))
    export_bundle(recipe, out, backends=("ort",))
    return str(out), load_bundle(out).sha256


def simulate(cfg: FleetConfig, *, actors: int = 2,
             progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the fleet on Flower's simulation engine; returns the report."""
    with optional_imports(__name__):
        from flwr.simulation import run_simulation

    from mobile_lr.federated.client_app import app as client_app
    from mobile_lr.federated.server_app import make_server_app

    sink: list[dict[str, Any]] = []
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": int(actors), "num_gpus": 0, "include_dashboard": False,
                             "logging_level": "ERROR", "log_to_driver": False,
                             "object_store_memory": 200 * 1024 * 1024}}
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)  # Flower logs every round at INFO; the report says it better
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_simulation(server_app=make_server_app(cfg.to_run_config(), sink, progress),
                           client_app=client_app, num_supernodes=cfg.clients, backend_config=backend)
    finally:
        flwr_log.setLevel(level)
    if not sink:
        raise RuntimeError("the ServerApp ended without a report (see Flower's log above)")
    return sink[0]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_flower_app(cfg: FleetConfig, out_dir: str | os.PathLike[str]) -> Path:
    """A Flower app directory for ``flwr run`` with ``cfg`` as its default run config."""
    app_dir = Path(out_dir) / FLOWER_APP_DIR
    app_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", 'name = "mobile-lr-fleet"', 'version = "0.1.0"',
        'description = "mobile-lr federated fleet: simulated phones running the schedule manager"',
        'license = "Apache-2.0"', 'requires-python = ">=3.11,<3.12"',
        # mobile-lr itself is installed beside Flower on every machine (it is not on a package
        # index): Flower's runtime environment installs the app's other dependencies and keeps
        # the running installation (flwr is skipped), so listing it would fail to resolve
        'dependencies = ["flwr[simulation]==1.42.0"]', "",
        "[tool.flwr.app]", 'publisher = "mobile-lr"', "",
        "[tool.flwr.app.components]",
        'serverapp = "mobile_lr.federated.server_app:app"',
        'clientapp = "mobile_lr.federated.client_app:app"', "",
        "[tool.flwr.app.config]",
        *(f"{k} = {_toml_value(v)}" for k, v in cfg.to_run_config().items()), "",
    ]
    (app_dir / "pyproject.toml").write_text("\n".join(lines), encoding="utf-8")
    return app_dir
