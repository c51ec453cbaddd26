"""The battery-aware manager inside the trainers people already use.

- :mod:`mobile_lr.integrations.transformers`: a Hugging Face ``TrainerCallback``
  (``pip install 'mobile-lr[transformers]'``);
- :mod:`mobile_lr.integrations.lightning`: a PyTorch Lightning ``Callback``
  (``pip install 'mobile-lr[lightning]'``);
- :mod:`mobile_lr.integrations.keras`: a schedule spec as a Keras 3 ``LearningRateSchedule``
  (``pip install 'mobile-lr[keras]'``; the schedule only, no manager).

The two callbacks set the learning rate the manager decides before every optimizer step,
stop training on the manager's ``Stop``, wait out a ``Pause`` the way the app would, and
save the manager's state with the trainer's checkpoints (the shared part is
:mod:`mobile_lr.integrations.driver`). Nothing is imported here: each integration imports
its own framework.
"""
