"""The schedule manager on a simulated phone, the loop the Android worker runs (numpy only).

A mid-range phone at 32 % battery, unplugged, fine-tunes a small numpy least-squares model.
The manager plans the steps the battery and the temperature allow under policy.json (floor
30 %), re-plans the 300-step schedule of spec.json to that budget (about 87 steps here, so
the LR still anneals to its end), would pause to cool if the phone got too warm, and stops
at the floor. Run: python examples/simulated_phone.py
"""

from pathlib import Path

import numpy as np

from mobile_lr.budget import load_policy
from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import Pause, Run, ScheduleManager, Stop
from mobile_lr.schedules import load_spec

here = Path(__file__).parent
profile = load_profile("mid-range")
phone = SimulatedDevice(profile, DeviceState.initial(profile, 0.32), step_seconds=4.0)  # 4 s a step
manager = ScheduleManager(load_spec(here / "spec.json"), profile, load_policy(here / "policy.json"))
manager.update_device(phone.state)
manager.begin_window()                        # the OS started the worker: a new time window

rng = np.random.default_rng(0)
x = rng.normal(size=(512, 16))
y = x @ rng.normal(size=16) + 0.1 * rng.normal(size=512)
w = np.zeros(16)
pauses = 0
while True:
    manager.update_device(phone.state)        # what the phone reads: battery, charger, heat
    decision = manager.next()
    if isinstance(decision, Run):
        batch = rng.integers(0, len(x), 32)
        err = x[batch] @ w - y[batch]
        w -= decision.lr * x[batch].T @ err / len(batch)
        cost = phone.train_step()             # the step's time and energy on this phone
        manager.observe(loss=float(np.mean(err**2)), step_seconds=cost.seconds, energy_j=cost.energy_j)
    elif isinstance(decision, Pause):
        pauses += 1
        phone.idle(max(decision.resume_hint or 60.0, 1.0))   # rest as the worker would, then ask again
    else:
        assert isinstance(decision, Stop)
        break

print(f"stop: {decision.reason}  steps: {manager.step}  pauses: {pauses}")
print(f"battery {phone.state.level:.3f} (floor {manager.policy.battery_floor})  "
      f"temperature {phone.state.temperature_c:.1f} C  time {phone.state.time_s:.0f} s")
print("plan history (step, planned total):", manager.plan_history)
print(f"loss {float(np.mean((x @ w - y) ** 2)):.4f}")
