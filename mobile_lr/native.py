"""What the native engines (ONNX Runtime, ExecuTorch) write to stderr, kept out of the user's
terminal unless something fails.

ORT's gradient builder logs every graph pass at INFO level while artifacts are generated, and
ExecuTorch's runtime reports its CPU probe (``cpuinfo_utils.cpp``: files it cannot open on an
x86 machine) when a program loads: neither is for the user. On an exception the captured text
is replayed, so that no error is lost. Used by the exporter and by the runtimes.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["NativeLog", "quiet_native_stderr"]


class NativeLog:
    """Text native code wrote to fd 2 inside :func:`quiet_native_stderr` (filled when the block ends)."""

    text = ""


@contextlib.contextmanager
def quiet_native_stderr(replay_on_error: bool = True) -> Iterator[NativeLog]:
    """Capture what native code writes to stderr (ORT's gradient builder logs every graph pass at INFO).

    Both routes are captured: fd 2 (ORT) and Python's ``sys.stderr`` (ExecuTorch's pybindings
    forward their C++ log there). On an exception the captured tail, without ORT's INFO lines, is
    replayed to stderr (unless ``replay_on_error`` is false) so that no error is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    log = NativeLog()
    python_side = io.StringIO()
    failed = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_side):
                yield log
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace") + python_side.getvalue()
            # ORT's INFO lines (each graph pass: "[I:onnxruntime:...]") are not the error: only
            # the rest is replayed
            kept = "\n".join(line for line in log.text.splitlines()
                              if "[I:onnxruntime:" not in line and line.strip())
            if failed and replay_on_error and kept:
                print(kept[-4000:], file=sys.stderr)
