"""The battery-aware manager in a PyTorch Lightning ``Trainer``: a ``Callback``.

::

    manager = ScheduleManager(spec, "mid-range", policy, config)
    callback = ManagerCallback(manager, SimulatedPhone(SimulatedDevice(profile)))   # or your Phone
    trainer = pl.Trainer(max_epochs=5, callbacks=[callback, ModelCheckpoint(save_last=True)])
    trainer.fit(module, loader)          # trainer.fit(module, loader, ckpt_path="last") continues it

The hooks used (Lightning 2.x): the manager decides the next step's LR at ``on_train_start``
and after every optimizer step (``on_train_batch_end``); the LR goes into every param group
at ``on_before_optimizer_step``, just before ``optimizer.step()``, so it wins over a scheduler
returned by ``configure_optimizers``. A ``Stop``, or a pause too long to wait out, sets
``trainer.should_stop``, which Lightning checks before the next batch. The driver's state (the
manager's, plain JSON) is this callback's ``state_dict``: Lightning writes it into every
checkpoint and gives it back on ``fit(..., ckpt_path=...)``. Param groups keep their LR ratio
to the first group.

``lightning.pytorch`` is used when the ``lightning`` package is installed, else
``pytorch_lightning`` (the ``[lightning]`` extra): a callback must come from the same package
as the ``Trainer`` it is given to.
"""

from __future__ import annotations

from typing import Any

from mobile_lr.extras import optional_imports
from mobile_lr.integrations.driver import ManagerDriver, Phone
from mobile_lr.manager import ScheduleManager

with optional_imports(__name__):
    try:
        import lightning.pytorch as pl
    except ModuleNotFoundError:
        import pytorch_lightning as pl

__all__ = ["ManagerCallback"]


class ManagerCallback(pl.Callback):
    """Drive a Lightning ``Trainer`` with a :class:`ScheduleManager`; see the module doc."""

    def __init__(self, manager: ScheduleManager, phone: Phone, *, max_wait_s: float = 600.0) -> None:
        self.driver = ManagerDriver(manager, phone, max_wait_s=max_wait_s)
        self._stepped = False

    @property
    def manager(self) -> ScheduleManager:
        return self.driver.manager

    def _decide(self, trainer: Any) -> None:
        if self.driver.decide() is None:
            trainer.should_stop = True

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.driver.trainer_steps != trainer.global_step:
            raise ValueError(f"the manager has counted {self.driver.trainer_steps} steps, the Trainer "
                             f"{trainer.global_step}: "
                             "resume from a checkpoint this callback's state was saved in")
        self._decide(trainer)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if not self._stepped:
            self.driver.step_started()

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.driver.apply_lr(optimizer)
        self._stepped = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._stepped:
            return  # gradient accumulation: the optimizer has not stepped yet
        self._stepped = False
        self.driver.step_done()
        if not trainer.should_stop:
            self._decide(trainer)

    def state_dict(self) -> dict[str, Any]:
        return self.driver.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.driver.load_state_dict(state_dict)
