"""The battery-aware manager in a Hugging Face ``Trainer``: a ``TrainerCallback``.

::

    manager = ScheduleManager(spec, "mid-range", policy, config)
    callback = ManagerCallback(manager, SimulatedPhone(SimulatedDevice(profile)))   # or your Phone
    trainer = Trainer(model, args, train_dataset=ds, callbacks=[callback])
    trainer.train()                      # trainer.train(resume_from_checkpoint=True) continues it

The hooks used (``transformers.Trainer``'s inner loop, 5.x): the manager decides the next
step's LR at ``on_train_begin`` and after every optimizer step (``on_step_end``); the LR goes
into every param group at ``on_pre_optimizer_step``, just before ``optimizer.step()``, so it
wins over whatever ``lr_scheduler_type`` the arguments chose (``"constant"`` keeps the
Trainer's logged ``learning_rate`` meaningful: the logs show the scheduler's, not the
manager's). A ``Stop``, or a pause too long to wait out, sets ``control.should_training_stop``
and ``control.should_save``; ``on_save`` writes the driver's state (the manager's, plain JSON)
as ``mobile_lr_manager.json`` inside the checkpoint folder the Trainer just wrote, and a run
resumed from that checkpoint reads it back in ``on_train_begin``.

The Trainer checks ``should_training_stop`` only after a step: when the manager says stop
before the very first step of a ``train()`` call, that one step runs at LR 0 (no update) and
the manager does not count it. Param groups keep their LR ratio to the first group.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mobile_lr.extras import optional_imports
from mobile_lr.integrations.driver import ManagerDriver, Phone
from mobile_lr.manager import ScheduleManager
from mobile_lr.runtime.checkpoint import atomic_write

with optional_imports(__name__):
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

__all__ = ["STATE_FILE", "ManagerCallback"]

STATE_FILE = "mobile_lr_manager.json"


class ManagerCallback(TrainerCallback):
    """Drive a ``transformers.Trainer`` with a :class:`ScheduleManager`; see the module doc."""

    def __init__(self, manager: ScheduleManager, phone: Phone, *, max_wait_s: float = 600.0) -> None:
        self.driver = ManagerDriver(manager, phone, max_wait_s=max_wait_s)

    @property
    def manager(self) -> ScheduleManager:
        return self.driver.manager

    def _decide(self, control: Any) -> None:
        """The next step's LR; once the run has ended, stop and save (the flags are per step)."""
        if self.driver.stop_reason is None:
            self.driver.decide()
        if self.driver.stop_reason is not None:
            control.should_training_stop = True
            control.should_save = True

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step > 0:
            path = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}", STATE_FILE)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    self.driver.load_state_dict(json.load(fh))
            if self.driver.trainer_steps != state.global_step:
                raise ValueError(f"{path}: the manager has counted {self.driver.trainer_steps} steps, the "
                                 f"Trainer {state.global_step}: resume from a checkpoint this callback saved")
        self._decide(control)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.step_started()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                              **kwargs: Any) -> None:
        self.driver.apply_lr(optimizer)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.driver.step_done()
        self._decide(control)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(folder):
            text = json.dumps(self.driver.state_dict(), indent=1).encode("utf-8")
            atomic_write(os.path.join(folder, STATE_FILE), lambda f: f.write(text))
