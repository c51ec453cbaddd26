"""The runtime protocol and what the three runtimes share.

:class:`TrainingRuntime` is the whole surface a training loop (the simulator,
the demo, a benchmark) needs: one optimizer step at a given learning rate,
evaluation, atomic save/load, and parameter access for tests. The learning
rate is an argument of *every* step: the schedule manager owns it, the
runtime never keeps a schedule of its own.

:class:`RuntimeBase` holds the shared machinery so that the implementations
only say how to run their engine: input checking, the EMA of the trainable
weights (iterate averaging), and the checkpoint envelope (bundle identity,
step count, EMA, the caller's JSON).

Iterate averaging: with ``ema=d`` every step ends with
``ema += (1 - d) * (w - ema)`` on the trainable weights, in float32, starting
from the weights the runtime started with (the pre-trained model, so there is no
zero-initialisation bias to correct). ``evaluate``/``predict`` use the EMA
weights when EMA is on (``weights="auto"``); ``weights="raw"`` evaluates the
trained weights themselves.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mobile_lr.bundle import LR_DROPOUT_FORMAT, BackendInfo, BundleError, LrDropoutInfo, Manifest
from mobile_lr.runtime.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from mobile_lr.validation import ValidationError, check_int, check_number

__all__ = [
    "LR_DROPOUT_FORMAT",
    "WEIGHTS",
    "Ema",
    "ModelIO",
    "RuntimeBase",
    "TrainingRuntime",
    "backend_info",
    "check_sf_r",
    "engine_loads",
    "logits_metrics",
    "lr_dropout_info",
]

WEIGHTS = ("auto", "ema", "raw")
# A checkpoint may hold at most this much more than the runtime's own state (a zip member that
# inflates far beyond the model is refused before it is read).
CHECKPOINT_GROWTH = 16
CHECKPOINT_SLACK_BYTES = 16 << 20
_LAZY_STATE = "opt/"  # optimizer state created at the first step (torch.optim's per-parameter moments)


@runtime_checkable
class TrainingRuntime(Protocol):
    """One on-device training engine, seen from the training loop."""

    kind: str  # "ort", "executorch" or "torch"
    identity: str  # the bundle's manifest SHA-256 (or a recipe's weights hash); checkpoints carry it
    trainable_names: tuple[str, ...]
    step_count: int  # optimizer steps taken since the bundle's initial weights
    ema_decay: float | None

    def step(self, x: Any, y: Any, lr: float) -> float:
        """One optimizer step on batch (x, y) at learning rate ``lr``; returns the batch's loss."""
        ...

    def evaluate(self, x: Any, y: Any, *, weights: str = "auto") -> dict[str, float]:
        """``{"loss", "accuracy" (classification only), "n"}`` without changing any state."""
        ...

    def predict(self, x: Any, *, weights: str = "auto") -> np.ndarray:
        """Model outputs (logits) for ``x``."""
        ...

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write an atomic checkpoint (weights, optimizer state, EMA, step, ``extra`` JSON)."""
        ...

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore a checkpoint of this bundle and runtime kind; returns its ``extra`` JSON."""
        ...

    def parameters(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by name (trainable and, where the engine exposes them, frozen)."""
        ...

    def set_parameters(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite the trainable parameters by name (e.g. a federated round's global model)."""
        ...


@contextlib.contextmanager
def engine_loads(file: str, engine: str) -> Iterator[None]:
    """Around the place where an engine parses a bundle's model file. The manifest's hash is only
    integrity: a truncated or foreign model re-hashed passes it, and the engine's native error
    (ORT's ``RuntimeError`` of many lines, an ``IndexError`` from a program of another shape)
    becomes one :class:`~mobile_lr.bundle.BundleError` naming the file (its ``__cause__`` the
    engine's error whole, which the exporter's proof reads for the node that failed)."""
    try:
        yield
    except ValidationError:
        raise
    except Exception as err:
        text = " ".join(str(err).split())[:300] or type(err).__name__
        raise BundleError(file, f"{engine} cannot load it: {text}",
                          "a model file the exporter wrote") from err  # the engine's own text


@dataclass(frozen=True)
class ModelIO:
    """Input/target conventions of a bundle (from its manifest's ``model`` block)."""

    input_shape: tuple[int, ...]  # one sample, without the batch axis
    output_shape: tuple[int, ...]
    target_name: str
    target_dtype: str  # "int64" (class indices, accuracy reported) or "float32"
    classes: int | None = None  # class indices must be in [0, classes) when known
    input_dtype: str = "float32"  # or "int64": token ids for a model that starts with an embedding

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelIO:
        model = manifest.model
        return cls(input_shape=model.input.shape[1:], output_shape=model.output.shape[1:],
                   target_name=model.labels.name, target_dtype=model.labels.dtype,
                   classes=model.labels.classes, input_dtype=model.input.dtype)

    @property
    def classifies(self) -> bool:
        return self.target_dtype == "int64"

    def x(self, x: Any) -> np.ndarray:
        """C-contiguous ``(N, *input_shape)`` of the input dtype; rows of the flattened size are reshaped."""
        a = np.asarray(x)
        if self.input_dtype == "int64":
            if a.size and a.dtype.kind not in "iu":   # (numpy's timedelta64 is an "integer" too)
                raise ValidationError("x", f"expected integer token ids, got {a.dtype}")
            if a.size and (int(a.min()) < 0 or int(a.max()) >= 2**63):
                bad = int(a.min()) if int(a.min()) < 0 else int(a.max())
                raise ValidationError("x", f"token id {bad} is outside [0, 2**63)", "ids 0 <= id < 2**63")
            a = a.astype(np.int64, copy=False)
        else:
            a = _real_float32(a, "x", "feature")
        per = math.prod(self.input_shape)
        if a.ndim < 2 or a.shape[1:] not in (self.input_shape, (per,)) or len(a) == 0:
            raise ValidationError("x", f"shape {a.shape} does not fit the model input {self.input_shape}",
                                  f"(N >= 1, {', '.join(map(str, self.input_shape))}) or (N, {per})")
        return np.ascontiguousarray(a.reshape(len(a), *self.input_shape))

    def dummy_input(self, n: int) -> np.ndarray:
        return np.zeros((n, *self.input_shape), dtype=np.dtype(self.input_dtype))

    def y(self, y: Any, n: int) -> np.ndarray:
        """``n`` targets: int64 class indices in ``[0, classes)`` (``[0, 2**63)`` when the number of
        classes is unknown), or finite float32 targets of the output shape. The one label check of
        every runtime and of ``--data``: numpy counts ``timedelta64`` (and bool) among its integer
        types, and a uint64 index beyond int64 wrapped to a negative one."""
        a = np.asarray(y)
        if not self.classifies:
            a = _real_float32(a, "y", "target")
            if a.shape != (n, *self.output_shape):
                raise ValidationError("y", f"expected targets of shape {(n, *self.output_shape)}, "
                                           f"got {a.shape}")
            return np.ascontiguousarray(a)
        if a.shape != (n,) or (a.size and a.dtype.kind not in "iu"):
            raise ValidationError("y", f"expected {n} integer class indices, got {a.dtype} {a.shape}",
                                  "a 1-d array of integers (int or uint)")
        top = self.classes if self.classes is not None else 2**63
        if a.size and (int(a.min()) < 0 or int(a.max()) >= top):
            bad = int(a.min()) if int(a.min()) < 0 else int(a.max())
            raise ValidationError("y", f"class index {bad} is outside [0, {top})", f"labels 0..{top - 1}")
        return np.ascontiguousarray(a, dtype=np.int64)

    def dummy_target(self, n: int) -> np.ndarray:
        if self.classifies:
            return np.zeros(n, dtype=np.int64)
        return np.zeros((n, *self.output_shape), dtype=np.float32)


def _real_float32(a: np.ndarray, field: str, what: str) -> np.ndarray:
    """``a`` as float32, refused unless every value is a real number finite within float32:
    complex (the imaginary part would be dropped), bool, text and dates are not numbers, and a
    NaN, inf or 1e308 (inf as float32) trains nothing."""
    if a.size and a.dtype.kind not in "fiu":
        raise ValidationError(field, f"{what}s of type {a.dtype}", "real numbers (float or int)")
    with np.errstate(over="ignore"):
        a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValidationError(field, f"a {what} is NaN, infinite or beyond float32",
                              "finite numbers within float32")
    return a


def check_sf_r(value: Any, optimizer: Any) -> float:
    """The schedule-free averaging's polynomial weight power ``r`` (the ``schedulefree`` package's
    ``r``: step ``k`` is averaged with weight ``(k + 1) ** r * lr_max ** 2``, so ``r > 0`` lets later
    iterates count more; docs/DECISIONS.md). Only schedule-free AdamW has one."""
    r = check_number(value, "sf_r", lo=0.0)
    if r != 0.0 and optimizer != "schedulefree":
        raise ValidationError("sf_r", f"averaging weights belong to schedule-free AdamW, not to "
                                      f"optimizer {optimizer!r}", "sf_r=0, or optimizer='schedulefree'")
    return float(r)


def backend_info(manifest: Manifest, name: str) -> BackendInfo:
    """The manifest's ``backends.<name>`` block (:meth:`Manifest.backend`)."""
    return manifest.backend(name)


def lr_dropout_info(manifest: Manifest, runtime: str) -> LrDropoutInfo | None:
    """The manifest's LR-dropout block if ``runtime`` can train it (:meth:`Manifest.lr_dropout_for`).

    LR dropout lives in the ORT optimizer graph (docs/LR_DROPOUT.md); a runtime
    not listed in the block's ``backends`` would train the bundle's optimizer
    *without* the mask, so it refuses the bundle instead.
    """
    return manifest.lr_dropout_for(runtime)


def logits_metrics(loss_sum: float, logits: np.ndarray, y: np.ndarray, classifies: bool) -> dict[str, float]:
    """Mean loss over the samples, plus accuracy of the arg-max for classification."""
    n = len(logits)
    out = {"loss": loss_sum / n, "n": float(n)}
    if classifies:
        out["accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y))
    return out


class Ema:
    """Exponential moving average of named float32 arrays (iterate averaging)."""

    def __init__(self, decay: float, start: Mapping[str, np.ndarray]) -> None:
        check_number(decay, "ema", lo=0.0, hi=1.0, hi_open=True)
        self.decay = float(decay)
        self.values = {k: np.array(v, dtype=np.float32, copy=True) for k, v in start.items()}
        self.updates = 0

    def update(self, current: Mapping[str, np.ndarray]) -> None:
        a = np.float32(1.0 - self.decay)
        for k, e in self.values.items():
            e += a * (np.asarray(current[k], dtype=np.float32) - e)
        self.updates += 1

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"ema/{k}": v for k, v in self.values.items()}

    def check(self, arrays: Mapping[str, np.ndarray], name: str) -> None:
        """Refuse a checkpoint's EMA that is missing or of the wrong shape (before anything changes)."""
        for k in self.values:
            key = f"ema/{k}"
            if key not in arrays or arrays[key].shape != self.values[k].shape:
                raise CheckpointError(name, f"EMA of {k!r} missing or of the wrong shape")

    def restore(self, arrays: Mapping[str, np.ndarray], updates: int, name: str) -> None:
        self.check(arrays, name)
        self.values = {k: np.array(arrays[f"ema/{k}"], dtype=np.float32, copy=True) for k in self.values}
        self.updates = int(updates)


class RuntimeBase:
    """Shared behaviour; subclasses implement the engine-specific hooks (``_...`` methods)."""

    kind = "base"
    #: schedule-free AdamW's averaging weight power (:func:`check_sf_r`); 0 for other optimizers
    sf_r = 0.0

    def __init__(self, identity: str, io: ModelIO, trainable_names: tuple[str, ...],
                 ema: float | None) -> None:
        self.identity = identity
        self.io = io
        self.trainable_names = tuple(trainable_names)
        self.step_count = 0
        self.ema_decay = None if ema is None else float(ema)
        self._ema: Ema | None = None

    def _init_ema(self) -> None:
        """Call once the engine is ready: the EMA starts at the current trainable weights."""
        if self.ema_decay is not None:
            self._ema = Ema(self.ema_decay, self._trainable_arrays())

    # ---- hooks for subclasses

    def _trainable_arrays(self) -> dict[str, np.ndarray]:
        """Current trainable weights (arrays that may alias the engine's memory)."""
        raise NotImplementedError

    def _set_trainable(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite the trainable weights (same keys as :meth:`_trainable_arrays`)."""
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Everything a checkpoint must hold besides EMA and metadata."""
        raise NotImplementedError

    def _restore(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], name: str) -> None:
        raise NotImplementedError

    def _set_named(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite trainable weights given by parameter name (engines keyed by name reuse
        :meth:`_set_trainable`; ORT, which keys its flat vector, overrides this)."""
        self._set_trainable(values)

    def _state_meta(self) -> dict[str, Any]:
        """Engine-specific JSON for the checkpoint (e.g. optimizer scalars)."""
        return {}

    # ---- shared behaviour

    @staticmethod
    def _lr(lr: float) -> float:
        return check_number(lr, "lr", lo=0.0)

    def _weights(self, weights: str) -> str:
        if weights not in WEIGHTS:
            raise ValidationError("weights", f"unknown value {weights!r}", ", ".join(WEIGHTS))
        if weights == "ema" and self._ema is None:
            raise ValidationError("weights", "this runtime has no EMA", "construct it with ema=<decay>")
        if weights == "auto":
            return "ema" if self._ema is not None else "raw"
        return weights

    @contextlib.contextmanager
    def _using(self, weights: str) -> Iterator[str]:
        """Temporarily put the EMA weights in the engine (and put the trained ones back after)."""
        which = self._weights(weights)
        if which == "raw":
            yield which
            return
        assert self._ema is not None
        saved = {k: np.array(v, copy=True) for k, v in self._trainable_arrays().items()}
        self._set_trainable(self._ema.values)
        try:
            yield which
        finally:
            self._set_trainable(saved)

    def _after_step(self) -> None:
        self.step_count += 1
        if self._ema is not None:
            self._ema.update(self._trainable_arrays())

    def set_parameters(self, values: Mapping[str, np.ndarray]) -> None:
        """Overwrite the trainable parameters with ``values`` (exactly the trainable names).

        A federated client starts each round from the server's model this way. The
        EMA, when on, restarts at the new weights (an average across two models means
        nothing); the optimizer state is left as it is (SGD has none).
        """
        names = set(self.trainable_names)
        missing, unknown = sorted(names - set(values)), sorted(set(values) - names)
        if missing or unknown:
            raise ValidationError("parameters", f"missing {missing}, unknown {unknown}",
                                  "exactly the trainable parameter names")
        current = self.parameters()
        arrays = {}
        for name in self.trainable_names:
            a = np.ascontiguousarray(values[name], dtype=np.float32)
            if a.shape != current[name].shape:
                raise ValidationError(f"parameters.{name}", f"shape {a.shape} differs from the model's "
                                                            f"{current[name].shape}")
            arrays[name] = a
        self._set_named(arrays)
        if self._ema is not None:
            self._init_ema()

    def _snapshot(self, extra: Mapping[str, Any] | None = None
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything a checkpoint holds, in memory: ``(meta, arrays)``."""
        meta = {"runtime": self.kind, "bundle": self.identity, "step": self.step_count,
                "ema_decay": self.ema_decay, "ema_updates": self._ema.updates if self._ema else 0,
                "trainable": list(self.trainable_names),
                "engine": {**self._state_meta(), **({"sf_r": self.sf_r} if self.sf_r else {})},
                "extra": dict(extra or {})}
        arrays = self._state_arrays()
        if self._ema is not None:
            arrays.update(self._ema.arrays())
        return meta, arrays

    def save(self, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
        write_checkpoint(path, *self._snapshot(extra))

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore a checkpoint, all or nothing: every check runs before anything changes, and a
        failure while restoring puts the state back as it was (a rollback that fails must not leave
        the weights half restored)."""
        name = Path(path).name
        before = self._snapshot()
        limit = CHECKPOINT_SLACK_BYTES + CHECKPOINT_GROWTH * sum(a.nbytes for a in before[1].values())
        meta, arrays = read_checkpoint(path, max_bytes=limit)
        self._check_checkpoint(meta, arrays, set(before[1]), name)
        try:
            self._apply(meta, arrays, name)
        except BaseException:
            self._apply(*before, name)
            raise
        return dict(meta.get("extra") or {})

    def _check_checkpoint(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], known: set[str],
                          name: str) -> None:
        if meta.get("runtime") != self.kind:
            raise CheckpointError(name, f"written by the {meta.get('runtime')!r} runtime, not {self.kind!r}")
        if meta.get("bundle") != self.identity:
            raise CheckpointError(name, f"belongs to bundle {str(meta.get('bundle'))[:16]}..., "
                                        f"not to this one ({self.identity[:16]}...)")
        if meta.get("ema_decay") != self.ema_decay:
            raise CheckpointError(name, f"EMA decay {meta.get('ema_decay')} differs from this "
                                        f"runtime's {self.ema_decay}")
        for key, default in (("step", None), ("ema_updates", 0)):  # a step count is required
            try:
                check_int(meta.get(key, default), key, lo=0)
            except ValidationError as err:
                raise CheckpointError(f"{name}: {key}", err.problem, err.allowed) from None
        if not isinstance(meta.get("extra", {}), Mapping) or not isinstance(meta.get("engine", {}), Mapping):
            raise CheckpointError(name, "extra or engine metadata is not an object")
        choice = getattr(self, "optimizer_choice", None)  # ORT and PyTorch: recipe or schedule-free
        found = (meta.get("engine") or {}).get("optimizer_choice", "recipe")
        if choice is not None and found != choice:
            raise CheckpointError(name, f"written with optimizer {found!r}, not {choice!r}")
        found_r = (meta.get("engine") or {}).get("sf_r", 0.0)
        if found_r != self.sf_r:
            raise CheckpointError(name, f"written with schedule-free weight power sf_r={found_r!r}, "
                                        f"not {self.sf_r!r}")
        unknown = sorted(k for k in arrays if k not in known and not k.startswith(_LAZY_STATE))
        if unknown:
            raise CheckpointError(name, f"unknown arrays {unknown[:5]}", "the arrays this runtime writes")
        for key, a in arrays.items():
            if a.dtype.kind not in "fiu":   # complex, bool, text: torch.from_numpy took some silently
                raise CheckpointError(name, f"array {key!r} is of type {a.dtype}", "real numbers")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise CheckpointError(name, f"array {key!r} holds NaN or infinite values")
        if self._ema is not None:
            self._ema.check(arrays, name)

    def _apply(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], name: str) -> None:
        self._restore(meta, arrays, name)
        if self._ema is not None:
            self._ema.restore(arrays, meta.get("ema_updates", 0), name)
        self.step_count = int(meta["step"])
