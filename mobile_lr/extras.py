"""Optional dependencies: which extra brings each one, and one clear line when it is missing.

``pip install mobile-lr`` is the core: schedules and their spec, the device model, the
planner, the manager, bundle verification and the golden vectors, with numpy alone. Every
module that needs more imports it inside :func:`optional_imports`, so a user without the
extra reads what to install instead of a bare ``No module named 'torch'`` from deep inside:

>>> with optional_imports("mobile_lr.example"):
...     import json                               # present: nothing happens
>>> with optional_imports("mobile_lr.example"):
...     import no_such_mod
Traceback (most recent call last):
    ...
mobile_lr.extras.MissingExtraError: mobile_lr.example needs no_such_mod: pip install no_such_mod
>>> require("mobile_lr.example", "json", "no_such_mod")
Traceback (most recent call last):
    ...
mobile_lr.extras.MissingExtraError: mobile_lr.example needs no_such_mod: pip install no_such_mod
>>> install_hint("torch")
"pip install 'mobile-lr[torch]' (brings torch)"

A missing module of mobile-lr itself is a bug, not a missing extra: it is raised unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Top-level module -> (the extra of mobile-lr that installs it, the distribution's name).
_PROVIDERS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "torch"),
    "onnx": ("torch", "onnx"),
    "schedulefree": ("torch", "schedulefree"),
    "onnxruntime": ("ort", "onnxruntime-training"),
    "executorch": ("executorch", "executorch"),
    "flwr": ("flower", "flwr[simulation]"),
    "sklearn": ("demo", "scikit-learn"),
    "scipy": ("demo", "scipy"),
    "matplotlib": ("demo", "matplotlib"),
    "tqdm": ("demo", "tqdm"),
    "transformers": ("transformers", "transformers"),
    "accelerate": ("transformers", "accelerate"),
    "pytorch_lightning": ("lightning", "pytorch-lightning"),
    "keras": ("keras", "keras"),
}

# A dependency whose wheels stop below mobile-lr's newest Python: (first Python without, why).
_PYTHON_LIMITS = {"onnxruntime": ((3, 12), "onnxruntime-training 1.19 has wheels up to Python 3.11 only")}


class MissingExtraError(ImportError):
    """A module of mobile-lr needs an optional dependency that is not installed."""


def install_hint(module: str) -> str:
    """What to type to get ``module``: the mobile-lr extra that brings it, or its own package."""
    top = module.partition(".")[0]
    if top not in _PROVIDERS:
        return f"pip install {top}"
    extra, dist = _PROVIDERS[top]
    hint = f"pip install 'mobile-lr[{extra}]' (brings {dist})"
    first_without, why = _PYTHON_LIMITS.get(top, ((99, 0), ""))
    if sys.version_info[:2] >= first_without:
        hint += f"; {why}"
    return hint


@contextmanager
def optional_imports(user: str) -> Iterator[None]:
    """Imports of optional dependencies go inside: a missing one raises :class:`MissingExtraError`.

    ``user`` is the importing module's ``__name__``, named in the message. The error is raised
    ``from None``: the one line says all there is, the import machinery's frames say nothing more.
    """
    try:
        yield
    except ModuleNotFoundError as err:
        missing = (err.name or "").partition(".")[0]
        if not missing or missing == "mobile_lr":
            raise
        raise MissingExtraError(f"{user} needs {missing}: {install_hint(missing)}", name=missing) from None


def require(user: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` unless every top-level module named can be imported.

    For a module whose heavy imports are deferred to first use (ExecuTorch takes seconds to
    import): it fails at import time all the same, and :func:`importlib.util.find_spec`
    only looks the module up, it imports nothing.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(f"{user} needs {module}: {install_hint(module)}", name=module)
