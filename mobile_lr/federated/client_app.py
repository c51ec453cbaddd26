"""The Flower ClientApp: one simulated phone per SuperNode (virtual in simulation, real in deployment).

The phone is drawn from the fleet seed and the node's ``partition-id``
(:func:`mobile_lr.federated.fleet.draw_phone`); its battery, charger and heat
persist in the node's ``Context.state`` between rounds, and between two
messages it lives its day (:func:`~mobile_lr.federated.fleet.phone_between`).
Everything else it needs comes with each message: the fleet settings in the
``config`` record (the ServerApp is the one source of truth, so the same
ClientApp runs unchanged on the simulation and the deployment engine) and the
global model in the ``arrays`` record.

Messages handled:

* ``query.hello`` -> ``{"partition-id"}`` (the server maps node ids to phones once);
* ``query`` -> the phone's state and the planner's affordable steps for the round
  (no training: what battery-aware selection ranks on);
* ``train`` -> local training. ``mode = "planned"``: the schedule manager's loop
  (:func:`~mobile_lr.federated.local.train_planned`); a phone whose policy forbids
  training declines (0 examples, ``declined = 1``). ``mode = "fixed"``: Flower's
  default client, ``local-epochs`` epochs at a constant LR
  (:func:`~mobile_lr.federated.local.train_fixed`); a phone that cannot start, or
  whose job the OS kills, fails the round (an error reply: its work is lost).
  A simulated app kill (``kill-prob``) fails the round in both modes.

Error replies carry ``killed: {json}`` / ``declined: {json}`` with what the phone
spent: the server of a real deployment sees only the failure, the simulator's
report also counts the energy that was lost with it.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import numpy as np

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

from mobile_lr.budget import StepCost, plan
from mobile_lr.datasets import Split, user_split
from mobile_lr.device import DeviceState, SimulatedDevice, ThermalStatus
from mobile_lr.federated.fleet import FleetConfig, Phone, draw_phone, phone_between
from mobile_lr.federated.local import LocalResult, train_fixed, train_planned
from mobile_lr.manager import ManagerConfig, ScheduleManager, recommended_setup
from mobile_lr.runtime import open_runtime

__all__ = ["ERROR_DECLINED", "ERROR_KILLED", "app", "arrays_to_numpy", "local_schedule", "numpy_to_arrays",
           "round_plan"]

ERROR_KILLED = 701    # the app died mid-round: the round's work is lost
ERROR_DECLINED = 702  # fedavg-fixed: the OS would not start the job

app = ClientApp()


def numpy_to_arrays(values: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in values.items()})


def arrays_to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def _config(message: Message) -> tuple[FleetConfig, dict[str, Any]]:
    """The fleet settings and the round's own keys (``server-round``, ``mode``) of a message."""
    raw = dict(message.content.config_records["config"])
    extra = {k: raw.pop(k) for k in ("server-round", "mode") if k in raw}
    return FleetConfig.from_run_config(raw), extra


@lru_cache(maxsize=64)
def _user_data(user_seed: int, n_train: int) -> Split:
    return user_split(seed=user_seed, n_train=n_train)[0]


def _load_state(context: Context, phone: Phone) -> DeviceState:
    rec = context.state.config_records.get("phone")
    if rec is None:
        return phone.start
    return DeviceState(level=float(rec["level"]), charging=bool(rec["charging"]),
                       temperature_c=float(rec["temperature-c"]),
                       thermal_status=ThermalStatus(int(rec["thermal-status"])),
                       time_s=float(rec["time-s"]), ambient_c=phone.ambient_c)


def _save_state(context: Context, state: DeviceState, rounds_trained: int | None = None) -> None:
    old = context.state.config_records.get("phone")
    trained = int(old["rounds-trained"]) if old is not None else 0
    context.state["phone"] = ConfigRecord({
        "level": float(state.level), "charging": bool(state.charging),
        "temperature-c": float(state.temperature_c), "thermal-status": int(state.thermal_status),
        "time-s": float(state.time_s), "rounds-trained": trained + (rounds_trained or 0)})


def _phone_at(context: Context, cfg: FleetConfig, server_round: int) -> tuple[Phone, DeviceState]:
    phone = draw_phone(cfg, int(context.node_config["partition-id"]))
    state = phone_between(phone, _load_state(context, phone), cfg.round_start_s(server_round))
    return phone, state


def round_plan(cfg: FleetConfig, phone: Phone, state: DeviceState) -> tuple[float, Any]:
    """The round's deadline (device time) and the planner's verdict for the nominal steps.

    The round ends at the server's deadline or the end of the OS window the job
    gets (10 min on battery, 30 min on the charger), whichever is first.
    """
    deadline = state.time_s + min(cfg.round_deadline_s, phone.profile.window_for(state.charging))
    verdict = plan(phone.profile, state, phone.policy, StepCost.from_profile(phone.profile),
                   max_steps=cfg.local_steps, time_budget_s=deadline - state.time_s)
    return deadline, verdict


def local_schedule(cfg: FleetConfig) -> tuple[dict[str, Any], ManagerConfig]:
    """The schedule spec and manager config of a manager-driven phone's round (``local_schedule``).

    ``wsd-peak`` is the project's recommended set-up for a battery-decided budget
    (:func:`~mobile_lr.manager.recommended_setup`, ``"ema"`` flavour: its schedule's WSD shape
    and its config's peak-LR rule) but WITHOUT its runtime options' EMA of the weights: a
    federated round uploads the raw local weights and the server's average already smooths
    across phones, so the runtime is opened without ``ema=``; ``wsd`` is the same without the
    peak-LR rule.

    >>> spec, mc = local_schedule(FleetConfig(lr=0.2))
    >>> spec["budget"]["mode"], mc.peak_lr["type"], mc.nominal_steps
    ('wsd', 'budget_power', 49)
    >>> local_schedule(FleetConfig(local_schedule="wsd"))[1].peak_lr is None
    True
    """
    nominal = {"nominal_steps": cfg.local_steps}
    if cfg.local_schedule == "cosine":
        spec = {"format": "mobile-lr.schedule/1", "base_lr": cfg.lr, "shape": {"type": "cosine"}}
        return spec, ManagerConfig.from_dict(nominal)
    # the EMA flavour with the warm-up bench/fleet_train measured (5 steps from 0.1 x the peak)
    rec = recommended_setup(cfg.runtime, None, cfg.lr, cfg.local_steps, {
        "averaging": "ema", "warmup_steps": 5, "warmup_start_factor": 0.1})
    if cfg.local_schedule == "wsd-peak":
        return rec.schedule, rec.config
    return rec.schedule, ManagerConfig.from_dict(nominal)


def _reply(message: Message, metrics: dict[str, float], arrays: ArrayRecord | None = None) -> Message:
    content = RecordDict({"metrics": MetricRecord(metrics)})
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content, reply_to=message)


def _error(message: Message, code: int, kind: str, info: dict[str, Any]) -> Message:
    return Message(Error(code, f"{kind}: {json.dumps(info, sort_keys=True)}"), reply_to=message)


@app.query("hello")
def hello(message: Message, context: Context) -> Message:
    """The phone's client id, so the server can sample phones reproducibly."""
    return _reply(message, {"partition-id": int(context.node_config["partition-id"])})


@app.query()
def query(message: Message, context: Context) -> Message:
    """The phone's state at the round's start and the steps its budget affords (no training)."""
    cfg, extra = _config(message)
    phone, state = _phone_at(context, cfg, int(extra["server-round"]))
    _save_state(context, state)
    _, verdict = round_plan(cfg, phone, state)
    limit = phone.policy.thermal_limit_c(phone.profile)
    return _reply(message, {
        "partition-id": phone.client_id, "level": state.level, "charging": int(state.charging),
        "temperature-c": state.temperature_c, "thermal-limit-c": limit,
        "ambient-guess-c": phone.profile.ambient_c, "floor": phone.policy.battery_floor,
        "planned-steps": verdict.steps})


def _why_not(phone: Phone, state: DeviceState, verdict: Any) -> str | None:
    """Why the phone must not start training now (None: it may)."""
    if verdict.steps > 0:
        return None
    return verdict.detail or verdict.limiting_factor


@app.train()
def train(message: Message, context: Context) -> Message:
    """One round of local training on this phone (see the module docstring)."""
    cfg, extra = _config(message)
    server_round = int(extra["server-round"])
    mode = str(extra.get("mode", "planned"))
    phone, state = _phone_at(context, cfg, server_round)
    deadline, verdict = round_plan(cfg, phone, state)
    base = {"partition-id": phone.client_id, "floor": phone.policy.battery_floor,
            "profile": phone.profile.name, "charging": int(state.charging)}
    reason = _why_not(phone, state, verdict)
    if reason is not None:
        _save_state(context, state)
        info = {**base, "reason": reason, "battery-start": state.level}
        if mode == "fixed":
            return _error(message, ERROR_DECLINED, "declined", info)
        return _reply(message, {"num-examples": 0, "declined": 1, "steps": 0, "energy-j": 0.0,
                                "partition-id": phone.client_id, "floor": phone.policy.battery_floor,
                                "battery-start": state.level, "battery-end": state.level,
                                "battery-min": state.level})

    rng = np.random.default_rng([cfg.seed, phone.client_id, server_round, 12])
    kill_at = int(rng.integers(0, cfg.local_steps)) if rng.random() < cfg.kill_prob else None
    bundle = context.node_config.get("bundle-dir", cfg.bundle_dir)
    runtime = open_runtime(cfg.runtime, str(bundle), expected_sha256=cfg.bundle_sha256 or None)
    start = arrays_to_numpy(message.content.array_records["arrays"])
    runtime.set_parameters(start)
    data = _user_data(phone.user_seed, cfg.n_train)
    device = SimulatedDevice(phone.profile, state, ambient_c=phone.ambient_c)
    events = phone.events_between(state.time_s, deadline)
    seed = int(rng.integers(0, 2**31))
    if mode == "fixed":
        result = train_fixed(runtime, device, (data.x, data.y), phone.policy, steps=cfg.local_steps,
                             lr=cfg.lr, batch_size=cfg.batch_size, seed=seed, events=events,
                             deadline_s=deadline, kill_at_step=kill_at)
    else:
        spec, manager_config = local_schedule(cfg)  # no EMA: the round uploads the raw weights
        manager = ScheduleManager(spec, phone.profile, phone.policy, manager_config, state=state)
        result = train_planned(runtime, manager, device, (data.x, data.y), batch_size=cfg.batch_size,
                               seed=seed, events=events, deadline_s=deadline, kill_at_step=kill_at)
    _save_state(context, device.state, rounds_trained=0 if result.killed else 1)
    return _result_reply(message, cfg, mode, base, result, runtime)


def _result_reply(message: Message, cfg: FleetConfig, mode: str, base: dict[str, Any],
                  result: LocalResult, runtime: Any) -> Message:
    metrics = {**{k: v for k, v in base.items() if k != "profile"}, **result.to_metrics()}
    if result.killed:
        return _error(message, ERROR_KILLED, "killed", {**metrics, "reason": result.stop_reason,
                                                        "profile": base["profile"]})
    params = runtime.parameters()
    weights = {k: params[k] for k in runtime.trainable_names}
    # fixed: Flower's convention, the size of the local training set; planned: FedAvg weighted by
    # the work actually done
    examples = cfg.n_train if mode == "fixed" else result.steps * cfg.batch_size
    metrics.update({"num-examples": examples, "declined": 0,
                    "stopped-by-budget": int(result.stop_reason not in ("done",))})
    if not all(math.isfinite(float(v)) for v in metrics.values()):
        metrics = {k: (v if math.isfinite(float(v)) else -1.0) for k, v in metrics.items()}
    return _reply(message, metrics, numpy_to_arrays(weights))
