"""Shared fixtures. Exported bundles are session-scoped: exporting (ExecuTorch lowering above all)
takes seconds, so each bundle is made once per test session and tests copy it before changing it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: torch's thread pool per worker would oversubscribe them (its
    # spinning threads made exports ~5x slower on a shared machine); child processes inherit it
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# ---------------------------------------------------------------------- the core install (`--core`)

CORE_MARK = "pytest.mark.core"  # a module-wide `pytestmark = pytest.mark.core` or a decorated test


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--core", action="store_true",
                     help="run only the tests marked `core` and never import the other test modules "
                          "(CI runs this in a venv with the core install alone: numpy, no torch)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``--core`` a test module that never names the core mark is not imported: it may need torch."""
    if not config.getoption("core") or collection_path.suffix != ".py":
        return None
    if collection_path.name == "conftest.py":
        return None
    return CORE_MARK not in collection_path.read_text(encoding="utf-8")


@pytest.hookimpl(tryfirst=True)   # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("core"):
        items[:] = [item for item in items if item.get_closest_marker("core")]
    for item in items:   # `make test` runs `pytest -n 2 --dist loadgroup` (pytest-xdist)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_group(item)))


#: Modules that start Flower's simulation engine (Ray): one worker runs them, one after another.
_RAY = ("test_federated_fleet.py", "test_federated_sim.py")


def _group(item: pytest.Item) -> str:
    """The worker group of a test: its module, so that a module's fixtures are built once (one
    worker runs the module's tests in order); a module whose tests share nothing costly may mark
    finer groups itself (``pytest.mark.xdist_group``), as the zoo's cells do per bundle."""
    name = item.path.name
    return "ray" if name in _RAY else str(item.path)

# ---------------------------------------------------------------------- export / runtime bundles


@pytest.fixture(scope="session")
def user_data():
    """The default user's (train, test) handwriting sets."""
    from mobile_lr.datasets import user_split

    return user_split()


@pytest.fixture(scope="session")
def mlp_state():
    """digits-mlp pre-trained briefly on the general population (weights as numpy arrays)."""
    from mobile_lr.recipes import load_recipe, pretrain

    recipe = load_recipe("digits-mlp")
    pretrain(recipe, epochs=3, seed=0)
    return {k: v.detach().numpy().copy() for k, v in recipe.model.state_dict().items()}


@pytest.fixture(scope="session")
def mlp_recipe_factory(mlp_state):
    """Fresh digits-mlp recipes at the pre-trained weights, optionally with another optimizer."""
    from mobile_lr.recipes import load_recipe

    def make(optimizer=None):
        recipe = load_recipe("digits-mlp", state_dict=mlp_state)
        return recipe if optimizer is None else dataclasses.replace(recipe, optimizer=optimizer)

    return make


@pytest.fixture(scope="session")
def mlp_bundle(tmp_path_factory, mlp_recipe_factory):
    """digits-mlp, AdamW (eps 1e-8, weight decay 0.01), ORT + ExecuTorch."""
    from mobile_lr.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "mlp-adamw"
    export_bundle(mlp_recipe_factory(), out)
    return out


@pytest.fixture(scope="session")
def mlp_sgd_bundle(tmp_path_factory, mlp_recipe_factory):
    """digits-mlp with plain SGD, ORT only (ExecuTorch's program does not depend on the optimizer:
    tests run the ExecuTorch runtime on ``mlp_bundle`` with an SGD override)."""
    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import OptimizerSpec

    out = tmp_path_factory.mktemp("bundles") / "mlp-sgd"
    export_bundle(mlp_recipe_factory(OptimizerSpec("sgd")), out, backends=("ort",))
    return out


@pytest.fixture(scope="session")
def cnn_bundle(tmp_path_factory):
    """digits-cnn (frozen convolutional trunk, trainable head), pre-trained 2 epochs, ORT + ExecuTorch."""
    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import load_recipe, pretrain

    recipe = load_recipe("digits-cnn")
    pretrain(recipe, epochs=2, seed=0)
    out = tmp_path_factory.mktemp("bundles") / "cnn"
    export_bundle(recipe, out)
    return out
