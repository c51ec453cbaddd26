"""Phones on the desktop: the real runtimes driven by the schedule manager on a simulated device.

* :mod:`mobile_lr.sim.scenario` — named day situations (data files): start state,
  the user's policy, OS windows, charger and ambient events, workload.
* :mod:`mobile_lr.sim.session` — one training session: a runtime, a manager and a
  :class:`mobile_lr.device.SimulatedDevice` wired together, step by step.
* :mod:`mobile_lr.sim.setups` — the training set-ups compared (the battery-aware
  manager, a naive cosine, a constant LR, ...), each a schedule spec + manager config.
* :mod:`mobile_lr.sim.simulate` — set-ups x scenario on one bundle, with a run directory.
* :mod:`mobile_lr.sim.budgets` — many devices' step budgets at once, vectorised (no training).
"""
