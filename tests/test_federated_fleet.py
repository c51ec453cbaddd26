"""Federated fleet without Ray: phones, their days, the ClientApp called with real Flower messages,
the strategies' aggregation, the runtime's set_parameters, the Flower app and the CLI.

The ClientApp here is the very object the simulation and deployment engines call (Flower's
``ClientApp.__call__(message, context)``), on the ORT runtime and a real exported bundle.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from mobile_lr.budget import effective_floor
from mobile_lr.federated.client_app import ERROR_KILLED, app, arrays_to_numpy, numpy_to_arrays, round_plan
from mobile_lr.federated.fleet import FleetConfig, draw_phone, eval_user_seeds, phone_between
from mobile_lr.federated.strategies import StepsFedAvg
from mobile_lr.runtime import open_runtime
from mobile_lr.validation import ValidationError


@pytest.fixture(scope="module")
def identity():
    """Flower's process identity, which building a Message needs outside a run (the engines set it)."""
    saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


@pytest.fixture(scope="module")
def cfg(mlp_sgd_bundle):
    from mobile_lr.bundle import load_bundle

    return FleetConfig(clients=40, num_rounds=3, fraction=0.25, bundle_dir=str(mlp_sgd_bundle),
                       bundle_sha256=load_bundle(mlp_sgd_bundle).sha256, kill_prob=0.0)


@pytest.fixture(scope="module")
def global_weights(cfg):
    rt = open_runtime("ort", cfg.bundle_dir)
    params = rt.parameters()
    return {k: params[k] for k in rt.trainable_names}


def _context(pid: int, n: int) -> Context:
    return Context(run_id=1, node_id=pid + 1, node_config={"partition-id": pid, "num-partitions": n},
                   state=RecordDict(), run_config={})


def _train(cfg: FleetConfig, ctx: Context, weights, server_round: int, mode: str = "planned") -> Message:
    record = RecordDict({"arrays": numpy_to_arrays(weights),
                         "config": ConfigRecord({**cfg.to_run_config(), "server-round": server_round,
                                                 "mode": mode})})
    msg = Message(record, dst_node_id=ctx.node_id, message_type=MessageType.TRAIN)
    return app(msg, ctx)


def _set_phone(ctx: Context, state) -> None:
    ctx.state["phone"] = ConfigRecord({
        "level": state.level, "charging": state.charging, "temperature-c": state.temperature_c,
        "thermal-status": int(state.thermal_status), "time-s": state.time_s, "rounds-trained": 0})


def _trains(cfg: FleetConfig, phone) -> bool:
    """The planner affords the phone a whole round at the start of round 1."""
    state = phone_between(phone, phone.start, cfg.round_start_s(1))
    return round_plan(cfg, phone, state)[1].steps >= cfg.local_steps


def _find(cfg: FleetConfig, pred) -> int:
    for pid in range(cfg.clients):
        if pred(draw_phone(cfg, pid)):
            return pid
    raise AssertionError("no such phone in the fleet")


# ------------------------------------------------------------------------------ the fleet

def test_phones_are_drawn_from_seed_and_id_and_vary(cfg):
    assert draw_phone(cfg, 3) == draw_phone(cfg, 3)
    phones = [draw_phone(cfg, i) for i in range(cfg.clients)]
    assert {p.profile.name for p in phones} == {"low-end", "mid-range", "flagship"}
    assert len({p.user_seed for p in phones}) == cfg.clients          # every user writes differently
    assert not set(eval_user_seeds(cfg)) & {p.user_seed for p in phones}  # evaluation users are new
    assert {p.policy.charging_only for p in phones} == {True, False}
    assert {p.policy.battery_floor for p in phones} == {0.2, 0.3}
    # the local step costs step_factor x the built-in profile's (a MobileNetV2-class step)
    from mobile_lr.device import load_profile

    p = phones[0]
    assert p.profile.step_seconds == pytest.approx(500 * load_profile(p.profile.name).step_seconds)
    other = dataclasses.replace(cfg, seed=1)
    assert [draw_phone(other, i).user_seed for i in range(5)] != [x.user_seed for x in phones[:5]]


def test_a_phone_drains_at_eafl_usage_rate_and_charges_when_plugged(cfg):
    t0 = cfg.start_hour * 3600
    pid = _find(cfg, lambda p: p.charge_intervals[0][0] > t0 + 7200
                and not p.charging_at(t0) and not p.charging_at(t0 + 3600))
    phone = draw_phone(cfg, pid)
    start = phone.start
    after = phone_between(phone, start, start.time_s + 3600.0)
    # EAFL's usage_param: 5 % of the battery per hour unplugged (docs/DEVICES.md §4.3); the phone's
    # idle power is inside those 5 %
    assert start.level - after.level == pytest.approx(0.05, rel=1e-6)
    plug = phone.charge_intervals[0][0]
    mid = phone_between(phone, start, plug + 1800.0)
    assert mid.charging
    assert mid.level > phone_between(phone, start, plug).level
    # the same day, lived in two pieces or one, ends in the same state
    two = phone_between(phone, phone_between(phone, start, plug - 10.0), plug + 1800.0)
    assert two.level == pytest.approx(mid.level, abs=1e-9)


def test_run_config_round_trip_and_refusals(cfg):
    assert FleetConfig.from_run_config(cfg.to_run_config()) == cfg
    with pytest.raises(ValidationError, match="no-such-key"):
        FleetConfig.from_run_config({"no-such-key": 1})
    with pytest.raises(ValidationError, match="strategy"):
        FleetConfig(strategy="fedprox")
    with pytest.raises(ValidationError, match="fraction"):
        FleetConfig(fraction=0.0)
    with pytest.raises(ValidationError, match="profile-mix"):
        FleetConfig(profile_mix="tablet:1")
    assert cfg.local_steps == 7 * 7  # 7 epochs of 200 samples in batches of 32


# ------------------------------------------------------------------------------ the ClientApp

def test_a_phone_whose_policy_forbids_training_declines(cfg, identity, global_weights):
    pid = _find(cfg, lambda p: p.policy.charging_only and not p.charging_at(cfg.round_start_s(1)))
    reply = _train(cfg, _context(pid, cfg.clients), global_weights, 1)
    assert not reply.has_error()
    m = dict(reply.content.metric_records["metrics"])
    assert m["declined"] == 1 and m["num-examples"] == 0 and m["energy-j"] == 0.0
    assert "arrays" not in reply.content.array_records
    # Flower's default client cannot decline: the round fails for it
    fixed = _train(cfg, _context(pid, cfg.clients), global_weights, 1, mode="fixed")
    assert fixed.has_error() and fixed.error.reason.startswith("declined: ")


def test_near_its_floor_the_planned_phone_stops_above_it_and_fixed_epochs_cross_it(cfg, identity,
                                                                                global_weights):
    """A low-end phone 1.5 % above its floor (about 35 of its 49 steps; the manager's gate is
    pessimistic until it has measured 3 steps): the manager trains the steps that fit and keeps
    them; the fixed-epoch client runs until the watchdog kills it below the floor, its work lost."""
    pid = _find(cfg, lambda p: p.profile.name == "low-end" and not p.policy.charging_only
                and not p.charging_at(cfg.round_start_s(1)))
    phone = draw_phone(cfg, pid)
    t = cfg.round_start_s(1)
    floor = effective_floor(phone.profile, phone.policy, False)
    state = dataclasses.replace(phone_between(phone, phone.start, t), level=floor + 0.015)

    ctx = _context(pid, cfg.clients)
    _set_phone(ctx, state)
    reply = _train(cfg, ctx, global_weights, 1)
    m = dict(reply.content.metric_records["metrics"])
    assert 0 < m["steps"] < cfg.local_steps and m["stopped-by-budget"] == 1
    assert m["battery-min"] >= floor and m["battery-end"] >= floor
    assert m["num-examples"] == m["steps"] * cfg.batch_size
    trained = arrays_to_numpy(reply.content.array_records["arrays"])
    assert any(not np.array_equal(trained[k], global_weights[k]) for k in trained)

    ctx = _context(pid, cfg.clients)
    _set_phone(ctx, state)
    fixed = _train(cfg, ctx, global_weights, 1, mode="fixed")
    assert fixed.has_error()
    info = json.loads(fixed.error.reason.split(": ", 1)[1])
    assert info["reason"] == "battery" and info["battery-min"] < floor
    assert info["steps"] > m["steps"]  # it spent more than the planned phone and kept nothing


def test_a_killed_phone_loses_that_round_only(cfg, identity, global_weights):
    """The app is killed mid-round: the reply is a failure carrying what it spent, the phone's
    battery keeps the cost, and the next round trains from the server's model as usual."""
    pid = _find(cfg, lambda p: _trains(cfg, p))
    ctx = _context(pid, cfg.clients)
    killed = _train(dataclasses.replace(cfg, kill_prob=1.0), ctx, global_weights, 1)
    assert killed.has_error() and killed.error.code == ERROR_KILLED
    info = json.loads(killed.error.reason.split(": ", 1)[1])
    assert info["reason"] == "killed" and info["energy-j"] > 0
    rec = ctx.state.config_records["phone"]
    assert rec["level"] == pytest.approx(info["battery-end"]) and rec["rounds-trained"] == 0
    assert rec["time-s"] > cfg.round_start_s(1)

    saved = dict(ctx.state.config_records["phone"])
    ok = _train(cfg, ctx, global_weights, 2)
    m = dict(ok.content.metric_records["metrics"])
    assert m["steps"] > 0 and m["battery-start"] <= info["battery-end"] + 1e-12
    assert ctx.state.config_records["phone"]["rounds-trained"] == 1
    # a phone in the same state, never killed, trains to the same weights from the same model:
    # the kill left nothing behind but the battery it spent
    twin = _context(pid, cfg.clients)
    twin.state["phone"] = ConfigRecord(saved)
    again = _train(cfg, twin, global_weights, 2)
    a, b = (arrays_to_numpy(r.content.array_records["arrays"]) for r in (ok, again))
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ strategies

def test_fedavg_weights_by_steps_run_and_ignores_failures(cfg, identity, global_weights):
    """Aggregation of real replies: the steps-weighted mean of the phones that finished; a
    declined phone and a killed one add nothing (Flower's aggregate_arrayrecords does the sum)."""
    replies, expect = [], []
    ids = [i for i in range(cfg.clients) if _trains(cfg, draw_phone(cfg, i))][:3]
    assert len(ids) == 3
    for i in ids:
        r = _train(cfg, _context(i, cfg.clients), global_weights, 1)
        m = dict(r.content.metric_records["metrics"])
        if m["num-examples"]:
            expect.append((arrays_to_numpy(r.content.array_records["arrays"]), m["steps"]))
        replies.append(r)
    killed_id = ids[0]
    replies.append(_train(dataclasses.replace(cfg, kill_prob=1.0), _context(killed_id, cfg.clients),
                          global_weights, 1))
    decl = _find(cfg, lambda p: p.policy.charging_only and not p.charging_at(cfg.round_start_s(1)))
    replies.append(_train(cfg, _context(decl, cfg.clients), global_weights, 1))
    strategy = StepsFedAvg(cfg)
    arrays, _ = strategy.aggregate_train(1, replies)
    got = arrays_to_numpy(arrays)
    total = sum(s for _, s in expect)
    for k in got:
        want = sum(w[k] * s for w, s in expect) / total
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-7)
    row = strategy.rows[-1]
    assert (row["trained"], row["dropped"], row["declined"]) == (len(expect), 1, 1)
    assert row["energy_lost_j"] > 0 and row["floor_margin_min"] >= 0.0


# ------------------------------------------------------------------------------ runtime, app, CLI

def test_set_parameters_on_ort_matches_torch(mlp_sgd_bundle, user_data):
    """ORT writes its CheckpointState buffers: evaluation and the next step see the new weights
    exactly as PyTorch eager does (same bundle, same batch)."""
    ort, ref = open_runtime("ort", mlp_sgd_bundle), open_runtime("torch", mlp_sgd_bundle)
    rng = np.random.default_rng(0)
    new = {k: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32)
           for k, v in ref.parameters().items() if k in ref.trainable_names}
    for rt in (ort, ref):
        rt.set_parameters(new)
    train, test = user_data
    assert ort.evaluate(test.x, test.y)["loss"] == pytest.approx(ref.evaluate(test.x, test.y)["loss"],
                                                                 rel=1e-5)
    assert ort.step(train.x[:32], train.y[:32], 0.1) == pytest.approx(
        ref.step(train.x[:32], train.y[:32], 0.1), rel=1e-5)
    for k in new:
        np.testing.assert_allclose(ort.parameters()[k], ref.parameters()[k], atol=1e-6)
    with pytest.raises(ValidationError, match="missing"):
        ort.set_parameters({k: v for k, v in new.items() if k != "fc2.bias"})
    with pytest.raises(ValidationError, match="shape"):
        ort.set_parameters({**new, "fc2.bias": np.zeros(3, np.float32)})


def test_flower_app_for_the_deployment_engine_is_valid(cfg, tmp_path):
    """The app directory `flwr run` takes: Flower's own validator, with the components imported."""
    import tomllib
    from flwr.common.config import validate_config

    from mobile_lr.federated.run import write_flower_app

    app_dir = write_flower_app(cfg, tmp_path)
    conf = tomllib.loads((app_dir / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(conf, check_module=True, project_dir=app_dir)
    assert ok, errors
    assert FleetConfig.from_run_config(conf["tool"]["flwr"]["app"]["config"]) == cfg


def test_cli_refuses_bad_settings_with_one_line(capsys):
    from mobile_lr.cli import main

    assert main(["fleet-train", "--clients", "10", "--rounds", "2", "--fraction", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fraction" in err[0]


def test_cli_deployment_engine_writes_the_flower_app(tmp_path, capsys):
    """--engine deployment exports the bundle and writes the app `flwr run` submits; it runs nothing."""
    from mobile_lr.cli import main

    out = tmp_path / "deploy"
    assert main(["fleet-train", "--clients", "2", "--rounds", "2", "--fraction", "1", "--engine",
                 "deployment", "--seed", "1", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["engine"] == "deployment" and (out / "flower-app" / "pyproject.toml").is_file()
    assert (out / "bundle" / "manifest.json").is_file()
    assert info["config"]["clients"] == 2 and info["config"]["seed"] == 1
    assert any("partition-id=1 num-partitions=2" in c for c in info["commands"])
    assert not (out / "run.json").exists()
