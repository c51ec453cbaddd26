"""Find external-data references in an ONNX file without an ONNX parser (standard library only).

An ONNX tensor may keep its bytes outside the model file: ``data_location:
EXTERNAL`` and ``external_data`` entries (``location``, ``offset``, ``length``)
that ONNX Runtime resolves *relative to the model's directory*, or as an
absolute path. A bundle is a flat directory of verified files, so any such
reference reaches a file the manifest does not cover (``../../etc/passwd``, a
file outside the bundle, or one swapped in later): the runtime would read it
while the bundle "verifies". :func:`external_data_refs` walks the protobuf wire
format of a ``ModelProto`` through every message that can hold a tensor (graph
initializers, sparse initializers, node attributes, sub-graphs of ``If``/``Loop``/
``Scan``, functions, training-info graphs) and reports every ``TensorProto`` that
carries either field; :func:`mobile_lr.bundle.load_bundle` refuses the bundle.

Field numbers are those of ``onnx.proto`` (ONNX 1.17; they never change once
published): ModelProto ``graph=7, training_info=20, functions=25``; GraphProto
``node=1, initializer=5, sparse_initializer=15``; NodeProto ``attribute=5``;
AttributeProto ``t=5, g=6, tensors=10, graphs=11, sparse_tensor=22,
sparse_tensors=23``; FunctionProto ``node=7, attribute_proto=11``;
TrainingInfoProto ``initialization=1, algorithm=2``; SparseTensorProto
``values=1, indices=2``; TensorProto ``name=8, external_data=13,
data_location=14`` (``EXTERNAL = 1``). Everything else is skipped by its
length, so the walk costs a few microseconds per tensor, not per byte.

Malformed wire data is refused too (:class:`WireError`): a file that does not
parse here would not parse in ONNX Runtime either. :func:`model_problem` tells a
model from other well-formed wire data (an empty file is an empty ``ModelProto``).
"""

from __future__ import annotations

__all__ = ["MAX_NESTING", "MIN_IR_VERSION", "WireError", "external_data_refs", "model_problem"]

MAX_NESTING = 100  # protobuf's own default recursion limit
MIN_IR_VERSION = 3  # the oldest ONNX IR ONNX Runtime loads

# message -> {field number: child message} for the fields that can (transitively) hold a tensor
_CHILDREN: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "NodeProto": {5: "AttributeProto"},
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "AttributeProto": {5: "TensorProto", 6: "GraphProto", 10: "TensorProto", 11: "GraphProto",
                       22: "SparseTensorProto", 23: "SparseTensorProto"},
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
    "TensorProto": {},
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1
_IR_VERSION, _OPSET_IMPORT, _GRAPH, _GRAPH_OUTPUT = 1, 8, 7, 12  # ModelProto's and GraphProto.output


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, i: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= end or shift > 63:
            raise WireError(f"truncated or overlong varint at byte {i}")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field)."""
    i = start
    while i < end:
        key, i = _varint(data, i, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {i}")
        if wire == 0:
            value, i = _varint(data, i, end)
            yield number, wire, value
        elif wire == 1 or wire == 5:
            i += 8 if wire == 1 else 4
            if i > end:
                raise WireError("truncated fixed-width field")
            yield number, wire, None
        elif wire == 2:
            length, i = _varint(data, i, end)
            if i + length > end:
                raise WireError(f"length-delimited field {number} runs past its message")
            yield number, wire, (i, i + length)
            i += length
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise WireError(f"unsupported wire type {wire} (field {number})")


def external_data_refs(data: bytes) -> list[str]:
    """Names (or ``"<unnamed>"``) of every tensor in an ONNX ``ModelProto`` that refers to external data."""
    found: list[str] = []
    stack = [("ModelProto", 0, len(data), 0)]
    while stack:
        kind, start, end, depth = stack.pop()
        if depth > MAX_NESTING:
            raise WireError(f"messages nested deeper than {MAX_NESTING}")
        children = _CHILDREN[kind]
        name, external = "<unnamed>", False
        for number, wire, value in _fields(data, start, end):
            if kind == "TensorProto":
                if number == _TENSOR_NAME and wire == 2:
                    name = data[value[0]:value[1]].decode("utf-8", "replace")[:200]
                elif number == _EXTERNAL_DATA or (number == _DATA_LOCATION and value == _EXTERNAL):
                    external = True
            elif number in children:
                if wire != 2:
                    raise WireError(f"{kind} field {number} is not a message")
                stack.append((children[number], value[0], value[1], depth + 1))
        if external:
            found.append(name)
    return found


def model_problem(data: bytes) -> str | None:
    """What keeps well-formed wire data from being an ONNX model, or ``None``: an empty file (or
    any protobuf of other fields) parses as an empty ``ModelProto``, so ``verify`` accepted a
    re-hashed empty ``.onnx``. A model has an IR version ONNX Runtime loads, an operator set
    and a graph with an output (ModelProto ``ir_version=1, opset_import=8, graph=7``; GraphProto
    ``output=12``). Call after :func:`external_data_refs`, which refuses malformed wire data."""
    ir, opsets, graph = 0, 0, None
    for number, wire, value in _fields(data, 0, len(data)):
        if number == _IR_VERSION and wire == 0:
            ir = value
        elif number == _OPSET_IMPORT and wire == 2:
            opsets += 1
        elif number == _GRAPH and wire == 2:
            graph = value
    if graph is None:
        return "not an ONNX model: no graph"
    if ir < MIN_IR_VERSION:
        return f"not an ONNX model ONNX Runtime loads: IR version {ir} < {MIN_IR_VERSION}"
    if not opsets:
        return "not an ONNX model: no operator set imported"
    if not any(n == _GRAPH_OUTPUT and w == 2 for n, w, _ in _fields(data, *graph)):
        return "not an ONNX model: its graph has no output"
    return None
