"""The recommended set-up for a fine-tune whose budget the battery decides.

What bench/budget_quality measured best when the battery cuts a fine-tune short
(bench/README.md "Quality under a cut budget", docs/DECISIONS.md): average the iterates
(schedule-free AdamW where the runtime has it, else an EMA of the weights with a re-planned
cool-down), and raise the peak LR when the first plan is short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mobile_lr.validation import ValidationError

if TYPE_CHECKING:
    from mobile_lr.bundle import Manifest

__all__ = ["RECOMMENDED_AVERAGING", "RECOMMENDED_CONFIG", "RECOMMENDED_EMA",
           "recommended_averaging", "recommended_runtime_options", "recommended_schedule"]

#: Iterate averaging per runtime kind: the PyTorch runtime trains with schedule-free AdamW
#: (evaluated at its average), ORT and ExecuTorch keep the bundle's optimizer with an EMA.
#: ORT can run schedule-free AdamW (``optimizer="schedulefree"``), but at the bundle's AdamW
#: base LR it trails the EMA set-up (docs/DECISIONS.md, "Schedule-free AdamW on ORT").
RECOMMENDED_AVERAGING: dict[str, str] = {"torch": "schedulefree", "ort": "ema", "executorch": "ema"}

#: The runtimes' ``ema=`` decay for the ``"ema"`` flavour (an EMA of 0.9 spans ~10 steps:
#: short enough for a 30-step budget; a longer one keeps too much of the pre-trained weights).
RECOMMENDED_EMA = 0.9

#: :class:`ManagerConfig` fields (JSON) to use with :func:`recommended_schedule`: the peak LR
#: is ``min(2.5, (nominal / first plan) ** 0.3)`` times ``base_lr`` (2x for a tenth of the plan).
RECOMMENDED_CONFIG: dict[str, Any] = {
    "peak_lr": {"type": "budget_power", "power": 0.3, "max_factor": 2.5}}


def recommended_averaging(runtime: str, manifest: Manifest | None = None) -> str:
    """The averaging flavour for ``runtime`` training the bundle of ``manifest`` (None: any bundle).

    :data:`RECOMMENDED_AVERAGING`, except that the ORT runtime builds schedule-free AdamW on
    the bundle's AdamW optimizer graph, so where ``"schedulefree"`` is chosen for ORT an SGD
    or LR-dropout bundle gets the EMA there.

    >>> recommended_averaging("torch")
    'schedulefree'
    >>> recommended_averaging("ort")
    'ema'
    """
    if runtime not in RECOMMENDED_AVERAGING:
        raise ValidationError("runtime", f"unknown value {runtime!r}", ", ".join(RECOMMENDED_AVERAGING))
    averaging = RECOMMENDED_AVERAGING[runtime]
    if runtime != "ort" or averaging != "schedulefree" or manifest is None:
        return averaging
    return averaging if manifest.plain_adamw else "ema"


def recommended_runtime_options(averaging: str) -> dict[str, Any]:
    """Keyword arguments for :func:`mobile_lr.runtime.open_runtime` of that averaging flavour."""
    if averaging == "schedulefree":
        return {"optimizer": "schedulefree"}
    if averaging == "ema":
        return {"ema": RECOMMENDED_EMA}
    raise ValidationError("averaging", f"unknown value {averaging!r}", "schedulefree, ema")


def recommended_schedule(base_lr: float, averaging: str = "ema") -> dict[str, Any]:
    """The recommended schedule spec for a fine-tune whose budget the battery decides.

    Both flavours warm up for at most 5 steps (never more than 5 % of the first plan).
    ``"ema"``: then the peak is held and a linear cool-down to 0 runs over the last 20 % of
    the budget in force after the warm-up (budget mode ``wsd``: a budget cut moves the
    cool-down; steps already held at the peak are never re-decayed); for a plan of 300,
    warm-up 0..4, cool-down over steps 241..299. ``"schedulefree"``: then the LR stays at
    the peak (the optimizer's own averaging does what the cool-down does).

    >>> from mobile_lr.schedules import parse_spec
    >>> s = parse_spec(recommended_schedule(0.01))
    >>> [round(s.lr(t, [(0, 300)]), 6) for t in (0, 5, 241, 270, 300)]
    [0.001, 0.01, 0.01, 0.005085, 0.0]
    >>> sf = parse_spec(recommended_schedule(0.01, "schedulefree"))
    >>> [round(sf.lr(t, [(0, 300)]), 6) for t in (0, 5, 299)]
    [0.001, 0.01, 0.01]
    """
    recommended_runtime_options(averaging)  # validates the flavour
    spec: dict[str, Any] = {"format": "mobile-lr.schedule/1", "base_lr": base_lr,
                            "warmup": {"steps": 5, "start_factor": 0.1, "max_fraction": 0.05}}
    if averaging == "schedulefree":
        spec["shape"] = {"type": "constant", "factor": 1.0}
    else:
        spec["shape"] = {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}
        spec["budget"] = {"mode": "wsd", "decay_fraction": 0.2}
    return spec
