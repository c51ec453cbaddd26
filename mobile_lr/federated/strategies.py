"""Server strategies: Flower's FedAvg, with who trains and what counts made explicit.

All three subclass :class:`flwr.serverapp.strategy.FedAvg` and keep its
aggregation (``aggregate_arrayrecords``, weighted by ``num-examples``); they
differ in whom they ask and in what a client's weight means:

* :class:`FixedEpochFedAvg` (``fedavg-fixed``) — Flower's default: a uniform
  sample of ``fraction`` of the phones, ``local-epochs`` epochs each, weight =
  local data size. A phone whose OS kills the job (battery floor, heat, window,
  unplugged) fails the round: its work and the energy it spent are lost.
* :class:`StepsFedAvg` (``fedavg-steps``) — the same uniform sample, but phones
  run the schedule manager: each trains as many steps as its budget allows
  (re-planning its LR to anneal by then), declines when its policy forbids
  training, and is weighted by the local steps it actually ran
  (``num-examples = steps × batch``).
* :class:`BatteryAwareFedAvg` (``battery-aware``) — phones as in
  ``fedavg-steps``; selection asks ``overcommit ×`` as many phones as it needs
  for their state (a ``query`` message, no training) and takes the ones with the
  highest utility (below). Phones whose budget affords no step are never asked
  to train.

Battery-aware utility (in the spirit of Oort's system utility, docs/DEVICES.md §4.2,
with the battery and heat that Oort does not model)::

    U_i = s_i · b_i · h_i · (1 + sqrt(0.1 · ln r / (r - last_i)))
    s_i = planned_steps_i / local_steps         fraction of the round its budget affords
    b_i = 1 if charging else (level_i - floor_i) / (1 - floor_i)   battery headroom
    h_i = clip((T_limit - T_i) / (T_limit - T_amb), 0.05, 1)        thermal headroom

``T_amb`` is the profile's ambient (a phone has no ambient sensor). The last
factor is Oort's staleness bonus (``last_i`` the last round phone ``i`` trained,
0 if never): phones left out for long gain priority, so the same charging phones
are not picked every round (their users' data would dominate a non-IID fleet).

Sampling is seeded (``random.Random([seed, round])`` over client ids learnt once
with a ``query.hello`` message), so a run is reproducible; Flower's own
``sample_nodes`` uses the global ``random`` module and node ids that change from
run to run.

Each round leaves a row in :attr:`FleetStrategy.rows`: asked, trained,
declined, dropped (failed mid-round), steps, energy (all that the asked phones
spent, including dropped work), lost energy, the lowest battery seen and its
margin above the phone's floor.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import FedAvg

from mobile_lr.federated.fleet import FleetConfig

__all__ = ["BatteryAwareFedAvg", "FixedEpochFedAvg", "FleetStrategy", "StepsFedAvg", "make_strategy",
           "utility"]

HELLO_TIMEOUT_S = 600.0


def utility(reply: dict[str, float], local_steps: int, server_round: int, last_round: int) -> float:
    """The battery-aware utility of one phone's query reply (see the module docstring).

    >>> u = dict(level=0.9, charging=0, floor=0.2, **{"planned-steps": 49, "temperature-c": 30.0,
    ...          "thermal-limit-c": 44.0, "ambient-guess-c": 25.0})
    >>> round(utility(u, 49, 1, 0), 3)           # 7/8 battery headroom, 14/19 thermal headroom
    0.645
    >>> utility({**u, "planned-steps": 0}, 49, 1, 0)
    0.0
    >>> utility({**u, "charging": 1}, 49, 1, 0) > utility(u, 49, 1, 0)
    True
    """
    steps = float(reply["planned-steps"])
    if steps <= 0:
        return 0.0
    s = min(1.0, steps / local_steps)
    floor = float(reply["floor"])
    b = 1.0 if reply["charging"] else max(0.0, (float(reply["level"]) - floor) / (1.0 - floor))
    span = float(reply["thermal-limit-c"]) - float(reply["ambient-guess-c"])
    h = 1.0 if span <= 0 else (float(reply["thermal-limit-c"]) - float(reply["temperature-c"])) / span
    h = min(1.0, max(0.05, h))
    stale = math.sqrt(0.1 * math.log(server_round) / (server_round - last_round)) if server_round > 1 else 0.0
    return s * b * h * (1.0 + stale)


def _metrics(msg: Message) -> dict[str, float]:
    rec = msg.content.metric_records.get("metrics")
    return dict(rec) if rec is not None else {}


def _error_info(msg: Message) -> tuple[str, dict[str, Any]]:
    """(kind, info) of an error reply: ``killed``/``declined`` from our client, else ``error``."""
    reason = msg.error.reason or ""
    kind, _, rest = reason.partition(": ")
    if kind in ("killed", "declined"):
        try:
            return kind, json.loads(rest)
        except json.JSONDecodeError:
            pass
    return "error", {"reason": reason[:200]}


class FleetStrategy(FedAvg):
    """FedAvg over the simulated fleet; subclasses choose the phones and the client mode."""

    mode = "planned"
    name = "fleet"

    def __init__(self, cfg: FleetConfig) -> None:
        super().__init__(fraction_train=cfg.fraction, fraction_evaluate=0.0, min_train_nodes=1,
                         min_available_nodes=cfg.clients)
        self.cfg = cfg
        self.node_of: dict[int, int] = {}      # partition id -> node id
        self.last_trained: dict[int, int] = {}  # partition id -> last round it trained
        self.rows: list[dict[str, Any]] = []
        self._round_info: dict[str, Any] = {}
        self._t0 = time.perf_counter()

    # ---------------------------------------------------------------- selection
    def hello(self, grid: Grid) -> None:
        """Learn which node runs which phone (once)."""
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while len(nodes := sorted(grid.get_node_ids())) < self.cfg.clients:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(nodes)} of {self.cfg.clients} SuperNodes connected")
            time.sleep(1.0)
        msgs = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="query.hello")
                for n in nodes]
        for reply in grid.send_and_receive(msgs, timeout=HELLO_TIMEOUT_S):
            if not reply.has_error():
                self.node_of[int(_metrics(reply)["partition-id"])] = reply.metadata.src_node_id

    def _config(self, server_round: int) -> ConfigRecord:
        return ConfigRecord({**self.cfg.to_run_config(), "server-round": server_round, "mode": self.mode})

    def sample(self, server_round: int, k: int) -> list[int]:
        """``k`` client ids drawn uniformly with the run's seed."""
        ids = sorted(self.node_of)
        return sorted(random.Random(f"{self.cfg.seed}-{server_round}").sample(ids, min(k, len(ids))))

    def select(self, server_round: int, grid: Grid) -> list[int]:
        return self.sample(server_round, self.cfg.per_round)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        if not self.node_of:
            self.hello(grid)
        self._t0 = time.perf_counter()
        self._round_info = {"round": server_round, "queried": 0}
        chosen = self.select(server_round, grid)
        self._round_info["asked"] = len(chosen)
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: self._config(server_round)})
        return self._construct_messages(record, [self.node_of[c] for c in chosen], MessageType.TRAIN)

    # ---------------------------------------------------------------- aggregation
    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        trained, declined, dropped, errors = [], [], [], []
        for msg in replies:
            if msg.has_error():
                kind, info = _error_info(msg)
                (declined if kind == "declined" else dropped if kind == "killed" else errors).append(info)
                continue
            m = _metrics(msg)
            if m.get("declined") or not m.get("num-examples"):
                declined.append(m)
            else:
                trained.append((msg, m))
        arrays, metrics = (None, None)
        if trained:
            arrays, metrics = super().aggregate_train(server_round, [msg for msg, _ in trained])
        for _, m in trained:
            self.last_trained[int(m["partition-id"])] = server_round
        seen = [m for _, m in trained] + dropped
        margins = [float(m["battery-min"]) - float(m["floor"]) for m in seen if "battery-min" in m]
        lows = [float(m["battery-min"]) for m in seen if "battery-min" in m]
        energy_ok = sum(float(m["energy-j"]) for _, m in trained)
        energy_lost = sum(float(m.get("energy-j", 0.0)) for m in dropped)
        self.rows.append({
            **self._round_info,
            "trained": len(trained), "declined": len(declined), "dropped": len(dropped),
            "errors": len(errors),
            "steps": int(sum(m["steps"] for _, m in trained)),
            "steps_lost": int(sum(m.get("steps", 0) for m in dropped)),
            "energy_j": energy_ok + energy_lost, "energy_lost_j": energy_lost,
            "battery_min": min(lows) if lows else None,
            "floor_margin_min": min(margins) if margins else None,
            "stopped_by_budget": int(sum(m.get("stopped-by-budget", 0) for _, m in trained)),
            "drop_reasons": sorted(str(m.get("reason")) for m in dropped),
            "decline_reasons": sorted(str(m.get("reason", "policy")) for m in declined),
            "wall_s": time.perf_counter() - self._t0,
        })
        return arrays, metrics


class StepsFedAvg(FleetStrategy):
    """Uniform sample; planned phones; FedAvg weighted by the local steps actually run."""

    name = "fedavg-steps"


class FixedEpochFedAvg(FleetStrategy):
    """Flower's default FedAvg: uniform sample, fixed local epochs, failures dropped."""

    name = "fedavg-fixed"
    mode = "fixed"


class BatteryAwareFedAvg(FleetStrategy):
    """Query ``overcommit ×`` the phones needed, train the ones with the highest utility."""

    name = "battery-aware"

    def select(self, server_round: int, grid: Grid) -> list[int]:
        k = self.cfg.per_round
        pool = self.sample(server_round, math.ceil(self.cfg.overcommit * k))
        msgs = [Message(RecordDict({"config": self._config(server_round)}), dst_node_id=self.node_of[c],
                        message_type=MessageType.QUERY) for c in pool]
        scored = []
        for reply in grid.send_and_receive(msgs, timeout=HELLO_TIMEOUT_S):
            if reply.has_error():
                continue
            m = _metrics(reply)
            cid = int(m["partition-id"])
            u = utility(m, self.cfg.local_steps, server_round, self.last_trained.get(cid, 0))
            if u > 0.0:
                scored.append((-u, cid))
        self._round_info["queried"] = len(pool)
        self._round_info["eligible"] = len(scored)
        return sorted(cid for _, cid in sorted(scored)[:k])


def make_strategy(cfg: FleetConfig) -> FleetStrategy:
    return {"battery-aware": BatteryAwareFedAvg, "fedavg-steps": StepsFedAvg,
            "fedavg-fixed": FixedEpochFedAvg}[cfg.strategy](cfg)
