"""Learning-rate dropout (Lin et al. 2019, arXiv 1912.00144) for PyTorch optimizers.

At every step each parameter *coordinate* keeps its learning rate with
probability ``keep`` and gets a learning rate of zero otherwise: forward and
backward passes are untouched and only the kept coordinates move. This module
follows the **official** code (``HuangxingLin123/Learning-Rate-Dropout``):

* the mask is Bernoulli(``keep``) per coordinate, with **no** ``1/keep``
  rescale, so the expected step shrinks by ``keep``;
* the optimizer state (SGD's momentum buffer, AdamW's two moments) is updated
  with the **full** gradient and never masked; only the update is masked.

Implementation: :class:`SGDLRD` and :class:`AdamWLRD` *are* ``torch.optim.SGD``
and ``torch.optim.AdamW`` (subclasses). ``step()`` snapshots the parameters,
runs the parent's own update, then puts the dropped coordinates back, so a kept
coordinate gets exactly the value PyTorch computes (keep = 1 is bit-identical
to the plain optimizer), a dropped one is untouched, and the state update is
PyTorch's. For AdamW the decoupled weight decay belongs to the coordinate's
update (``lr * wd * p``) and is dropped with it: a zero learning rate changes
nothing. Any ``LRScheduler`` (``mobile_lr.adapters.torch_lr.SpecLR`` included)
drives ``param_groups[i]["lr"]`` as usual.

``rule="inplace"`` reproduces the **unofficial** re-implementation
(``noahgolmant/pytorch-lr-dropout``), whose ``d_p.mul_(mask)`` masks the
momentum buffer itself because ``d_p`` *is* the buffer: after the update the
mask also zeroes the dropped coordinates of the state (SGD's
``momentum_buffer``; AdamW's first moment ``exp_avg``, its analogue). It exists
so that ``bench/lr_dropout.py`` can compare the two.

Masks come from one of two sources:

* ``mask="generator"`` (default): a ``torch.Generator`` owned by the optimizer,
  seeded with ``seed`` and saved in ``state_dict()``, so a run repeats and
  resumes exactly;
* ``mask="counter"``: a stateless counter-based hash of ``(seed, step,
  parameter key, coordinate index)`` (:func:`counter_keep`), the same integer
  arithmetic the ONNX Runtime optimizer graph (``mobile_lr/export/lr_dropout_block.py``)
  evaluates on the phone, so the desktop reproduces the phone's masks bit for
  bit. ``step`` counts optimizer steps from 1 (ORT's optimizer step input); the
  parameter key (:func:`param_keys`) comes from the parameter's shape and, only
  among parameters of equal shape, from their order in the optimizer (on ORT:
  in the training API's parameter sequence, see the exporter's notes).

>>> import torch
>>> w = torch.nn.Parameter(torch.ones(8))
>>> opt = SGDLRD([w], lr=0.5, momentum=0.9, keep=0.5, seed=1)
>>> w.grad = torch.ones(8)
>>> opt.step()
>>> sorted(set(w.detach().tolist()))    # each coordinate either kept its value or took the SGD step
[0.5, 1.0]
>>> bool((opt.state[w]["momentum_buffer"] == 1).all())   # the momentum saw the full gradient
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch

from mobile_lr.validation import ValidationError, check_int, check_number

__all__ = [
    "KINDS",
    "MASKS",
    "MASK_BITS",
    "RULES",
    "SGDLRD",
    "AdamWLRD",
    "counter_keep",
    "keep_threshold",
    "make_lrd_optimizer",
    "mix32",
    "param_keys",
    "shape_signature",
    "step_key",
]

RULES = ("official", "inplace")
MASKS = ("generator", "counter")
KINDS = ("sgd-lrd", "adamw-lrd")

# ---------------------------------------------------------------------- counter-based masks
#
# One 32-bit mixing function, written with int64 operations that never overflow
# (every value stays below 2**32 and both multipliers below 2**31, so a product is
# below 2**63), and that ONNX has at opset 18 (Mul, Div, BitwiseXor, BitwiseAnd):
# the phone's optimizer graph computes the very same integers. The function is
# C. Wellons' two-round xorshift-multiply hash (hash-prospector, "16 21f0aaad 15
# 735a2d97 15"), chosen for its low bias among hashes with both constants < 2**31.

MASK32 = 0xFFFFFFFF
MIX_MUL = (0x21F0AAAD, 0x735A2D97)
MIX_SHIFT = (16, 15, 15)
SECOND_KEY = 0x9E3779B9  # decorrelates the second mixing round from the first
MASK_BITS = 24  # keep iff (hash >> 8) < round(keep * 2**24): integer compare, no float rounding


def mix32(x: Any) -> Any:
    """The 32-bit mixing hash on Python ints or int64 tensors holding values in [0, 2**32).

    >>> [mix32(v) for v in (0, 1, 2)]
    [0, 2261973619, 229111015]
    """
    x = x ^ (x >> MIX_SHIFT[0])
    x = (x * MIX_MUL[0]) & MASK32
    x = x ^ (x >> MIX_SHIFT[1])
    x = (x * MIX_MUL[1]) & MASK32
    return x ^ (x >> MIX_SHIFT[2])


def shape_signature(shape: Iterable[int]) -> int:
    """32-bit signature of a tensor shape: ``(mix32(rank) + sum_k mix32(d_k ^ mix32(k + 1))) mod 2**32``."""
    shape = [int(d) for d in shape]
    total = mix32(len(shape))
    for k, d in enumerate(shape):
        total += mix32((d & MASK32) ^ mix32(k + 1))
    return total & MASK32


def param_keys(shapes: Iterable[Iterable[int]]) -> list[int]:
    """The mask key of each parameter: its shape signature and its rank among earlier equal signatures.

    Keying by shape rather than by list position makes a parameter's mask
    independent of the order in which a runtime lists the parameters (ORT's
    order is an ``unordered_map``'s); only parameters of the same shape depend
    on their order among themselves.

    >>> a, b, c = param_keys([(3, 2), (4,), (3, 2)])
    >>> a == param_keys([(4,), (3, 2)])[1] and len({a, b, c}) == 3
    True
    """
    seen: dict[int, int] = {}
    keys = []
    for shape in shapes:
        sig = shape_signature(shape)
        keys.append(mix32(sig ^ mix32(seen.get(sig, 0))))
        seen[sig] = seen.get(sig, 0) + 1
    return keys


def step_key(seed: int, step: int, key: int) -> tuple[int, int]:
    """The two 32-bit keys of the parameter with mask key ``key`` at optimizer step ``step`` (from 1)."""
    k = mix32(mix32(mix32(seed & MASK32) ^ (step & MASK32)) ^ (key & MASK32))
    return k, mix32(k ^ SECOND_KEY)


def keep_threshold(keep: float) -> int:
    """Integer threshold on the top 24 hash bits: keep 0 keeps nothing, keep 1 everything."""
    return round(check_number(keep, "keep", lo=0.0, hi=1.0) * (1 << MASK_BITS))


def counter_keep(seed: int, step: int, key: int, shape: Iterable[int], keep: float) -> torch.Tensor:
    """Boolean keep-mask of one parameter: ``hash(hash(c ^ k1) ^ k2) >> 8 < threshold`` per coordinate c.

    ``c`` is the row-major coordinate index and ``key`` the parameter's
    :func:`param_keys` entry. Stateless: the mask of any step can be recomputed,
    which is what makes a resumed run (or the phone) draw it again.
    """
    shape = tuple(int(s) for s in shape)
    n = 1
    for s in shape:
        n *= s
    if n > MASK32:
        raise ValidationError("shape", f"{n} coordinates exceed the counter mask's 2**32")
    k1, k2 = step_key(seed, step, key)
    c = torch.arange(n, dtype=torch.int64)
    u = mix32(mix32(c ^ k1) ^ k2)
    return ((u >> (32 - MASK_BITS)) < keep_threshold(keep)).reshape(shape)


# ---------------------------------------------------------------------- optimizers


class _LRDropout:
    """The LR-dropout step shared by :class:`SGDLRD` and :class:`AdamWLRD` (a mixin over torch.optim)."""

    _state_key: str  # the momentum-like state tensor the unofficial rule masks in place

    def _init_lrd(self, keep: float, seed: int, rule: str, mask: str) -> None:
        self.keep = check_number(keep, "keep", lo=0.0, hi=1.0)
        self.seed = check_int(seed, "seed", lo=0, hi=MASK32)
        if rule not in RULES:
            raise ValidationError("rule", f"unknown value {rule!r}", ", ".join(RULES))
        if mask not in MASKS:
            raise ValidationError("mask", f"unknown value {mask!r}", ", ".join(MASKS))
        self.rule = rule
        self.mask = mask
        self.lrd_step = 0  # steps taken; the counter mask of step t uses t = lrd_step (from 1)
        self.generator = torch.Generator().manual_seed(self.seed)

    def _keep_mask(self, key: int, p: torch.Tensor) -> torch.Tensor:
        if self.mask == "counter":
            return counter_keep(self.seed, self.lrd_step, key, p.shape, self.keep).to(p.device)
        return torch.rand(p.shape, generator=self.generator, dtype=torch.float32).to(p.device) < self.keep

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the parent optimizer, then the dropped coordinates are put back.

        A closure is evaluated first (the parameters that get gradients must be
        known before the snapshot), as ``torch.optim`` does inside its ``step``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"]]  # type: ignore[attr-defined]
        keys = param_keys(p.shape for p in params)
        live = [(k, p) for k, p in zip(keys, params, strict=True) if p.grad is not None]
        before = [p.detach().clone() for _, p in live]
        super().step()  # type: ignore[misc]
        self.lrd_step += 1
        for (key, p), old in zip(live, before, strict=True):
            kept = self._keep_mask(key, p)
            p.copy_(torch.where(kept, p, old))
            if self.rule == "inplace":
                buf = self.state[p].get(self._state_key)  # type: ignore[attr-defined]
                if buf is not None:
                    buf.mul_(kept)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The parent's state dict plus ``"lr_dropout"``: settings, step count and generator state."""
        sd = super().state_dict()  # type: ignore[misc]
        sd["lr_dropout"] = {"keep": self.keep, "seed": self.seed, "rule": self.rule, "mask": self.mask,
                            "step": self.lrd_step, "generator": self.generator.get_state()}
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the parent's state and the mask stream; settings must match (they define the run)."""
        sd = dict(state_dict)
        lrd = sd.pop("lr_dropout", None)
        if lrd is None:
            raise ValidationError("state_dict.lr_dropout", "missing: not an LR-dropout optimizer's state")
        for key in ("keep", "seed", "rule", "mask"):
            if lrd.get(key) != getattr(self, key):
                raise ValidationError(f"state_dict.lr_dropout.{key}", f"{lrd.get(key)!r} differs from "
                                      f"this optimizer's {getattr(self, key)!r}")
        super().load_state_dict(sd)  # type: ignore[misc]
        self.lrd_step = check_int(lrd.get("step"), "state_dict.lr_dropout.step", lo=0)
        self.generator.set_state(lrd["generator"])


class SGDLRD(_LRDropout, torch.optim.SGD):
    """``torch.optim.SGD`` with learning-rate dropout (official rule unless ``rule="inplace"``).

    Arguments are ``torch.optim.SGD``'s plus ``keep`` (the keep probability,
    the official ``--LRD_p``), ``seed``, ``rule`` and ``mask``. Official SGD-LRD
    (momentum 0.9): ``buf = mu*buf + (1-dampening)*g``; ``p -= lr * mask * buf``.
    With momentum 0 the update is ``p -= lr * mask * g``.
    """

    _state_key = "momentum_buffer"

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, keep: float = 0.5, seed: int = 0,
                 rule: str = "official", mask: str = "generator") -> None:
        torch.optim.SGD.__init__(self, params, lr=lr, momentum=momentum, dampening=dampening,
                                 weight_decay=weight_decay, nesterov=nesterov)
        self._init_lrd(keep, seed, rule, mask)


class AdamWLRD(_LRDropout, torch.optim.AdamW):
    """``torch.optim.AdamW`` with learning-rate dropout: moments see the full gradient, the update is masked.

    Arguments are ``torch.optim.AdamW``'s plus ``keep``, ``seed``, ``rule`` and
    ``mask``. ``rule="inplace"`` also masks the first moment (``exp_avg``) in
    place, the AdamW analogue of the unofficial SGD code's momentum masking.
    """

    _state_key = "exp_avg"

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, *, keep: float = 0.5, seed: int = 0,
                 rule: str = "official", mask: str = "generator") -> None:
        torch.optim.AdamW.__init__(self, params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self._init_lrd(keep, seed, rule, mask)


def make_lrd_optimizer(kind: str, params: Any, *, keep: float, seed: int = 0, rule: str = "official",
                       mask: str = "generator", **hparams: Any) -> torch.optim.Optimizer:
    """``"sgd-lrd"`` -> :class:`SGDLRD`, ``"adamw-lrd"`` -> :class:`AdamWLRD` (hparams: the parent's)."""
    classes = {"sgd-lrd": SGDLRD, "adamw-lrd": AdamWLRD}
    if kind not in classes:
        raise ValidationError("optimizer", f"unknown value {kind!r}", ", ".join(KINDS))
    return classes[kind](params, keep=keep, seed=seed, rule=rule, mask=mask, **hparams)
