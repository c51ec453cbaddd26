"""The battery-aware manager inside the trainers people already use.

- :mod:`mobile_lr.integrations.transformers`: a Hugging Face ``TrainerCallback``
  (``pip install 'mobile-lr[transformers]'``);
- :mod:`mobile_lr.integrations.lightning`: a PyTorch Lightning ``Callback``
  (``pip install 'mobile-lr[lightning]'``).

Each sets the learning rate the manager decides before every optimizer step, stops training
on the manager's ``Stop``, waits out a ``Pause`` the way the app would, and saves the
manager's state with the trainer's checkpoints. Nothing is imported here: each integration
imports its own framework.
"""
