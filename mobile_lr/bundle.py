"""Bundles: the typed manifest, writing it, and refusing a bundle that does not match it.

A bundle is a flat directory downloaded to a phone: training artifacts, the
schedule, the policy, labels and ``manifest.json``. It is *data, never code*:
nothing in it names a Python object to import (the PyTorch runtime takes its
model from the caller's allow-list of recipes, keyed by the manifest's recipe
*name*), nothing in it is a pickle, and nothing in it may make a parser read a
file outside it. It must be verified like any download *before* any of its
files reaches a parser (ONNX protobuf, ORT's flatbuffer checkpoint, the
ExecuTorch program): a corrupted or tampered file is a crash or worse in native
code. So :func:`load_bundle` checks, with the standard library only:

* ``manifest.json`` is a regular file of at most :data:`MAX_MANIFEST_BYTES`,
  strict JSON (no duplicate keys: ``files`` listed twice is refused), and a
  valid :class:`Manifest` (every field of the right type, nothing unknown at the
  top level: a block this version does not understand may change how training
  runs, so it is refused rather than ignored);
* every file it lists is present, a regular file with one link (no symlink, no
  hard link to a file outside the bundle), of the listed size (at most
  :data:`MAX_FILE_BYTES`) and SHA-256 (size first: a truncated file is named as
  truncated);
* there is no other file or directory (an extra file is refused, whatever it is);
* file names are plain names of an allowed kind (no path, no hidden file, no
  trailing newline, no pickle-capable format);
* no ONNX file refers to external data (:mod:`mobile_lr.onnx_wire`): ONNX Runtime
  would read that file from outside the bundle while the bundle "verifies";
* each file is what its name claims (:func:`check_content`): an ONNX model, a JSON
  file of its kind, the ORT checkpoint's or ExecuTorch's flatbuffer
  (:mod:`mobile_lr.artifact_heads`), since a re-hashed empty or foreign file passes the
  hashes.

The manifest itself is covered by its own SHA-256, :func:`manifest_sha256`:
the bundle's identity. Checkpoints record it (a checkpoint of another bundle is
refused) and a phone that got the identity from a trusted channel passes it as
``expected_sha256``, which also catches a manifest edited to match changed
files (integrity alone cannot: whoever can edit the files can edit the list).
Runtimes parse :meth:`Bundle.read_verified` bytes (checked again after the
read), never a path that could have changed since the check.

No torch/onnx import here, so a phone-side loader can use this module alone.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "manifest.json").write_text('{"format": "mobile-lr.bundle/1", "files": {}, "files": {}}')
>>> load_bundle(d)
Traceback (most recent call last):
...
mobile_lr.bundle.BundleError: manifest.json: duplicate key 'files' in a JSON object; allowed: each key once
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mobile_lr.artifact_heads import HEAD_BYTES, head_problem
from mobile_lr.onnx_wire import WireError, external_data_refs, model_problem
from mobile_lr.validation import (
    MAX_JSON_BYTES,
    ValidationError,
    check_int,
    check_keys,
    check_number,
    get_object,
    join,
    parse_json,
    read_bytes,
)
from mobile_lr.validation.schema import Record, boolean, choice, number, numbers

__all__ = [
    "ALLOWED_FILE_PATTERN",
    "BUNDLE_FORMAT",
    "LR_DROPOUT_FORMAT",
    "MANIFEST",
    "MAX_BATCH",
    "MAX_FILE_BYTES",
    "MAX_MANIFEST_BYTES",
    "OPTIMIZERS",
    "BackendInfo",
    "Bundle",
    "BundleError",
    "FileEntry",
    "LabelSpec",
    "LrDropoutInfo",
    "Manifest",
    "ModelInfo",
    "OptimizerSpec",
    "TensorSpec",
    "check_content",
    "check_replaceable",
    "file_digest",
    "load_bundle",
    "manifest_sha256",
    "replace_bundle",
    "verify_bundle",
    "write_manifest",
]

BUNDLE_FORMAT = "mobile-lr.bundle/1"
LR_DROPOUT_FORMAT = "mobile-lr.lr-dropout/1"
MANIFEST = "manifest.json"
MAX_BATCH = 1 << 20  # the largest ExecuTorch max_batch a manifest may carry
# A runtime allocates from the manifest's shapes (ExecuTorch's opening zero batch of max_batch
# samples), so they are bounded here: 2^24 elements a sample (64 MiB of float32; MobileNetV2's
# 3x224x224 is 150,528) and 2^28 in a batch of max_batch samples (1 GiB).
MAX_SAMPLE_ELEMENTS = 1 << 24
MAX_BATCH_ELEMENTS = 1 << 28
MAX_MANIFEST_BYTES = 1 << 20  # 1 MiB; an exported manifest is ~3 kB
MAX_FILE_BYTES = 2 << 30  # 2 GiB per file: protobuf's own limit for an ONNX model without external data
# Kinds of file a bundle may hold: ONNX models, the ORT checkpoint (a flatbuffer),
# ExecuTorch programs and data, JSON. Nothing pickle-based (.pt, .pth, .pkl, .bin, .npy).
LABELS_FORMAT = "mobile-lr.labels/1"  # labels.json: the class names, in order

# Matched with fullmatch (``$`` would let "labels.json\n" through; Kotlin's matches() refuses it).
ALLOWED_FILE_PATTERN = re.compile(r"(?!\.)[A-Za-z0-9_.-]{1,128}\.(onnx|pte|ptd|json)|checkpoint")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
OPTIMIZERS = ("adamw", "sgd")
_LRD_KINDS = ("sgd-lrd", "adamw-lrd")
_MASK32 = 2**32 - 1


class BundleError(ValidationError):
    """A bundle (or one of its files) does not match its manifest; ``field`` names the file."""

    def __init__(self, file: str, problem: str, allowed: str | None = None):
        super().__init__(file, problem, allowed)
        self.file = file


# ---------------------------------------------------------------------------- typed manifest


def _str(obj: Mapping[str, Any], key: str, path: str, default: Any = ...) -> Any:
    if key not in obj:
        if default is ...:
            raise ValidationError(join(path, key), "missing required field")
        return default
    if not isinstance(obj[key], str):
        raise ValidationError(join(path, key), f"expected a string, got {type(obj[key]).__name__}",
                              "a string")
    return obj[key]


def _str_list(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> tuple[str, ...]:
    value = obj.get(key, ... if required else [])
    if value is ...:
        raise ValidationError(join(path, key), "missing required field")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(join(path, key), "expected a list of strings", "a list of strings")
    if len(set(value)) != len(value):
        raise ValidationError(join(path, key), "names listed twice", "distinct names")
    return tuple(value)


def _int(obj: Mapping[str, Any], key: str, path: str, lo: int = 0, hi: int | None = None,
         default: Any = ...) -> Any:
    if key not in obj:
        if default is ...:
            raise ValidationError(join(path, key), "missing required field")
        return default
    if isinstance(obj[key], float):  # a manifest is written by mobile-lr: integers are JSON integers
        raise ValidationError(join(path, key), f"expected an integer, got {obj[key]!r}", "an integer")
    return check_int(obj[key], join(path, key), lo=lo, hi=hi)


@dataclass(frozen=True)
class FileEntry:
    """One listed file: SHA-256 (lowercase hex) and size in bytes."""

    sha256: str
    size: int

    @classmethod
    def from_dict(cls, obj: Any, path: str) -> FileEntry:
        allowed = '{"sha256": "<64 lowercase hex digits>", "size": <bytes >= 0>}'
        if not isinstance(obj, Mapping) or set(obj) != {"sha256", "size"} \
                or not isinstance(obj["sha256"], str) or not _HEX64.fullmatch(obj["sha256"]) \
                or type(obj["size"]) is not int or obj["size"] < 0:
            raise BundleError(path, "bad entry", allowed)
        if obj["size"] > MAX_FILE_BYTES:
            raise BundleError(path, f"size {obj['size']:,} is over the bound of {MAX_FILE_BYTES:,} bytes",
                              f"at most {MAX_FILE_BYTES:,} bytes per file")
        return cls(obj["sha256"], obj["size"])


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape with ``-1`` for the batch axis first, dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def from_dict(cls, obj: Any, path: str, dtypes: tuple[str, ...] = ("float32",)) -> TensorSpec:
        obj = get_object(obj, path)
        check_keys(obj, path, ("name", "shape", "dtype"), required=("name", "shape", "dtype"))
        return cls(_str(obj, "name", path), _shape(obj["shape"], join(path, "shape")),
                   _choice(obj, "dtype", path, dtypes))


def _shape(value: Any, path: str) -> tuple[int, ...]:
    allowed = "[-1, d1, d2, ...] with 1..8 sizes d >= 1 and at most 2**24 elements per sample"
    if not isinstance(value, list) or not 1 <= len(value) <= 9 or value[0] != -1 \
            or type(value[0]) is not int:
        raise ValidationError(path, f"expected a batch shape, got {value!r}"[:200], allowed)
    dims = tuple(check_int(d, join(path, i + 1), lo=1, hi=MAX_SAMPLE_ELEMENTS)
                 for i, d in enumerate(value[1:]))
    per = math.prod(dims)
    if per > MAX_SAMPLE_ELEMENTS:
        raise ValidationError(path, f"{per:,} elements per sample", allowed)
    return (-1, *dims)


def _choice(obj: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...]) -> str:
    value = _str(obj, key, path)
    if value not in choices:
        raise ValidationError(join(path, key), f"unknown value {value!r}"[:200], ", ".join(choices))
    return value


@dataclass(frozen=True)
class LabelSpec:
    """Training targets: ``int64`` class indices in ``[0, classes)`` or ``float32`` of ``shape``."""

    name: str
    dtype: str
    classes: int | None = None
    shape: tuple[int, ...] | None = None

    @classmethod
    def from_dict(cls, obj: Any, path: str) -> LabelSpec:
        obj = get_object(obj, path)
        dtype = _choice(obj, "dtype", path, ("int64", "float32"))
        if dtype == "int64":
            check_keys(obj, path, ("name", "dtype", "classes"), required=("name", "dtype", "classes"))
            return cls(_str(obj, "name", path), dtype, classes=_int(obj, "classes", path, lo=1, hi=2**31))
        check_keys(obj, path, ("name", "dtype", "shape"), required=("name", "dtype", "shape"))
        return cls(_str(obj, "name", path), dtype, shape=_shape(obj["shape"], join(path, "shape")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.classes is not None:
            out["classes"] = self.classes
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out


@dataclass(frozen=True)
class ModelInfo:
    """The manifest's ``model`` block. ``recipe`` is a *name* (looked up in an allow-list by the
    PyTorch runtime); ``entry`` only records where the exporter found the recipe: nothing imports it.
    Other keys (FLOP counts, notes) are information, kept in ``info``."""

    recipe: str
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    labels: LabelSpec
    entry: str = ""
    loss: str = ""
    flops_per_step: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN = ("recipe", "trainable", "frozen", "input", "output", "labels", "entry", "loss", "flops_per_step")

    @classmethod
    def from_dict(cls, obj: Any, path: str = "model") -> ModelInfo:
        obj = get_object(obj, path)
        recipe = _str(obj, "recipe", path)
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", recipe):
            raise ValidationError(join(path, "recipe"), f"{recipe[:80]!r} is not a recipe name",
                                  "1-128 letters, digits, '_', '.', ':' or '-'")
        trainable = _str_list(obj, "trainable", path)
        if not trainable:
            raise ValidationError(join(path, "trainable"), "empty", "at least one trainable parameter")
        frozen = _str_list(obj, "frozen", path, required=False)
        if set(trainable) & set(frozen):
            raise ValidationError(join(path, "frozen"), "a parameter is both trainable and frozen")
        for key in ("params_trainable", "params_frozen", "flops_forward", "flops_backward", "flops_batch"):
            if key in obj:
                _int(obj, key, path)
        if "flops_note" in obj:
            _str(obj, "flops_note", path)
        return cls(recipe, trainable, frozen,
                   TensorSpec.from_dict(obj.get("input"), join(path, "input"), ("float32", "int64")),
                   TensorSpec.from_dict(obj.get("output"), join(path, "output")),
                   LabelSpec.from_dict(obj.get("labels"), join(path, "labels")),
                   entry=_str(obj, "entry", path, ""), loss=_str(obj, "loss", path, ""),
                   flops_per_step=_int(obj, "flops_per_step", path, default=None),
                   info={k: v for k, v in obj.items() if k not in cls._KNOWN})


@dataclass(frozen=True)
class BackendInfo:
    """One ``backends.<name>`` block: ``status`` ``"ok"`` (``files`` written) or ``"unsupported"``
    (``reason``). The ExecuTorch block also has ``method``, ``parameter_prefix``, ``dynamic_batch``
    and ``max_batch``; other keys are kept in ``options``."""

    name: str
    status: str
    files: tuple[str, ...] = ()
    reason: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, obj: Any, path: str, listed: Mapping[str, FileEntry]) -> BackendInfo:
        obj = get_object(obj, path)
        status = _choice(obj, "status", path, ("ok", "unsupported"))
        files = _str_list(obj, "files", path, required=status == "ok")
        reason = _str(obj, "reason", path, None)
        if status == "ok":
            for f in files:
                if f not in listed:
                    raise ValidationError(join(path, "files"), f"{f[:80]!r} is not listed in the manifest")
        if name == "executorch" and status == "ok":
            _str(obj, "method", path)
            _str(obj, "parameter_prefix", path)
            if not isinstance(obj.get("dynamic_batch"), bool):
                raise ValidationError(join(path, "dynamic_batch"), "expected true or false", "true, false")
            _int(obj, "max_batch", path, lo=1, hi=MAX_BATCH)
            if not files:
                raise ValidationError(join(path, "files"), "empty", "the program file")
        if name == "ort" and status == "ok" and "inference_model" in obj:
            _str(obj, "inference_model", path)
        options = {k: v for k, v in obj.items() if k not in ("status", "files", "reason")}
        return cls(name, status, files, reason, options)


@dataclass(frozen=True)
class LrDropoutInfo:
    """The ``lr_dropout`` block: LR dropout in the ORT optimizer graph (docs/LR_DROPOUT.md)."""

    kind: str
    keep: float
    seed: int
    rule: str
    mask: str
    backends: tuple[str, ...]

    @classmethod
    def from_dict(cls, obj: Any, path: str = "lr_dropout") -> LrDropoutInfo:
        found = obj.get("format") if isinstance(obj, Mapping) else obj
        if found != LR_DROPOUT_FORMAT:
            raise ValidationError(join(path, "format"), f"unknown format {found!r}"[:200], LR_DROPOUT_FORMAT)
        check_keys(obj, path, ("format", "kind", "keep", "seed", "rule", "mask", "backends"),
                   required=("kind", "keep", "seed", "backends"))
        return cls(_choice(obj, "kind", path, _LRD_KINDS),
                   check_number(obj["keep"], join(path, "keep"), lo=0.0, hi=1.0),
                   _int(obj, "seed", path, lo=0, hi=_MASK32), _str(obj, "rule", path, "official"),
                   _str(obj, "mask", path, "counter"), _str_list(obj, "backends", path))

    def to_dict(self) -> dict[str, Any]:
        return {"format": LR_DROPOUT_FORMAT, "kind": self.kind, "keep": self.keep, "seed": self.seed,
                "rule": self.rule, "mask": self.mask, "backends": list(self.backends)}


@dataclass(frozen=True)
class OptimizerSpec(Record):
    """Optimizer and hyper-parameters (the manifest's ``optimizer`` block); the learning rate
    itself comes from the schedule.

    ``adamw`` uses ``betas``, ``eps`` and ``weight_decay``; ``sgd`` uses
    ``momentum``, ``dampening``, ``weight_decay`` and ``nesterov`` with
    ``torch.optim.SGD``'s meaning. The default ``eps`` is torch's 1e-8, not
    onnxblock's 1e-6: the exporter passes it to ONNX Runtime explicitly so both
    run the same hyper-parameters.
    """

    type: str = choice(OPTIMIZERS, "adamw", help="torch.optim.AdamW or torch.optim.SGD")
    betas: tuple[float, float] = numbers((0.9, 0.999), length=2, lo=0.0, hi=1.0, hi_open=True,
                                         help="adamw: running-average coefficients")
    eps: float = number(1e-8, lo=0.0, lo_open=True, help="adamw: denominator term")
    weight_decay: float = number(0.0, lo=0.0, help="decoupled (adamw) or L2 (sgd) weight decay")
    momentum: float = number(0.0, lo=0.0, hi=1.0, hi_open=True, help="sgd: momentum factor")
    dampening: float = number(0.0, lo=0.0, hi=1.0, help="sgd: dampening for momentum")
    nesterov: bool = boolean(False, help="sgd: Nesterov momentum (needs momentum > 0, dampening 0)")

    PATH = "optimizer"
    USES: ClassVar[dict[str, tuple[str, ...]]] = {
        "adamw": ("type", "betas", "eps", "weight_decay"),
        "sgd": ("type", "momentum", "dampening", "weight_decay", "nesterov")}

    def check(self) -> None:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValidationError("nesterov", "needs momentum > 0 and dampening 0",
                                  "false, or momentum > 0 with dampening 0")

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``optimizer`` block (only the fields this type uses)."""
        full = super().to_dict()
        return {k: full[k] for k in self.USES[self.type]}

    @classmethod
    def from_dict(cls, obj: Any, path: str | None = "optimizer") -> OptimizerSpec:
        """Read a manifest's ``optimizer`` block: only the fields its ``type`` uses."""
        path = path or ""
        obj = get_object(obj, path)
        kind = obj.get("type")
        if kind not in cls.USES:
            raise ValidationError(join(path, "type"), f"unknown value {kind!r}", ", ".join(OPTIMIZERS))
        check_keys(obj, path, cls.USES[kind], required=("type",))
        return super().from_dict(obj, path)


@dataclass(frozen=True)
class Manifest:
    """A validated ``manifest.json``: the one schema the exporter writes and every runtime,
    the simulator and the manager read. ``raw`` is the JSON object itself (for printing)."""

    files: Mapping[str, FileEntry]
    model: ModelInfo
    optimizer: OptimizerSpec
    backends: Mapping[str, BackendInfo]
    lr_dropout: LrDropoutInfo | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    TOP_LEVEL = ("format", "files", "versions", "model", "optimizer", "backends", "lr_dropout")

    @classmethod
    def from_dict(cls, obj: Any) -> Manifest:
        """Validate a parsed manifest; a :class:`BundleError` names ``manifest.json`` and the field."""
        try:
            return cls._parse(obj)
        except BundleError:
            raise
        except ValidationError as err:
            raise BundleError(f"{MANIFEST}: {err.field}", err.problem, err.allowed) from None

    @classmethod
    def _parse(cls, obj: Any) -> Manifest:
        if not isinstance(obj, Mapping):
            raise BundleError(MANIFEST, "expected a JSON object")
        if obj.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{MANIFEST}: format", f"unknown format {obj.get('format')!r}"[:200],
                              BUNDLE_FORMAT)
        check_keys(obj, "", cls.TOP_LEVEL, required=("files", "model", "optimizer", "backends"))
        raw_files = obj["files"]
        if not isinstance(raw_files, Mapping):
            raise BundleError(f"{MANIFEST}: files", "missing or not an object")
        files = {}
        for name, entry in raw_files.items():
            _check_name(name)
            if name == MANIFEST:
                raise BundleError(name, "the manifest cannot list itself")
            files[name] = FileEntry.from_dict(entry, f"{MANIFEST}: files.{name}")
        versions = get_object(obj.get("versions", {}), "versions")
        if not all(isinstance(v, str) for v in versions.values()):
            raise ValidationError("versions", "expected strings", "package: version strings")
        raw_backends = get_object(obj["backends"], "backends")
        backends = {name: BackendInfo.from_dict(name, b, join("backends", name), files)
                    for name, b in raw_backends.items()}
        lrd = None if obj.get("lr_dropout") is None else LrDropoutInfo.from_dict(obj["lr_dropout"])
        model = ModelInfo.from_dict(obj["model"])
        et = backends.get("executorch")
        if et is not None and et.status == "ok":
            per = max(math.prod(model.input.shape[1:]), math.prod(model.output.shape[1:]))
            if et.options["max_batch"] * per > MAX_BATCH_ELEMENTS:
                raise ValidationError("backends.executorch.max_batch",
                                      f"{et.options['max_batch']} samples of {per:,} elements",
                                      "max_batch x elements per sample <= 2**28")
        return cls(files, model, OptimizerSpec.from_dict(obj["optimizer"]),
                   backends, lrd, dict(versions), json.loads(json.dumps(obj)))

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON (a copy)."""
        return json.loads(json.dumps(self.raw))

    @property
    def plain_adamw(self) -> bool:
        """AdamW without LR dropout: what schedule-free AdamW on ORT is built from."""
        return self.optimizer.type == "adamw" and self.lr_dropout is None

    def backend(self, name: str) -> BackendInfo:
        """``backends.<name>``; refuses a backend the bundle lacks or could not export."""
        info = self.backends.get(name)
        if info is None:
            raise ValidationError(f"backends.{name}", "the bundle was exported without this backend")
        if info.status != "ok":
            raise ValidationError(f"backends.{name}", f"unsupported in this bundle: {info.reason}")
        return info

    def max_train_batch(self, backend: str) -> int | None:
        """The largest training batch ``backend``'s artifacts take (``None``: no limit).

        ExecuTorch plans its buffers for ``max_batch`` at export and refuses larger batches; a
        caller that picks its own batch (the simulator) caps it here instead of failing mid-run.
        """
        info = self.backends.get(backend)
        value = None if info is None else info.options.get("max_batch")
        return None if value is None else int(value)

    def lr_dropout_for(self, runtime: str) -> LrDropoutInfo | None:
        """The LR-dropout block (``None`` without one), if ``runtime`` can train it: a runtime not
        listed would train the bundle's optimizer *without* the mask, so it refuses the bundle."""
        if self.lr_dropout is not None and runtime not in self.lr_dropout.backends:
            raise ValidationError("lr_dropout", f"the bundle's LR dropout is built for "
                                                f"{list(self.lr_dropout.backends)}, not for the {runtime!r} "
                                                "runtime")
        return self.lr_dropout


# ---------------------------------------------------------------------------- files


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    digest, size, _ = _digest(path, 0)
    return digest, size


def _digest(path: str | os.PathLike[str], head: int) -> tuple[str, int, bytes]:
    """SHA-256 (hex), size and the first ``head`` bytes of a file, read in chunks."""
    h = hashlib.sha256()
    size, first = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if size < head:
                first += chunk[:head - size]
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size, first


def manifest_sha256(bundle_dir: str | os.PathLike[str]) -> str:
    """SHA-256 of ``manifest.json``'s bytes: the identity of a bundle."""
    return hashlib.sha256(_read_manifest_bytes(Path(bundle_dir))).hexdigest()


def _read_manifest_bytes(root: Path) -> bytes:
    path = root / MANIFEST
    try:
        if not root.is_dir():
            raise BundleError(str(root.name or root), "not a bundle directory")
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        raise BundleError(MANIFEST, "missing (or not a regular file)") from None
    except OSError as err:
        raise BundleError(str(root.name or root), f"cannot read the bundle ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(MANIFEST, "missing (or not a regular file)")
    if st.st_nlink != 1:
        raise BundleError(MANIFEST, f"has {st.st_nlink} hard links", "a file of the bundle alone")
    try:
        return read_bytes(path, MANIFEST, MAX_MANIFEST_BYTES)
    except ValidationError as err:
        raise BundleError(MANIFEST, err.problem, err.allowed) from None


def write_manifest(bundle_dir: str | os.PathLike[str], fields: Mapping[str, Any]) -> Manifest:
    """Hash every file of the bundle and write ``manifest.json`` (the last file written).

    ``fields`` are the other top-level blocks (``versions``, ``model``,
    ``optimizer``, ``backends``, ...). The manifest is validated as the readers
    will validate it before it is written; returns it.
    """
    root = Path(bundle_dir)
    files: dict[str, dict[str, Any]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name == MANIFEST:
            continue
        _check_name(entry.name)
        if not entry.is_file(follow_symlinks=False):
            raise BundleError(entry.name, "not a regular file", "regular files only")
        digest, size = file_digest(entry.path)
        files[entry.name] = {"sha256": digest, "size": size}
    raw = {"format": BUNDLE_FORMAT, "files": files, **{k: v for k, v in fields.items()
                                                       if k not in ("format", "files")}}
    manifest = Manifest.from_dict(json.loads(json.dumps(raw, allow_nan=False)))
    data = (json.dumps(raw, indent=2, sort_keys=False) + "\n").encode("utf-8")
    tmp = root / f".{MANIFEST}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / MANIFEST)
    return manifest


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not ALLOWED_FILE_PATTERN.fullmatch(name):
        raise BundleError(repr(name)[1:-1][:140], "not an allowed bundle file name",
                          "plain names ending in .onnx, .pte, .ptd, .json, or 'checkpoint'")


def _check_json(name: str, data: bytes) -> None:
    """A bundle's JSON file is data of its kind: well-formed within the bounds of every JSON file
    read (depth, size, duplicate keys), ``schedule.json`` a valid spec, ``labels.json`` a list of
    names. A re-hashed ``schedule.json`` of garbage verified, and failed only in ``simulate``."""
    try:
        _check_json_size(name, len(data))
        obj = parse_json(data, name)
        if name == "schedule.json":
            from mobile_lr.schedules import parse_spec

            parse_spec(obj)
        elif name == "labels.json":
            obj = get_object(obj, "")
            check_keys(obj, "", ("format", "names"), ("format", "names"))
            if obj["format"] != LABELS_FORMAT:
                raise ValidationError("format", f"unknown value {obj['format']!r}"[:200], LABELS_FORMAT)
            if not isinstance(obj["names"], list) or not all(isinstance(n, str) for n in obj["names"]):
                raise ValidationError("names", "expected a list of strings", "class names")
    except ValidationError as err:   # (the reader's own errors already name the file)
        if err.field == name:
            raise BundleError(name, err.problem, err.allowed) from None
        raise BundleError(name, str(err)) from None


def _check_json_size(name: str, size: int) -> None:
    """A bundle's JSON file is bounded like every JSON file read (checked on the manifest's size
    before the file is read, and on the bytes read)."""
    if size > MAX_JSON_BYTES:
        raise ValidationError(name, f"{size:,} bytes, over the JSON bound of 16 MiB", "at most 16 MiB")


def check_content(name: str, data: bytes, size: int | None = None) -> None:
    """Checks that a verified file is what its name claims, without running any engine: an ONNX
    model (:func:`~mobile_lr.onnx_wire.model_problem`) that refers to no data outside itself, a
    JSON file of its kind (:func:`_check_json`), a flatbuffer of its kind for the checkpoint and
    the ExecuTorch files (:func:`~mobile_lr.artifact_heads.head_problem`). ``data`` is the whole
    file, or for those flatbuffers at least its first :data:`HEAD_BYTES` of ``size`` bytes."""
    if name.endswith(".json"):
        _check_json(name, data)
    elif not name.endswith(".onnx"):
        problem = head_problem(name, data, len(data) if size is None else size)
        if problem:
            raise BundleError(name, problem, "the file the exporter wrote")
        return
    else:
        try:
            refs = external_data_refs(data)
        except WireError as err:
            raise BundleError(name, f"not a well-formed ONNX protobuf ({err})") from None
        if refs:
            raise BundleError(name, f"tensor(s) {', '.join(refs[:5])} refer to external data (a file outside "
                                    "the verified bundle)", "ONNX models with every tensor stored inside")
        problem = model_problem(data)
        if problem:
            raise BundleError(name, problem, "the ONNX model the exporter wrote")


def _parse_manifest(data: bytes) -> Manifest:
    try:
        obj = parse_json(data, MANIFEST)
    except ValidationError as err:
        raise BundleError(MANIFEST, err.problem, err.allowed) from None
    return Manifest.from_dict(obj)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its directory, manifest and identity (SHA-256 of the manifest's bytes)."""

    path: Path
    manifest: Manifest
    sha256: str

    def read_verified(self, name: str) -> bytes:
        """A file's bytes, re-checked against the manifest *after* reading (size, SHA-256, and the
        content checks of :func:`load_bundle`).

        Parsers given these bytes (rather than the path) see exactly what was
        verified, even if the file changed since :func:`load_bundle` ran.
        """
        entry = self.manifest.files.get(name)
        if entry is None:
            raise BundleError(name, "not listed in the manifest")
        try:
            data = read_bytes(self.path / name, name, entry.size)
        except ValidationError as err:
            raise BundleError(name, f"changed since the bundle was verified ({err.problem})") from None
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BundleError(name, "changed since the bundle was verified")
        check_content(name, data)
        return data


def verify_bundle(bundle_dir: str | os.PathLike[str], expected_sha256: str | None = None) -> Manifest:
    """Check every file of a bundle against its manifest; return the manifest.

    Raises :class:`BundleError` naming the first offending file. Nothing is
    parsed but the JSON files, the ONNX files' wire format and the flatbuffers'
    first bytes (:func:`check_content`); no engine runs.
    """
    return load_bundle(bundle_dir, expected_sha256).manifest


def _check_file(root: Path, name: str, entry: FileEntry) -> None:
    path = root / name
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError as err:
        raise BundleError(name, f"cannot read ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(name, "not a regular file (symlink or directory)")
    if st.st_nlink != 1:
        raise BundleError(name, f"has {st.st_nlink} hard links (it may be a file outside the bundle)",
                          "a file of the bundle alone")
    if st.st_size != entry.size:
        problem = "truncated" if st.st_size < entry.size else "longer than listed"
        raise BundleError(name, f"{problem}: {st.st_size} bytes, the manifest says {entry.size}")
    if name.endswith((".onnx", ".json")):   # read whole for the content check; the others streamed
        if name.endswith(".json"):
            try:
                _check_json_size(name, entry.size)
            except ValidationError as err:
                raise BundleError(name, err.problem, err.allowed) from None
        try:
            data = read_bytes(path, name, entry.size)
        except ValidationError as err:
            raise BundleError(name, err.problem, err.allowed) from None
        digest = hashlib.sha256(data).hexdigest()
    else:   # streamed: a model may be large; its head is what the content check reads
        try:
            digest, _, data = _digest(path, HEAD_BYTES)
        except OSError as err:
            raise BundleError(name, f"cannot read ({err.strerror})") from None
    if digest != entry.sha256:
        raise BundleError(name, f"SHA-256 does not match the manifest (file {digest[:16]}..., "
                                f"manifest {entry.sha256[:16]}...)")
    check_content(name, data, entry.size)


def load_bundle(bundle_dir: str | os.PathLike[str], expected_sha256: str | None = None) -> Bundle:
    """:func:`verify_bundle`, returning the manifest together with the bundle's identity."""
    if not isinstance(bundle_dir, str | os.PathLike):   # os.fspath's TypeError named no argument
        raise ValidationError("bundle_dir", f"expected a path, got {type(bundle_dir).__name__}",
                              "str or Path")
    if expected_sha256 is not None and not isinstance(expected_sha256, str):
        raise ValidationError("expected_sha256", f"expected a string, got {type(expected_sha256).__name__}",
                              "64 hex digits, as printed by mobile-lr export")
    root = Path(bundle_dir)
    data = _read_manifest_bytes(root)
    identity = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and identity != expected_sha256.lower():
        raise BundleError(MANIFEST, f"SHA-256 {identity} is not the expected bundle identity "
                                    f"{expected_sha256}"[:200])
    manifest = _parse_manifest(data)
    listed = manifest.files
    try:
        present = sorted(e.name for e in os.scandir(root) if e.name != MANIFEST)
    except OSError as err:
        raise BundleError(root.name, f"cannot list the bundle directory ({err.strerror})") from None
    for name in present:
        if name not in listed:
            raise BundleError(repr(name)[1:-1][:140], "extra file not listed in the manifest",
                              "only the files the manifest lists")
    for name, entry in sorted(listed.items()):
        if name not in present:
            raise BundleError(name, "missing from the bundle")
        _check_file(root, name, entry)
    return Bundle(root, manifest, identity)


# ---------------------------------------------------------------------------- replacing a bundle


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``, macOS
    ``renamex_np(RENAME_SWAP)``); False where the platform or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    src, dst = os.fsencode(a), os.fsencode(b)
    if hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        result = libc.renameat2(at_fdcwd, src, at_fdcwd, dst, rename_exchange)
    elif hasattr(libc, "renamex_np"):
        result = libc.renamex_np(src, dst, 2)  # RENAME_SWAP
    else:
        return False
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def check_replaceable(out: Path, force: bool) -> None:
    """Refuse an ``--out`` that is a file, non-empty without ``force``, or (with ``force``) not a
    bundle that verifies: ``--force`` replaces a bundle, never a directory that merely holds a
    file named ``manifest.json``."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise ValidationError("--out", f"{out.name} exists and is not a directory",
                              "a new or empty directory")
    if not any(out.iterdir()):
        return
    if not force:
        raise ValidationError("--out", f"{out.name} is not empty", "an empty or new directory, or --force")
    try:
        load_bundle(out)
    except BundleError as err:
        raise ValidationError("--out", f"{out.name} is not a bundle that verifies ({err}); refusing to "
                                       "replace it", "--force replaces only a verified bundle") from None


def replace_bundle(staging: Path, out: Path, force: bool) -> None:
    """Move the finished bundle ``staging`` to ``out``: a rename, or with ``force`` an atomic
    exchange with the bundle already there (then the old one is deleted). At every instant
    ``out`` holds the old bundle or the new one, whole."""
    check_replaceable(out, force)
    if not out.exists() or not any(out.iterdir()):
        os.replace(staging, out)
        return
    if _exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # staging now holds the old bundle
        return
    # No atomic exchange here: two renames (a kill between them leaves the old bundle at `old`).
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
