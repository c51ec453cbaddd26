"""mobile-lr: battery-aware learning-rate schedules and on-device fine-tuning for phones.

Layers, imported one way only (each may use the ones above it, never below):

- ``mobile_lr.schedules``: pure schedule math and the JSON schedule spec;
- ``mobile_lr.device`` and ``mobile_lr.budget``: phone model and step planner;
- ``mobile_lr.manager``: the schedule manager a training loop talks to;
- ``mobile_lr.runtime``: ONNX Runtime Training, ExecuTorch and PyTorch runtimes;
- ``mobile_lr.sim`` and ``mobile_lr.report``: desktop phone simulation and reports;
- ``mobile_lr.cli``: the ``mobile-lr`` command.
"""

__version__ = "0.1.0"
