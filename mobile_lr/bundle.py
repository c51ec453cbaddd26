"""Bundle manifests: write them, and refuse a bundle whose files do not match.

A bundle is a flat directory downloaded to a phone: training artifacts, the
schedule, the policy, labels and ``manifest.json``. It must be verified like
any download *before* any of its files reaches a parser (ONNX protobuf, ORT's
flatbuffer checkpoint, the ExecuTorch program): a corrupted or tampered file
is a crash or worse in native code. So :func:`verify_bundle` checks, with the
standard library only (``hashlib``, ``json``):

* ``manifest.json`` is valid JSON with ``"format": "mobile-lr.bundle/1"``;
* every file it lists is present, a regular file (no symlink), of the listed
  size and SHA-256 (size first: a truncated file is named as truncated);
* there is no other file or directory (an extra file is refused, whatever it is);
* file names are plain names of an allowed kind (no path, no hidden file and no
  pickle-capable format: nothing in a bundle is ever loaded with ``pickle`` or
  ``torch.load``).

The manifest itself is covered by its own SHA-256, :func:`manifest_sha256`:
the bundle's identity. Checkpoints record it (a checkpoint of another bundle is
refused) and a phone that got the identity from a trusted channel passes it as
``expected_sha256``, which also catches a manifest edited to match changed
files (integrity alone cannot: whoever can edit the files can edit the list).

No torch/onnx import here, so a phone-side loader can use this module alone.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "labels.json").write_text('{"names": ["a", "b"]}')
>>> m = write_manifest(d, {"model": {"recipe": "demo"}})
>>> sorted(verify_bundle(d)["files"])
['labels.json']
>>> _ = (d / "labels.json").write_text('{"names": ["a", "c"]}')
>>> verify_bundle(d)
Traceback (most recent call last):
...
mobile_lr.bundle.BundleError: labels.json: SHA-256 does not match the manifest ...
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobile_lr.validation import ValidationError

__all__ = [
    "ALLOWED_FILE_PATTERN",
    "BUNDLE_FORMAT",
    "MANIFEST",
    "Bundle",
    "BundleError",
    "file_digest",
    "load_bundle",
    "manifest_sha256",
    "verify_bundle",
    "write_manifest",
]

BUNDLE_FORMAT = "mobile-lr.bundle/1"
MANIFEST = "manifest.json"
# Kinds of file a bundle may hold: ONNX models, the ORT checkpoint (a flatbuffer),
# ExecuTorch programs and data, JSON. Nothing pickle-based (.pt, .pth, .pkl, .bin, .npy).
ALLOWED_FILE_PATTERN = re.compile(r"^(?!\.)[A-Za-z0-9_.-]{1,128}\.(onnx|pte|ptd|json)$|^checkpoint$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class BundleError(ValidationError):
    """A bundle (or one of its files) does not match its manifest; ``field`` names the file."""

    def __init__(self, file: str, problem: str, allowed: str | None = None):
        super().__init__(file, problem, allowed)
        self.file = file


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def manifest_sha256(bundle_dir: str | os.PathLike[str]) -> str:
    """SHA-256 of ``manifest.json``'s bytes: the identity of a bundle."""
    return hashlib.sha256(_read_manifest_bytes(Path(bundle_dir))).hexdigest()


def _read_manifest_bytes(root: Path) -> bytes:
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(str(root.name or root), "not a bundle directory")
    if path.is_symlink() or not path.is_file():
        raise BundleError(MANIFEST, "missing (or not a regular file)")
    return path.read_bytes()


def write_manifest(bundle_dir: str | os.PathLike[str], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Hash every file of the bundle and write ``manifest.json`` (the last file written).

    ``fields`` are the other top-level blocks (``versions``, ``model``,
    ``optimizer``, ``backends``, ...). Returns the manifest written.
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
    manifest = {"format": BUNDLE_FORMAT, "files": files, **{k: v for k, v in fields.items()
                                                            if k not in ("format", "files")}}
    data = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("utf-8")
    tmp = root / f".{MANIFEST}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / MANIFEST)
    return manifest


def _check_name(name: str) -> None:
    if not ALLOWED_FILE_PATTERN.match(name):
        raise BundleError(name, "not an allowed bundle file name",
                          "plain names ending in .onnx, .pte, .ptd, .json, or 'checkpoint'")


def _parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(MANIFEST, f"not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise BundleError(MANIFEST, "expected a JSON object")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{MANIFEST}: format", f"unknown format {manifest.get('format')!r}", BUNDLE_FORMAT)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{MANIFEST}: files", "missing or not an object")
    for name, entry in files.items():
        _check_name(name)
        if name == MANIFEST:
            raise BundleError(name, "the manifest cannot list itself")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not _HEX64.match(entry["sha256"]) or isinstance(entry.get("size"), bool) \
                or not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise BundleError(f"{MANIFEST}: files.{name}", "bad entry",
                              '{"sha256": "<64 lowercase hex digits>", "size": <bytes >= 0>}')
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its directory, manifest and identity (SHA-256 of the manifest's bytes)."""

    path: Path
    manifest: dict[str, Any]
    sha256: str

    def read_verified(self, name: str) -> bytes:
        """A file's bytes, re-checked against the manifest *after* reading.

        Parsers given these bytes (rather than the path) see exactly what was
        verified, even if the file changed since :func:`load_bundle` ran.
        """
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise BundleError(name, "not listed in the manifest")
        data = (self.path / name).read_bytes()
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleError(name, "changed since the bundle was verified")
        return data


def verify_bundle(bundle_dir: str | os.PathLike[str], expected_sha256: str | None = None) -> dict[str, Any]:
    """Check every file of a bundle against its manifest; return the manifest.

    Raises :class:`BundleError` naming the first offending file. Nothing but the
    bytes of the files is read: no file is parsed except the manifest's JSON.
    """
    return load_bundle(bundle_dir, expected_sha256).manifest


def load_bundle(bundle_dir: str | os.PathLike[str], expected_sha256: str | None = None) -> Bundle:
    """:func:`verify_bundle`, returning the manifest together with the bundle's identity."""
    root = Path(bundle_dir)
    data = _read_manifest_bytes(root)
    identity = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and identity != expected_sha256.lower():
        raise BundleError(MANIFEST, f"SHA-256 {identity} is not the expected bundle identity "
                                    f"{expected_sha256}")
    manifest = _parse_manifest(data)
    listed = manifest["files"]
    present = {e.name: e for e in os.scandir(root) if e.name != MANIFEST}
    for name in sorted(present):
        if name not in listed:
            raise BundleError(name, "extra file not listed in the manifest",
                              "only the files the manifest lists")
    for name, entry in sorted(listed.items()):
        if name not in present:
            raise BundleError(name, "missing from the bundle")
        st = os.stat(present[name].path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(name, "not a regular file (symlink or directory)")
        if st.st_size != entry["size"]:
            problem = "truncated" if st.st_size < entry["size"] else "longer than listed"
            raise BundleError(name, f"{problem}: {st.st_size} bytes, the manifest says {entry['size']}")
        digest, _ = file_digest(present[name].path)
        if digest != entry["sha256"]:
            raise BundleError(name, f"SHA-256 does not match the manifest (file {digest[:16]}..., "
                                    f"manifest {entry['sha256'][:16]}...)")
    return Bundle(root, manifest, identity)
