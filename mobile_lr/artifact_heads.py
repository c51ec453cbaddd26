"""What a bundle's binary artifacts must begin with, read without their engines (standard library only).

The manifest's hashes prove only that a file holds the bytes listed, and whoever can write the
bundle can re-hash it: an empty or foreign ``checkpoint`` or ``.pte`` then verified, and reached
ONNX Runtime's or ExecuTorch's native loader. :func:`head_problem` checks that each such file is
what its name claims from its first :data:`HEAD_BYTES` bytes and its size, so ``verify`` and
:func:`mobile_lr.bundle.load_bundle` refuse it naming the file (the ONNX files are checked on the
protobuf wire, :func:`mobile_lr.onnx_wire.model_problem`).

The ORT training checkpoint and the ExecuTorch files are flatbuffers: a little-endian uint32
offset of the root table, then the schema's 4-byte file identifier (``ODTC`` in onnxruntime's
``ort_training_checkpoint.fbs``, ``ET12`` in ExecuTorch's ``program.fbs``, ``FT01`` in its
``flat_tensor.fbs``). ExecuTorch writes a header of its own right after the identifier: ``eh00``
in a ``.pte`` (header length, program size, segment base offset and, from a length of 32,
segment data size: ``exir/_serialize/_program.py``) and ``FH01`` in a ``.ptd`` (length, flatbuffer
offset and size, segment base offset and data size: ``flat_tensor/serialize/serialize.py``); each
region they name must lie inside the file. What lies deeper is the engine's to judge: a file that
passes here and still does not load is a ``BundleError`` when a runtime opens it
(:func:`mobile_lr.runtime.base.engine_loads`). Nothing here runs or imports an engine.
"""

from __future__ import annotations

__all__ = ["HEAD_BYTES", "head_problem"]

HEAD_BYTES = 64  # every check below reads within this much of the file's start
_ROOT_MIN = 8    # the root table follows the offset and the identifier

# name (or extension) -> (what it is, flatbuffer file identifier, ExecuTorch header magic or None,
# the header is required)
_FORMATS: dict[str, tuple[str, str, str | None, bool]] = {
    "checkpoint": ("an ONNX Runtime training checkpoint", "ODTC", None, False),
    ".pte": ("an ExecuTorch program", "ET12", "eh00", False),
    ".ptd": ("ExecuTorch tensor data", "FT01", "FH01", True),
}


def _u(head: bytes, at: int, width: int) -> int:
    return int.from_bytes(head[at:at + width], "little")


def _pte_header(head: bytes, size: int) -> tuple[int, str | None]:
    """The program's end and what is wrong with its ``eh00`` header (offsets from byte 8)."""
    length, program = _u(head, 12, 4), _u(head, 16, 8)
    base = _u(head, 24, 8)
    data = _u(head, 32, 8) if length >= 32 else 0
    if length < 24:
        return size, f"extended header length {length} < 24"
    if program > size:
        return size, f"program size {program} is beyond the file's {size} bytes"
    if (base and not program <= base <= size) or base + data > size:
        return size, f"segments at {base} + {data} bytes lie outside the program's {size}-byte file"
    return program, None


def _ptd_header(head: bytes, size: int) -> tuple[int, str | None]:
    """The flatbuffer's end and what is wrong with a ``.ptd``'s ``FH01`` header."""
    length, offset, fb_size = _u(head, 12, 4), _u(head, 16, 8), _u(head, 24, 8)
    base, data = _u(head, 32, 8), _u(head, 40, 8)
    if length < 40:
        return size, f"tensor data header length {length} < 40"
    if offset + fb_size > size or base + data > size:
        return size, f"regions ({offset} + {fb_size}, {base} + {data} bytes) lie outside the {size}-byte file"
    return offset + fb_size, None


_HEADERS = {"eh00": _pte_header, "FH01": _ptd_header}


def head_problem(name: str, head: bytes, size: int) -> str | None:
    """What keeps the file ``name`` of ``size`` bytes, beginning with ``head`` (at least its first
    :data:`HEAD_BYTES`, or all of it), from being the flatbuffer its name claims; ``None`` when it
    is one (or when the name claims no flatbuffer: ``.onnx`` and ``.json`` are checked elsewhere)."""
    key = name if name == "checkpoint" else name[name.rfind("."):] if "." in name else name
    if key not in _FORMATS:
        return None
    what, identifier, magic, required = _FORMATS[key]
    if size < _ROOT_MIN + 4 or len(head) < min(size, HEAD_BYTES):
        return f"{size} bytes: too short for {what}"
    head = head[:HEAD_BYTES].ljust(HEAD_BYTES, b"\0")   # a short file's header reads as zeros
    found = head[4:8].decode("latin-1")
    if found != identifier:
        return f"not {what} (file identifier {found!r}, expected {identifier!r})"
    end: int = size
    if magic is not None and head[8:12].decode("latin-1") == magic:
        end, problem = _HEADERS[magic](head, size)
        if problem:
            return f"{what} with a bad header: {problem}"
    elif required:
        return f"{what} without its {magic!r} header"
    root = _u(head, 0, 4)
    if not _ROOT_MIN <= root <= end - 4:
        return f"{what} whose root table offset {root} lies outside its {end} bytes"
    return None
