"""Adapters that let a mobile-lr schedule drive the optimizers people already use.

- :class:`mobile_lr.adapters.torch_lr.SpecLR`: a ``torch.optim.lr_scheduler.LRScheduler``.
- :class:`mobile_lr.adapters.ort_lr.OrtScheduleDriver`: sets an ONNX Runtime
  Training ``Optimizer``'s learning rate every step.

Each is imported from its own module, so using one never imports the other framework.
"""
