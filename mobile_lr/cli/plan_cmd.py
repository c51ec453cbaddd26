"""``mobile-lr plan`` and ``mobile-lr profiles``: the budget planner from the shell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mobile_lr.budget import Policy, StepCost, load_policy, plan
from mobile_lr.device import (
    BUILTIN_PROFILES,
    MAX_BATTERY_WH,
    DeviceState,
    load_profile,
    parse_thermal_status,
)
from mobile_lr.validation import ValidationError, check_int, check_number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="how many training steps a phone can afford now",
        description="Plan the training steps a phone can afford from its state now: the "
                    "planner integrates the battery and the RC thermal model forward (throttled "
                    "steps take longer) and stops at the battery floor, the thermal limit or "
                    "the end of the time window.")
    p.add_argument("--profile", required=True,
                   help=f"built-in profile ({', '.join(BUILTIN_PROFILES)}) or a .json/.toml file")
    p.add_argument("--level", type=float, required=True, help="battery level, 0..1")
    p.add_argument("--charging", action="store_true", help="the charger is plugged in")
    p.add_argument("--temp", type=float, help="skin temperature in °C (default: ambient)")
    p.add_argument("--status", help="thermal status (default: from the temperature)")
    p.add_argument("--ambient", type=float, help="ambient temperature in °C (default: profile)")
    p.add_argument("--policy", type=Path, help="policy JSON file (flags below override it)")
    p.add_argument("--floor", type=float, help="battery floor, a fraction in [0, 1) (default 0.2)")
    p.add_argument("--max-thermal", help="highest thermal status allowed (default MODERATE)")
    p.add_argument("--window", type=float,
                   help="seconds in this session (default: the profile's OS window)")
    p.add_argument("--margin", type=float, help="thermal margin in K (default 1.0)")
    p.add_argument("--step-seconds", type=float, required=True,
                   help="seconds per training step at full speed")
    p.add_argument("--step-joules", type=float,
                   help="joules per step at full speed (default: profile power × seconds)")
    p.add_argument("--max-steps", type=int, help="cap on the steps planned")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)

    pr = sub.add_parser("profiles", help="list the built-in device profiles",
                        description="List the built-in device profiles with their key numbers.")
    pr.add_argument("--json", action="store_true", help="print the full profiles as JSON")
    pr.set_defaults(func=cmd_profiles)


def _policy(args: argparse.Namespace) -> Policy:
    """The policy file (or the default) with the flags over it, checked once by :class:`Policy`
    (its bounds, a refusal naming the flag)."""
    base = load_policy(args.policy).to_dict() if args.policy else Policy().to_dict()
    flags = {"battery_floor": "--floor", "window_s": "--window", "thermal_margin_c": "--margin"}
    for key, flag in flags.items():
        value = getattr(args, flag[2:])
        if value is not None:
            base[key] = value
    if args.max_thermal is not None:
        base["max_thermal"] = parse_thermal_status(args.max_thermal, "--max-thermal").name
    try:
        return Policy.from_dict(base)
    except ValidationError as err:
        if err.field in flags and getattr(args, flags[err.field][2:]) is not None:
            raise ValidationError(flags[err.field], err.problem, err.allowed) from None
        raise


def cmd_plan(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    level = check_number(args.level, "--level", lo=0.0, hi=1.0)
    ambient = None if args.ambient is None else check_number(args.ambient, "--ambient",
                                                             lo=-50.0, hi=80.0)
    amb = profile.ambient_c if ambient is None else ambient
    temp = amb if args.temp is None else check_number(args.temp, "--temp", lo=-50.0, hi=150.0)
    status = profile.status_for(temp) if args.status is None \
        else parse_thermal_status(args.status, "--status")
    policy = _policy(args)
    seconds = check_number(args.step_seconds, "--step-seconds", lo=1e-6, hi=86400.0)  # a profile's step
    joules = profile.train_power_w * seconds if args.step_joules is None \
        else check_number(args.step_joules, "--step-joules", lo=0.0, hi=MAX_BATTERY_WH * 3600.0,
                          lo_open=True)  # a step costs at most the largest battery a profile may have
    if args.max_steps is not None:
        check_int(args.max_steps, "--max-steps", lo=0)   # (64-bit, as every integer read)
    state = DeviceState(level=level, charging=args.charging, temperature_c=temp,
                        thermal_status=status, ambient_c=ambient)
    result = plan(profile, state, policy, StepCost(seconds, joules), max_steps=args.max_steps)
    if args.json:
        print(json.dumps({"profile": profile.name, "state": state.to_dict(),
                          "policy": policy.to_dict(),
                          "cost": {"step_seconds": seconds, "step_joules": joules},
                          "plan": result.to_dict()}, indent=2))
        return 0
    window = policy.window_s if policy.window_s is not None else profile.window_for(state.charging)
    print(f"profile {profile.name}: level {level:.0%}, {'charging' if args.charging else 'on battery'}, "
          f"{temp:.1f} °C ({status.name}), floor {policy.battery_floor:.0%}, "
          f"max {policy.max_thermal.name}, window {window:.0f} s")
    print(f"steps            {result.steps}")
    print(f"limited by       {result.limiting_factor}{' (' + result.detail + ')' if result.detail else ''}")
    print(f"energy           {result.energy_j:.1f} J")
    print(f"duration         {result.seconds:.1f} s")
    print(f"end level        {result.end_level:.2%}")
    print(f"end temperature  {result.end_temperature_c:.1f} °C ({result.end_status.name})")
    return 0


def _summary(name: str) -> dict[str, Any]:
    p = load_profile(name)
    return {"name": p.name, "battery_wh": round(p.battery_wh, 2), "idle_w": p.idle_power_w,
            "train_w": p.train_power_w, "charge_w": p.charge_power_w,
            "r_k_per_w": p.thermal_resistance_k_per_w, "c_j_per_k": p.heat_capacity_j_per_k,
            "tau_s": p.tau_s, "throttle_floor": min(p.throughput),
            "step_seconds": p.step_seconds, "window_s": p.window_s,
            "window_charging_s": p.window_charging_s, "description": p.description}


def cmd_profiles(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({"profiles": [load_profile(n).to_dict() for n in BUILTIN_PROFILES]},
                         indent=2, ensure_ascii=False))
        return 0
    head = (f"{'name':<10} {'battery':>8} {'idle':>6} {'train':>6} {'charge':>7} {'R':>5} "
            f"{'C':>5} {'tau':>5} {'floor':>6} {'step':>8}")
    print(head)
    for name in BUILTIN_PROFILES:
        s = _summary(name)
        print(f"{s['name']:<10} {s['battery_wh']:>6.1f}Wh {s['idle_w']:>5.2f}W {s['train_w']:>5.1f}W "
              f"{s['charge_w']:>6.0f}W {s['r_k_per_w']:>5.1f} {s['c_j_per_k']:>5.0f} "
              f"{s['tau_s']:>4.0f}s {s['throttle_floor']:>6.2f} {s['step_seconds'] * 1000:>6.1f}ms")
    print("R in K/W, C in J/K, floor = lowest throughput factor under throttling; "
          "sources: the 'sources' of each profile (mobile-lr profiles --json)")
    return 0
