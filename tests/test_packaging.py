"""The distribution: a numpy-only core, extras that say their name when missing, Python 3.10 code.

The subprocess tests block every optional dependency (``sys.modules[name] = None``, which is how
CPython spells "not installed"), so they check the core in the full environment too; CI also runs
the ``core`` tests in a fresh venv where only the core wheel, numpy and pytest are installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every import an extra brings (and the integrations' libraries).
OPTIONAL = ("torch", "onnx", "onnxruntime", "executorch", "schedulefree", "flwr", "ray", "sklearn", "scipy",
            "matplotlib", "tqdm", "transformers", "accelerate", "pytorch_lightning", "lightning", "keras")

CORE_MODULES = (
    "mobile_lr", "mobile_lr.validation", "mobile_lr.validation.schema", "mobile_lr.extras",
    "mobile_lr.schedules", "mobile_lr.testing.specs", "mobile_lr.device", "mobile_lr.budget",
    "mobile_lr.manager", "mobile_lr.bundle", "mobile_lr.testing.golden", "mobile_lr.testing.golden_cases",
    "mobile_lr.schemas", "mobile_lr.runtime",
    "mobile_lr.runtime.base", "mobile_lr.runtime.checkpoint",
    "mobile_lr.adapters", "mobile_lr.adapters.ort_lr",
    "mobile_lr.sim.scenario", "mobile_lr.sim.setups", "mobile_lr.sim.session", "mobile_lr.sim.budgets",
    "mobile_lr.integrations", "mobile_lr.integrations.driver", "mobile_lr.cli",
)


def run_blocked(code: str, *, block: tuple[str, ...] = OPTIONAL) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the modules ``block`` cannot be imported."""
    prelude = f"import sys\nfor _m in {block!r}:\n    sys.modules[_m] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.core
def test_core_modules_import_without_any_extra():
    code = (f"import importlib\nfor m in {CORE_MODULES!r}:\n    importlib.import_module(m)\n"
            "from mobile_lr.cli import build_parser\nbuild_parser()\nprint('ok')")
    proc = run_blocked(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.core
@pytest.mark.parametrize(("module", "needs", "extra"), [
    ("mobile_lr.adapters.torch_lr", "torch", "torch"),
    ("mobile_lr.recipes", "torch", "torch"),
    ("mobile_lr.export.pipeline", "torch", "torch"),
    ("mobile_lr.runtime.ort_rt", "onnxruntime", "ort"),
    ("mobile_lr.federated.client_app", "flwr", "flower"),
    ("mobile_lr.report", "matplotlib", "demo"),
    ("mobile_lr.datasets", "scipy", "demo"),
    ("mobile_lr.integrations.transformers", "transformers", "transformers"),
    ("mobile_lr.integrations.lightning", "pytorch_lightning", "lightning"),
    ("mobile_lr.integrations.keras", "keras", "keras"),
])
def test_a_module_that_needs_an_extra_names_it(module, needs, extra):
    code = (f"from mobile_lr.extras import MissingExtraError\ntry:\n    import {module}\n"
            "except MissingExtraError as err:\n    print(err)\nelse:\n    print('imported')")
    proc = run_blocked(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(f"{module} needs {needs}: pip install 'mobile-lr[{extra}]'")


def test_executorch_missing_beside_torch_is_named():
    pytest.importorskip("torch")
    proc = run_blocked("import mobile_lr.runtime.executorch_rt", block=("executorch",))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert last == ("mobile_lr.extras.MissingExtraError: mobile_lr.runtime.executorch_rt needs executorch: "
                    "pip install 'mobile-lr[executorch]' (brings executorch)")


@pytest.mark.core
def test_cli_names_the_missing_extra_in_one_line(tmp_path):
    proc = run_blocked("from mobile_lr.cli import main\n"
                       f"sys.exit(main(['export', 'digits-mlp', '--out', {str(tmp_path / 'b')!r}]))")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "mobile-lr export: error: mobile_lr.export.pipeline needs torch: pip install 'mobile-lr[torch]' "
        "(brings torch)"]


@pytest.mark.core
def test_a_missing_module_of_mobile_lr_itself_is_not_called_an_extra():
    from mobile_lr.extras import MissingExtraError, optional_imports

    with pytest.raises(ModuleNotFoundError) as info, optional_imports("here"):
        import mobile_lr.no_such_module  # noqa: F401
    assert not isinstance(info.value, MissingExtraError)


@pytest.mark.core
def test_the_installed_package_is_typed_and_ships_its_data():
    root = resources.files("mobile_lr")
    assert root.joinpath("py.typed").is_file()
    assert root.joinpath("data", "profiles", "mid-range.json").is_file()


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.core
def test_the_core_distribution_needs_numpy_alone():
    project = _pyproject()["project"]
    names = {re.match(r"[A-Za-z0-9_.-]+", dep).group(0) for dep in project["dependencies"]}
    assert names == {"numpy", "tomli"}  # tomli only below Python 3.11
    assert project["requires-python"] == ">=3.10"
    assert {"torch", "ort", "executorch", "flower", "demo", "all"} <= set(project["optional-dependencies"])


def test_the_pins_fit_the_ranges_and_are_what_is_installed():
    """constraints.txt pins what `make` installs: each pin is inside pyproject's range, and installed."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    ranges = {}
    for deps in _pyproject()["project"]["optional-dependencies"].values():
        for dep in deps:
            req = Requirement(dep)
            if req.name != "mobile-lr":
                ranges[req.name.lower()] = req.specifier
    assert set(ranges) <= set(pins), "every direct dependency has a tested pin"
    for name, version in pins.items():
        if name in ranges:
            assert ranges[name].contains(version), (name, version, ranges[name])
        installed = importlib.metadata.version(name).split("+")[0]
        assert installed == version, f"{name}: constraints.txt pins {version}, the venv has {installed}"


def test_the_package_runs_on_python_3_10():
    """Only 3.11 exists here: vermin reads the code for features newer than 3.10 (tomllib, Self, ...)."""
    vermin = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    # int.is_integer is a false positive: vermin cannot see the value is a float (float.is_integer: 3.0).
    proc = subprocess.run([vermin, "--no-tips", "-t=3.10-", "--violations", "--eval-annotations",
                           "--exclude", "int.is_integer", "mobile_lr", "examples"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_mobile_lr_name_the_docs_give_exists():
    """`mobile_lr.a.b.Name` in the README, docs/ and examples/ imports (module) or resolves (attribute)."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("examples/*"))]
    dotted = re.compile(r"\bmobile_lr(?:\.[A-Za-z_]\w*)+(?![\w*])")  # not a glob like `RECOMMENDED_*`
    names = set()
    for path in texts:
        if path.is_file():
            names |= set(dotted.findall(path.read_text(encoding="utf-8")))
    assert "mobile_lr.adapters.SpecLR" in names  # the README's own example, a check of the scan
    missing = []
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            missing.append(name)
    assert not missing, f"the docs name what does not exist: {missing}"
