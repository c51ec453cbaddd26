"""The export pipeline: a PyTorch model recipe in, a verified training bundle out.

- :mod:`mobile_lr.export.onnx_artifacts`: ONNX Runtime Training artifacts and the ONNX inference model;
- :mod:`mobile_lr.export.executorch_program`: the ExecuTorch joint forward-backward program;
- :mod:`mobile_lr.export.pipeline`: :func:`export_bundle`, which writes the whole bundle and its manifest.

The bundle format and its verification live in :mod:`mobile_lr.bundle` (no
torch/onnx import there, so a phone-side loader can use it alone).
"""

from mobile_lr.export.pipeline import BACKENDS, DEFAULT_SCHEDULE, count_flops, export_bundle, versions

__all__ = ["BACKENDS", "DEFAULT_SCHEDULE", "count_flops", "export_bundle", "versions"]
