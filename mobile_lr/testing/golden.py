"""Golden vectors: the Python reference's answers, for the Kotlin core to match.

``mobile-lr schedule golden --out FILE`` writes them; the Kotlin tests read the
file and must agree on every learning rate (1e-12 relative) and every refused
spec's field. The test command regenerates the file and compares it with the
committed copy, so the two sides cannot drift. Output is a pure function of the
code: fixed seeds, no clock, no machine-dependent ordering.
"""

from __future__ import annotations

import random
from typing import Any

from mobile_lr.schedules import parse_spec
from mobile_lr.testing.golden_cases import json_safe, manager_cases, planner_cases, setup_cases
from mobile_lr.testing.specs import EXAMPLES, INVALID_EXAMPLES, random_plan, random_spec
from mobile_lr.validation import ValidationError

FORMAT = "mobile-lr.golden/1"
N_RANDOM_SPECS = 240
SEED = 20261122


def _steps_to_check(plan: list[list[int]]) -> list[int]:
    """Every early step, a stride through the run, and both sides of each re-plan and end."""
    horizon = max(total for _, total in plan) + 12
    steps = set(range(0, min(horizon, 40)))
    steps.update(range(0, horizon, 7))
    for t0, total in plan:
        steps.update(x for x in (t0 - 1, t0, t0 + 1, total - 1, total, total + 1) if x >= 0)
    return sorted(steps)


def _metrics(rng: random.Random, n: int) -> list[float]:
    """A noisy, mostly decreasing loss curve with plateaus (drives the plateau shape)."""
    out, level = [], 2.0
    for _ in range(n):
        if rng.random() < 0.3:
            level *= rng.uniform(0.7, 0.99)
        out.append(round(level * rng.uniform(0.97, 1.03), 6))
    return out


def schedule_case(name: str, spec: dict[str, Any], plan: list[list[int]],
                  rng: random.Random) -> dict[str, Any]:
    sched = parse_spec(spec)
    steps = _steps_to_check(plan)
    case: dict[str, Any] = {"name": name, "spec": spec, "plan": plan, "steps": steps}
    if sched.is_plateau:
        metrics = _metrics(rng, steps[-1] + 1)
        states = [sched.plateau_start()]
        for m in metrics:
            states.append(sched.plateau_observe(states[-1], m))
        case["metrics"] = metrics  # lr at step t is taken after the first t metrics
        case["lr"] = [sched.lr(t, plan, states[t]) for t in steps]
    else:
        case["lr"] = [sched.lr(t, plan) for t in steps]
    return case


def build() -> dict[str, Any]:
    rng = random.Random(SEED)
    cases = []
    plans = {"one plan": [[0, 300]], "shrink": [[0, 300], [100, 160]],
             "grow": [[0, 120], [60, 300]], "three re-plans": [[0, 300], [50, 200], [120, 400],
                                                               [250, 260]],
             "spent": [[0, 200], [80, 80]]}
    for kind, spec in EXAMPLES.items():
        for label, plan in plans.items():
            cases.append(schedule_case(f"{kind} / {label}", spec, plan, rng))
    for i in range(N_RANDOM_SPECS):
        spec = random_spec(rng)
        plan = random_plan(rng)
        cases.append(schedule_case(f"random {i}", spec, plan, rng))
    invalid = []
    for spec, field in INVALID_EXAMPLES:
        try:
            parse_spec(spec)
        except ValidationError as err:
            assert err.field == field, (spec, err)
            invalid.append({"spec": json_safe(spec), "field": err.field, "message": str(err)})
        else:  # pragma: no cover - INVALID_EXAMPLES is tested to be refused
            raise AssertionError(f"invalid example accepted: {spec}")
    return {"format": FORMAT, "schedules": cases, "invalid_specs": invalid,
            "planner": planner_cases(), "manager": manager_cases(), "setups": setup_cases(),
            "json_texts": json_text_cases(),
            "onnx_wire": onnx_wire_cases(), "bundle_contents": bundle_content_cases(),
            "record_bounds": record_bound_cases()}


# JSON texts the Kotlin core's reader must accept or refuse as mobile_lr.validation.parse_json does:
# org.json (Android's reader) accepted comments, single quotes, unquoted strings and 010 as 8.
JSON_TEXTS = [
    '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}', '[1, 2.5, -0.0, 1e3, 1E-3, -12]',
    ' \t\n\r{"a" : [ ] }\n', '"\\u00e9\\n\\t\\/\\\\\\""', '"\\ud83d\\ude00"', "0", "-0", "12.5e+2",
    "9223372036854775807", "-9223372036854775808", "1e999", "NaN", "Infinity", "-Infinity",
    "[" * 64 + "]" * 64, '{"a": 1.0, "b": 1}', '"caf\u00e9"',
    # refused
    '{"a": 1,}', "[1,]", "{a: 1}", "{'a': 1}", "// c\n{}", "/* c */ {}", '{"a": 010}', "01", "+1", ".5",
    "1.", "1e", "0x10", '{"a": 1} x', "", " ", '{"a": 1, "a": 2}', "[" * 65 + "]" * 65,
    "9223372036854775808", "-9223372036854775809", '"\t"', '"\\x41"', "nul", "True", "undefined",
    "[1 2]", '{"a" 1}', '"abc', "\ufeff{}", "infinity", "-NaN", "nan", "[1]]", "{}{}", "'a'", '{"a":}',
    '["a" "b"]', "-", "--1", "1e+", '"\\u12"', '"\\uZZZZ"',
]


def json_text_cases() -> list[dict[str, Any]]:
    """Each text with Python's verdict: the value read (non-finite numbers as strings), or the field
    and message of the refusal."""
    from mobile_lr.validation import parse_json

    out = []
    for text in JSON_TEXTS:
        try:
            value = parse_json(text, "<file>")
        except ValidationError as err:
            out.append({"text": text, "ok": False, "message": str(err)})
        else:  # a value too deep to nest inside golden.json itself is described by its depth
            depth = _depth(value)
            told = {"value": json_safe(value)} if depth <= 8 else {"depth": depth}
            out.append({"text": text, "ok": True, **told})
    return out


def _depth(value: Any) -> int:
    if isinstance(value, dict | list):
        return 1 + max((_depth(v) for v in (value.values() if isinstance(value, dict) else value)), default=0)
    return 0


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def onnx_wire_cases() -> list[dict[str, Any]]:
    """Hand-built ONNX ``ModelProto`` bytes and what :func:`mobile_lr.onnx_wire.external_data_refs`
    finds in them (tensor names, or an error for malformed wire data): the Kotlin verifier's walk
    must agree. Field numbers as in ``onnx.proto`` (see :mod:`mobile_lr.onnx_wire`)."""
    from mobile_lr.onnx_wire import WireError, external_data_refs

    ext = _field(8, b"w") + _varint(14 << 3) + _varint(1)  # TensorProto name "w", data_location EXTERNAL
    entry = _field(13, _field(1, b"location") + _field(2, b"/etc/passwd"))
    inline = _field(8, b"b") + _field(9, b"\0" * 8) + _varint(1 << 3) + _varint(2)  # raw_data, dims
    def graph(*fields: bytes) -> bytes:  # ModelProto.graph
        return _field(7, b"".join(fields))

    def constant(attr: bytes) -> bytes:  # a NodeProto "Constant" with one AttributeProto
        return _field(4, b"Constant") + _field(5, attr)

    def node(attr: bytes) -> bytes:  # GraphProto.node
        return _field(1, constant(attr))
    texts = {
        "empty model": b"",
        "doc string only": _field(6, b"x" * 300) + _varint(1 << 3) + _varint(10),
        "inline initializer": graph(_field(5, inline)),
        "external initializer": graph(_field(5, ext)),
        "external_data entries only": graph(_field(5, _field(8, b"e") + entry)),
        "sparse initializer": graph(_field(15, _field(1, ext))),
        "constant attribute": graph(node(_field(5, ext))),
        "attribute tensors list": graph(node(_field(10, inline) + _field(10, ext))),
        "subgraph": graph(node(_field(6, _field(5, ext)))),
        "function": _field(25, _field(7, constant(_field(5, ext)))),
        "training info": _field(20, _field(2, _field(5, ext))),
        "fixed-width fields": _varint(5 << 3 | 1) + b"\0" * 8 + _varint(5 << 3 | 5) + b"\0" * 4,
        "truncated length": _varint(7 << 3 | 2) + _varint(100) + b"abc",
        "truncated varint": b"\x08\xff",
        "group wire type": _varint(7 << 3 | 3),
        "field number 0": _varint(0 << 3 | 0) + _varint(1),
        "graph as a varint": _varint(7 << 3 | 0) + _varint(1),
    }
    out = []
    for name, data in texts.items():
        try:
            out.append({"name": name, "hex": data.hex(), "refs": external_data_refs(data)})
        except WireError:
            out.append({"name": name, "hex": data.hex(), "error": True})
    return out


def _flatbuffer(identifier: bytes, header: bytes = b"", root: int = 12, size: int = 80) -> bytes:
    """A flatbuffer's head as the exporters write it: root table offset, file identifier, the
    ExecuTorch header, padded with zeros to ``size`` bytes."""
    return (root.to_bytes(4, "little") + identifier + header).ljust(size, b"\0")


def _u64s(*values: int) -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in values)


def bundle_content_cases() -> list[dict[str, Any]]:
    """A bundle's file contents and :func:`mobile_lr.bundle.check_content`'s verdict (the file's
    name as the field, or accepted): the Kotlin verifier must agree on each. Covers the JSON files
    of their kind, the ONNX model checks and the flatbuffer heads."""
    from mobile_lr.bundle import BundleError, check_content

    spec = b'{"format": "mobile-lr.schedule/1", "base_lr": 0.01, "shape": {"type": "cosine"}}'
    labels = b'{"format": "mobile-lr.labels/1", "names": ["a", "b"]}'
    model = _varint(1 << 3) + _varint(8) + _field(8, _field(1, b"") + _varint(2 << 3) + _varint(17))
    out_info = _field(12, _field(1, b"y"))
    onnx_ok = model + _field(7, _field(1, _field(4, b"Relu")) + out_info)
    eh = b"eh00" + (32).to_bytes(4, "little")
    fh = b"FH01" + (40).to_bytes(4, "little")
    cases: list[tuple[str, bytes]] = [
        ("schedule.json", spec), ("schedule.json", b'{"format": "mobile-lr.schedule/1"}'),
        ("schedule.json", spec.replace(b"0.01", b"NaN")), ("schedule.json", spec.replace(b"0.01", b"-1")),
        ("schedule.json", spec.replace(b"cosine", b"nope")), ("schedule.json", b"[" * 100 + b"]" * 100),
        ("schedule.json", spec[:-1] + b', "base_lr": 1}'), ("schedule.json", b"\xff\xfe{}"),
        ("schedule.json", b""), ("labels.json", labels), ("labels.json", labels.replace(b'"b"', b"1")),
        ("labels.json", labels.replace(b"labels/1", b"labels/2")), ("labels.json", b'{"names": []}'),
        ("labels.json", labels[:-1] + b', "x": 1}'), ("labels.json", b'{"format": "mobile-lr.labels/1", '
                                                                     b'"names": "ab"}'),
        ("labels.json", b"[]"), ("notes.json", b"{}"), ("notes.json", b"{"),
        ("model.onnx", onnx_ok), ("model.onnx", b""), ("model.onnx", model),
        ("model.onnx", _varint(1 << 3) + _varint(2) + onnx_ok[2:]),
        ("model.onnx", onnx_ok[2:]),   # no IR version
        ("model.onnx", _varint(1 << 3) + _varint(8) + _field(7, _field(1, _field(4, b"Relu")) + out_info)),
        ("model.onnx", model + _field(7, _field(1, _field(4, b"Relu")))),
        ("model.onnx", onnx_ok + _field(7, b"")), ("model.onnx", onnx_ok[:-1]),
        ("checkpoint", _flatbuffer(b"ODTC")), ("checkpoint", b""), ("checkpoint", _flatbuffer(b"ODTC")[:11]),
        ("checkpoint", _flatbuffer(b"ET12")), ("checkpoint", _flatbuffer(b"ODTC", root=4)),
        ("checkpoint", _flatbuffer(b"ODTC", root=77)), ("checkpoint", _flatbuffer(b"ODTC", root=76)),
        ("checkpoint", _flatbuffer(b"ODTC", root=2**32 - 1)),
        ("model.pte", _flatbuffer(b"ET12")),
        ("model.pte", _flatbuffer(b"ET12", eh + _u64s(64, 64, 16), root=44)),
        ("model.pte", _flatbuffer(b"ET12", eh + _u64s(64, 0, 0), root=44)),
        ("model.pte", _flatbuffer(b"ET12", eh + _u64s(81, 0, 0), root=44)),
        ("model.pte", _flatbuffer(b"ET12", eh + _u64s(64, 32, 16), root=44)),
        ("model.pte", _flatbuffer(b"ET12", eh + _u64s(64, 64, 17), root=44)),
        ("model.pte", _flatbuffer(b"ET12", eh + _u64s(64, 64, 2**64 - 1), root=44)),
        ("model.pte", _flatbuffer(b"ET12", b"eh00" + (16).to_bytes(4, "little"), root=44)),
        ("model.pte", _flatbuffer(b"ET12", eh + _u64s(64, 0, 0), root=62)),
        ("model.pte", _flatbuffer(b"ET12", b"eh00", size=20)), ("model.pte", _flatbuffer(b"ODTC")),
        ("model.pte", _flatbuffer(b"ET12") * 2), ("model.pte", b"\0" * 11),
        ("data.ptd", _flatbuffer(b"FT01", fh + _u64s(48, 16, 64, 16), root=56)),
        ("data.ptd", _flatbuffer(b"FT01")),
        ("data.ptd", _flatbuffer(b"FT01", fh + _u64s(48, 40, 0, 0), root=56)),
        ("data.ptd", _flatbuffer(b"FT01", fh + _u64s(48, 16, 64, 17), root=56)),
        ("data.ptd", _flatbuffer(b"FT01", b"FH01" + (24).to_bytes(4, "little"), root=56)),
        ("data.ptd", _flatbuffer(b"FT01", fh + _u64s(2**64 - 1, 2, 0, 0), root=56)),
    ]
    out = []
    for name, data in cases:
        try:
            check_content(name, data)
        except BundleError as err:
            out.append({"name": name, "hex": data.hex(), "ok": False, "field": err.field,
                        "message": str(err)})
        else:
            out.append({"name": name, "hex": data.hex(), "ok": True})
    return out


def record_bound_cases() -> list[dict[str, Any]]:
    """Policies, manager configs (the range test) and profiles at and beyond their documented
    bounds, with the field Python refuses (``None``: accepted): the Kotlin readers must agree."""
    import json as _json
    from importlib import resources

    from mobile_lr.budget import MAX_SPAN_S, Policy
    from mobile_lr.device import DeviceProfile
    from mobile_lr.manager import ManagerConfig

    profile = _json.loads(resources.files("mobile_lr").joinpath("data", "profiles", "low-end.json")
                          .read_text(encoding="utf-8"))
    docs: list[tuple[str, dict[str, Any]]] = [
        *(("policy", {key: value}) for key in ("window_s", "window_gap_s", "deadline_s")
          for value in (MAX_SPAN_S, MAX_SPAN_S * 1.000001, 1e308)),
        ("policy", {"deadline_s": -MAX_SPAN_S}), ("policy", {"deadline_s": -1e308}),
        ("policy", {"thermal_margin_c": 100.0}), ("policy", {"thermal_margin_c": 100.5}),
        *(("config", {"range_test": {key: value}}) for key, value in (
            ("start_factor", 1e-12), ("start_factor", 9e-13), ("start_factor", 1e-320),
            ("end_factor", 1e6), ("end_factor", 1.5e6), ("end_factor", 1e23))),
        ("config", {"range_test": {"start_factor": 1e6, "end_factor": 1e6}}),
        *(("profile", {**profile, "name": name}) for name in (
            "my-phone_2.v1", "../x", "a/b", "..", ".a", "x" * 64, "x" * 65, "a b", "caf\u00e9", "a..b")),
    ]
    readers = {"policy": Policy.from_dict, "config": ManagerConfig.from_dict,
               "profile": lambda d: DeviceProfile.from_dict(d, "")}
    out = []
    for kind, doc in docs:
        try:
            readers[kind](doc)
        except ValidationError as err:
            out.append({"kind": kind, "doc": json_safe(doc), "field": err.field})
        else:
            out.append({"kind": kind, "doc": json_safe(doc), "field": None})
    return out
