"""Training checkpoints: one file, written atomically, never a pickle.

A phone can lose power or have its worker killed at any instant, including in
the middle of writing a checkpoint. :func:`~mobile_lr.atomic_files.atomic_write`
therefore writes a temporary file in the *same* directory, flushes and ``fsync``s
it, renames it over the old checkpoint with ``os.replace`` (atomic on POSIX) and
``fsync``s the directory so the rename itself is durable. At every instant the
path holds either the complete previous checkpoint or the complete new one.

A checkpoint is a NumPy ``.npz`` archive: named float/int arrays plus one
``__meta__`` array holding UTF-8 JSON (format, runtime kind, the bundle
identity, step count, EMA settings, and any JSON the caller adds such as the
schedule manager's state, so that weights and manager never disagree after a
crash). It is read with ``allow_pickle=False``: loading a checkpoint cannot run
code. ``torch.save``/``torch.load`` are not used anywhere in the runtimes.

>>> import tempfile, pathlib, numpy as np
>>> p = pathlib.Path(tempfile.mkdtemp()) / "ckpt.npz"
>>> write_checkpoint(p, {"runtime": "torch", "bundle": "b1", "step": 3}, {"w": np.ones(2, np.float32)})
>>> meta, arrays = read_checkpoint(p)
>>> meta["step"], meta["format"], arrays["w"].tolist()
(3, 'mobile-lr.checkpoint/1', [1.0, 1.0])
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.atomic_files import atomic_write
from mobile_lr.validation import ValidationError, check_zip_members, parse_json

__all__ = ["CHECKPOINT_FORMAT", "MAX_CHECKPOINT_BYTES", "CheckpointError", "atomic_write", "read_checkpoint",
           "write_checkpoint"]

CHECKPOINT_FORMAT = "mobile-lr.checkpoint/1"
MAX_CHECKPOINT_BYTES = 4 << 30  # without a runtime's own bound: 4 GiB
_META = "__meta__"
_MEMBER = re.compile(r"[A-Za-z0-9_./-]{1,512}\.npy")


class CheckpointError(ValidationError):
    """A checkpoint cannot be used (unreadable, wrong format, or from another bundle/runtime)."""


def write_checkpoint(path: str | os.PathLike[str], meta: Mapping[str, Any],
                     arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write ``meta`` (JSON-able) and named arrays as one checkpoint file."""
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved")
    full = {"format": CHECKPOINT_FORMAT, **meta}
    blob = np.frombuffer(json.dumps(full, allow_nan=True).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{_META: blob}, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))


def read_checkpoint(path: str | os.PathLike[str],
                    max_bytes: int = MAX_CHECKPOINT_BYTES) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a checkpoint: ``(meta, arrays)``. Raises :class:`CheckpointError` if it is not one.

    ``max_bytes`` bounds the file and the arrays it inflates to (a runtime passes a bound
    derived from its own state's size)."""
    path = Path(path)
    name = path.name
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(name, "no such checkpoint") from None
    except OSError as err:
        raise CheckpointError(name, f"cannot read ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(name, "not a regular file")
    if st.st_size > max_bytes:
        raise CheckpointError(name, f"{st.st_size:,} bytes, over the bound of {max_bytes:,} bytes")
    try:
        check_zip_members(path, name, max_bytes, _MEMBER)
    except ValidationError as err:
        raise CheckpointError(name, f"not a readable checkpoint ({err.problem})", err.allowed) from None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(name, f"not a readable checkpoint ({err})") from None
    if _META not in arrays:
        raise CheckpointError(name, "not a mobile-lr checkpoint (no metadata)")
    try:
        meta = parse_json(arrays.pop(_META).tobytes(), f"{name}: metadata")
    except ValidationError as err:
        raise CheckpointError(err.field, err.problem, err.allowed) from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{name}: format", f"unknown format {meta.get('format')!r}"
                              if isinstance(meta, dict) else "metadata is not an object", CHECKPOINT_FORMAT)
    return meta, arrays
