"""The recommended set-up for a fine-tune whose budget the battery decides: one record.

What bench/budget_quality measured best when the battery cuts a fine-tune short
(bench/README.md "Quality under a cut budget", docs/DECISIONS.md): average the iterates
(schedule-free AdamW, or an EMA of the weights with a cool-down over the end of the budget in
force) and raise the peak LR when the first plan is short. :func:`recommended_setup` returns
the three halves a caller needs -- the schedule spec, the manager config (``nominal_steps``
included) and the keyword arguments of :func:`mobile_lr.runtime.open_runtime` -- as one
:class:`RecommendedSetup`, whose constructor refuses a combination that does not go
together (naming both halves), so they cannot be mixed up by hand.

The base LR is the bundle's: the LR its schedule gives its manifest's optimizer (``adamw`` or
``sgd``). A set-up that trains with another optimizer converts it by a stated factor
(:attr:`SetupOptions.sf_lr_factor` for schedule-free AdamW), so one ``base_lr`` is right for
whichever set-up runs the bundle (docs/DECISIONS.md "One set-up object").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mobile_lr.schedules import parse_spec
from mobile_lr.validation import ValidationError, check_int, check_number, get_object, join
from mobile_lr.validation.schema import Record, choice, custom, integer, nested, number

from .config import HORIZONS, DivergenceConfig, ManagerConfig

if TYPE_CHECKING:
    from mobile_lr.bundle import Manifest

__all__ = ["AVERAGINGS", "RECOMMENDED_AVERAGING", "RUNTIME_KINDS", "RecommendedSetup",
           "SetupOptions", "plan_warmup", "recommended_setup"]

#: The runtimes a set-up is made for (:data:`mobile_lr.runtime.RUNTIMES`).
RUNTIME_KINDS = ("torch", "ort", "executorch")
#: Averaging flavours: ``"ema"`` (the bundle's optimizer, evaluated and exported at an EMA of
#: the weights, a cool-down over the end of the budget) and ``"schedulefree"`` (schedule-free
#: AdamW, evaluated at its average, a held peak).
AVERAGINGS = ("ema", "schedulefree")

#: The measured default flavour per runtime kind: schedule-free AdamW on every runtime (on ORT
#: and ExecuTorch too: bench/budget_quality, docs/DECISIONS.md "One set-up object"); the EMA
#: flavour where schedule-free AdamW cannot run the bundle (SGD, LR dropout).
RECOMMENDED_AVERAGING: dict[str, str] = {"torch": "schedulefree", "ort": "schedulefree",
                                         "executorch": "schedulefree"}


@dataclass(frozen=True, kw_only=True)
class SetupOptions(Record):
    """The knobs of the recommended set-up (what bench/budget_quality measures; JSON).

    The defaults are the measured set-up; a bench passes others to compare them.
    """

    PATH = "options"

    averaging: str | None = choice(AVERAGINGS, None, nullable=True,
                                   help="null: the runtime's measured default (RECOMMENDED_AVERAGING)")
    ema: float = number(0.9, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                        help="ema flavour: the runtimes' EMA decay (0.9 spans ~10 steps)")
    warmup_steps: int = integer(2, lo=0, help="warm-up length in steps (0: none)")
    warmup_start_factor: float = number(0.3, lo=0.0, hi=1.0, lo_open=True,
                                        help="the warm-up's first LR over the peak")
    warmup_max_fraction: float = number(0.05, lo=0.0, hi=1.0, lo_open=True,
                                        help="the warm-up never takes more of the first plan")
    cooldown_fraction: float = number(0.2, lo=0.0, hi=1.0, lo_open=True,
                                      help="ema flavour: share of the budget in force cooled down")
    sf_cooldown_fraction: float = number(
        0.0, lo=0.0, hi=1.0, help="schedulefree flavour: a final linear decay over this share of "
                                  "the budget in force as its end nears (0: the LR is held)")
    sf_lr_factor: float = number(
        2.5, lo=0.0, lo_open=True,
        help="schedulefree flavour: its LR over the bundle's base LR (the bundle's optimizer's)")
    peak_power: float = number(0.3, lo=0.0,
                               help="ema flavour: peak LR x (nominal / first plan) ** this")
    sf_r: float = number(
        1.0, lo=0.0, help="schedulefree flavour: the averaging weight power r (step k weighs "
                          "(k + 1) ** r x lr_max ** 2; 0: the package's uniform average)")
    sf_warmup_fraction: float = number(
        0.1, lo=0.0, hi=1.0, help="schedulefree flavour: warm up over this share of the plan in "
                                  "force (a re-plan re-times it), from sf_warmup_start_factor x the "
                                  "peak, instead of the warmup_steps warm-up (0: that one)")
    sf_warmup_start_factor: float = number(
        0.6, lo=0.0, hi=1.0, lo_open=True, help="schedulefree flavour: the first LR of the "
                                                "sf_warmup_fraction warm-up over the peak")
    sf_warmup_horizon: str = choice(
        HORIZONS, "battery", help="schedulefree flavour: the plan the sf_warmup_fraction warm-up "
                                  "is a share of: the plan in force, or battery: it capped while "
                                  "charging at what the battery alone affords (the config's "
                                  "schedule_horizon)")
    sf_peak_power: float = number(0.0, lo=0.0,
                                  help="schedulefree flavour: the same (0: no peak-LR factor)")
    peak_max_factor: float = number(2.5, lo=1.0, help="the peak-LR factor's cap")
    divergence: DivergenceConfig | None = nested(
        DivergenceConfig, None, nullable=True,
        help="loss-spike divergence detection (null: only non-finite losses roll back)")


def _schedule(value: Any, path: str) -> dict[str, Any]:
    spec = get_object(value, path)
    try:
        parse_spec(spec)
    except ValidationError as err:
        raise ValidationError(join(path, err.field), err.problem, err.allowed) from None
    return dict(spec)


_OPTION_KEYS = ("optimizer", "ema", "threads", "sf_r")


def _runtime_options(value: Any, path: str) -> dict[str, Any]:
    opts = get_object(value, path)
    for key in opts:
        if key not in _OPTION_KEYS:
            raise ValidationError(join(path, key), "unknown option", ", ".join(_OPTION_KEYS))
    if opts.get("optimizer", "recipe") not in ("recipe", "schedulefree"):
        raise ValidationError(join(path, "optimizer"), f"unknown value {opts['optimizer']!r}",
                              "recipe, schedulefree")
    if opts.get("ema") is not None:
        check_number(opts["ema"], join(path, "ema"), lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if "sf_r" in opts:
        check_number(opts["sf_r"], join(path, "sf_r"), lo=0.0)
    return dict(opts)


@dataclass(frozen=True, kw_only=True)
class RecommendedSetup(Record):
    """A set-up for one run: ``schedule`` (a schedule spec), ``config`` (the
    :class:`ManagerConfig`, ``nominal_steps`` set) and ``runtime_options`` (keyword arguments of
    :func:`mobile_lr.runtime.open_runtime` for ``runtime``), with the ``averaging`` flavour they
    share. The constructor refuses halves that do not go together, naming both."""

    PATH = "setup"

    runtime: str = choice(RUNTIME_KINDS, help="the runtime kind the options are for")
    averaging: str = choice(AVERAGINGS, help="the averaging flavour the halves share")
    schedule: dict[str, Any] = custom(_schedule, {"type": "object"}, help="a schedule spec")
    config: ManagerConfig = nested(ManagerConfig, help="the manager config")
    runtime_options: dict[str, Any] = custom(_runtime_options, {"type": "object"},
                                             help="open_runtime keyword arguments")

    def check(self) -> None:
        if self.config.nominal_steps is None:
            raise ValidationError("config.nominal_steps", "missing: a set-up plans for the run's "
                                  "nominal length", "an integer >= 1")
        opts, mode = self.runtime_options, parse_spec(self.schedule).budget_mode
        if self.config.schedule_horizon == "battery" and not _holds_after_warmup(
                self.schedule.get("shape", {})):
            raise ValidationError(
                "config.schedule_horizon", "'battery' does not go with a schedule shape that "
                "decays (it would cool down for the steps the battery alone affords while the "
                "charger carries the run)", "plan, or a shape that holds its peak")
        optimizer = opts.get("optimizer", "recipe")
        if self.averaging == "ema":
            if optimizer == "schedulefree":
                raise ValidationError(
                    "runtime_options.optimizer", "'schedulefree' does not go with averaging 'ema' "
                    "(the schedule cools down for weights evaluated at their EMA)",
                    "'recipe' with runtime_options.ema, or averaging 'schedulefree'")
            if opts.get("ema") is None:
                raise ValidationError("runtime_options.ema", "missing: averaging 'ema' evaluates "
                                      "at an EMA of the weights", "a decay in (0, 1)")
            if opts.get("sf_r"):
                raise ValidationError(
                    "runtime_options.sf_r", "does not go with averaging 'ema' (it weighs "
                    "schedule-free AdamW's average)", "no sf_r, or averaging 'schedulefree'")
            if mode not in ("wsd", "replan"):
                raise ValidationError(
                    "schedule.budget.mode", f"{mode!r} does not go with averaging 'ema' (its "
                    "schedule must cool down as the budget in force ends)", "wsd, replan")
            if mode == "replan" and _holds_after_warmup(self.schedule.get("shape", {})):
                raise ValidationError(
                    "schedule.shape", "a shape that holds its peak does not go with averaging "
                    "'ema' in budget mode 'replan' (its schedule must cool down as the budget in "
                    "force ends)", "a decaying shape, or budget mode wsd")
        else:
            if optimizer != "schedulefree":
                raise ValidationError(
                    "runtime_options.optimizer", f"{optimizer!r} does not go with averaging "
                    "'schedulefree' (the schedule holds the peak for an averaging optimizer)",
                    "'schedulefree', or averaging 'ema'")
            if opts.get("ema") is not None:
                raise ValidationError(
                    "runtime_options.ema", "does not go with averaging 'schedulefree' (it "
                    "averages its iterates already)", "no ema, or averaging 'ema'")
            if mode == "replan" and not _holds_after_warmup(self.schedule.get("shape", {})):
                raise ValidationError(
                    "schedule.budget.mode", "'replan' does not go with averaging 'schedulefree' "
                    "(a re-planned curve decays from step 0; schedule-free's average does that)",
                    "fixed, wsd")

    def manager_kwargs(self) -> dict[str, Any]:
        """``schedule`` and ``config`` as :class:`~mobile_lr.manager.ScheduleManager` takes them."""
        return {"schedule": self.schedule, "config": self.config}


def plan_warmup(fraction: float, start_factor: float) -> dict[str, Any]:
    """A warm-up over ``fraction`` of the plan in force, then the peak held: OneCycleLR's linear
    first phase from ``start_factor`` x the peak, with a final LR of the peak itself
    (``final_div_factor = 1 / div_factor``), so its second phase is flat. In budget mode
    ``replan`` a re-plan re-times it, and a cut learnt mid-warm-up ends it."""
    return {"type": "onecycle", "anneal_strategy": "linear", "pct_start": float(fraction),
            "div_factor": 1.0 / start_factor, "final_div_factor": float(start_factor)}


def _holds_after_warmup(shape: Mapping[str, Any]) -> bool:
    """A shape that never decays below its peak: constant, or :func:`plan_warmup`'s ramp."""
    if shape.get("type") == "constant":
        return True
    return (shape.get("type") == "onecycle" and not shape.get("three_phase", False)
            and abs(float(shape.get("div_factor", 25.0)) * float(shape.get("final_div_factor", 1e4)) - 1.0)
            <= 1e-9)


def _averaging(runtime: str, manifest: Manifest | None, wanted: str | None) -> str:
    averaging = wanted or RECOMMENDED_AVERAGING[runtime]
    if averaging != "schedulefree" or manifest is None:
        return averaging
    adamw = manifest.plain_adamw if runtime == "ort" else manifest.optimizer.type == "adamw"
    if adamw or runtime == "torch":
        return averaging
    if wanted is not None:
        raise ValidationError("options.averaging", f"'schedulefree' needs an AdamW bundle on "
                              f"{runtime}, not {manifest.optimizer.type!r}"
                              + (" with LR dropout" if manifest.lr_dropout is not None else ""),
                              "ema, or a bundle exported with the adamw optimizer")
    return "ema"   # the default for the runtime cannot run on this bundle: the other flavour


def recommended_setup(runtime: str, manifest: Manifest | None, base_lr: float,
                      nominal_steps: int,
                      options: SetupOptions | Mapping[str, Any] | None = None) -> RecommendedSetup:
    """The recommended set-up for ``runtime`` training the bundle of ``manifest`` (None: any
    bundle) for ``nominal_steps`` steps from the bundle's ``base_lr``.

    The EMA flavour (and the schedule-free one with ``sf_warmup_fraction`` 0) warms up for at
    most ``warmup_steps`` from ``warmup_start_factor`` × the peak (never more than
    ``warmup_max_fraction`` of the first plan). ``"ema"``: then the peak is
    held and a linear cool-down to 0 runs over the last ``cooldown_fraction`` of the budget in
    force (budget mode ``wsd``: a budget cut moves the cool-down; steps already held at the
    peak are never re-decayed); for a plan of 300, warm-up 0..1, cool-down over steps 241..299;
    the peak is raised by ``min(peak_max_factor, (nominal / first plan) ** peak_power)``.
    ``"schedulefree"``: the LR ``sf_lr_factor × base_lr`` is held (the optimizer's own
    averaging does what the cool-down does), with a final decay over ``sf_cooldown_fraction``
    of the budget when that is set, and raised by ``sf_peak_power`` the same way (0: not); it
    warms up over ``sf_warmup_fraction`` of the plan in force from ``sf_warmup_start_factor``
    (:func:`plan_warmup`: a re-plan re-times it, so a short budget learnt early spends little
    on it while a long one gets a long warm-up; with ``sf_warmup_horizon`` ``"battery"`` the
    plan it is a share of is capped while charging at what the battery alone affords, so a
    charger unplugged early does not find a short budget spent warming up for the charger's
    plan); its average weighs step ``k`` by
    ``(k + 1) ** sf_r`` (runtime option ``sf_r``; 0 is the package's uniform average, and a
    larger ``r`` lets the later steps count more, so a long run's average is not held back by
    its first steps). Both measured in docs/DECISIONS.md. Where the runtime's default flavour
    cannot run the bundle (schedule-free AdamW on an SGD or LR-dropout bundle) the other one is
    chosen; an explicit ``options.averaging`` it cannot run is refused.

    >>> from mobile_lr.schedules import parse_spec
    >>> sf = recommended_setup("ort", None, 0.01, 300)
    >>> sf.averaging, sf.runtime_options, sf.config.nominal_steps, sf.config.peak_lr
    ('schedulefree', {'optimizer': 'schedulefree', 'sf_r': 1.0}, 300, {'type': 'none'})
    >>> [round(parse_spec(sf.schedule).lr(t, [(0, 300)]), 6) for t in (0, 1, 29, 299)]
    [0.015, 0.015345, 0.025, 0.025]
    >>> s = recommended_setup("ort", None, 0.01, 300, {"averaging": "ema"})
    >>> s.averaging, s.runtime_options, s.config.peak_lr["power"]
    ('ema', {'ema': 0.9}, 0.3)
    >>> sched = parse_spec(s.schedule)
    >>> [round(sched.lr(t, [(0, 300)]), 6) for t in (0, 2, 241, 270, 300)]
    [0.003, 0.01, 0.01, 0.005085, 0.0]
    """
    if runtime not in RUNTIME_KINDS:
        raise ValidationError("runtime", f"unknown value {runtime!r}", ", ".join(RUNTIME_KINDS))
    check_number(base_lr, "base_lr", lo=0.0, lo_open=True)
    nominal_steps = check_int(nominal_steps, "nominal_steps", lo=1)   # int() took True and 1.5 as 1
    o = options if isinstance(options, SetupOptions) else SetupOptions.from_dict(options or {})
    averaging = _averaging(runtime, manifest, o.averaging)
    spec: dict[str, Any] = {"format": "mobile-lr.schedule/1", "base_lr": float(base_lr)}
    ramp = averaging == "schedulefree" and o.sf_warmup_fraction > 0.0
    if ramp and o.sf_cooldown_fraction > 0.0:
        raise ValidationError("options.sf_warmup_fraction", "does not go with sf_cooldown_fraction "
                              "(the warm-up follows the plan by re-planning, the cool-down by "
                              "the budget mode wsd)", "one of them 0")
    if o.warmup_steps > 0 and not ramp:
        spec["warmup"] = {"steps": o.warmup_steps, "start_factor": o.warmup_start_factor,
                          "max_fraction": o.warmup_max_fraction}
    decay = o.cooldown_fraction if averaging == "ema" else o.sf_cooldown_fraction
    if averaging == "schedulefree":
        spec["base_lr"] = float(base_lr) * o.sf_lr_factor
    if ramp:
        spec["shape"] = plan_warmup(o.sf_warmup_fraction, o.sf_warmup_start_factor)
        spec["budget"] = {"mode": "replan"}
    elif decay > 0.0:
        spec["shape"] = {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}
        spec["budget"] = {"mode": "wsd", "decay_fraction": decay}
    else:
        spec["shape"] = {"type": "constant", "factor": 1.0}
        spec["budget"] = {"mode": "fixed"}
    power = o.peak_power if averaging == "ema" else o.sf_peak_power
    config: dict[str, Any] = {"nominal_steps": nominal_steps, "peak_lr": {"type": "none"}}
    if power > 0.0:
        config["peak_lr"] = {"type": "budget_power", "power": power, "max_factor": o.peak_max_factor}
    if ramp and o.sf_warmup_horizon == "battery":
        config["schedule_horizon"] = "battery"
    if o.divergence is not None:
        config["divergence"] = o.divergence.to_dict()
    opts: dict[str, Any] = {"optimizer": "schedulefree"} if averaging == "schedulefree" \
        else {"ema": o.ema}
    if averaging == "schedulefree" and o.sf_r > 0.0:
        opts["sf_r"] = o.sf_r
    return RecommendedSetup(runtime=runtime, averaging=averaging, schedule=spec,
                            config=ManagerConfig.from_dict(config), runtime_options=opts)
