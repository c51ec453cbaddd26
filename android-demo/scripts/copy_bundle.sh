#!/usr/bin/env bash
# Copy an exported bundle into the app's assets (the app verifies it again on the phone).
#
#   mobile-lr export digits-mlp --out /some/dir          # make a bundle
#   android-demo/scripts/copy_bundle.sh /some/dir [--profile NAME|FILE ...] [--policy FILE] [--python PY]
#
# What it does:
#   1. verifies the bundle with the Python reference (mobile_lr.bundle.verify_bundle: every file's SHA-256
#      and size against manifest.json), and refuses one without the ORT training artifacts;
#   2. replaces app/src/main/assets/bundle/ with the bundle's files (a fresh directory, so no
#      stale file survives: the app refuses a bundle with a file the manifest does not list);
#   3. copies the device profiles (default: the three built-in ones from mobile_lr/data/profiles)
#      to app/src/main/assets/profiles/, and the policy file, if given, to assets/policy.json.
# Then rebuild the app in Android Studio (or `gradle :app:assembleDebug`).
set -euo pipefail

usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
SRC=$1; shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$HERE/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
PROFILES=()
POLICY=""
while [ $# -gt 0 ]; do
    case $1 in
        --profile) PROFILES+=("$2"); shift 2 ;;
        --policy) POLICY=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        *) usage ;;
    esac
done
[ -f "$SRC/manifest.json" ] || { echo "copy_bundle: $SRC/manifest.json not found (not a bundle)" >&2; exit 2; }
for f in training_model.onnx eval_model.onnx optimizer_model.onnx checkpoint inference_model.onnx \
         schedule.json labels.json; do
    [ -f "$SRC/$f" ] || { echo "copy_bundle: $SRC has no $f (export with the ort backend)" >&2; exit 2; }
done
if ! err=$(cd "$REPO" && "$PY" -c 'import sys; from mobile_lr.bundle import verify_bundle; verify_bundle(sys.argv[1])' \
             "$SRC" 2>&1); then
    echo "copy_bundle: $SRC does not match its manifest (re-export it): ${err##*$'\n'}" >&2
    exit 2
fi

ASSETS="$HERE/app/src/main/assets"
mkdir -p "$ASSETS"
rm -rf "$ASSETS/bundle.new"
mkdir "$ASSETS/bundle.new"
# only the files the manifest lists (plus the manifest), nothing else from the directory
"$PY" - "$SRC" "$ASSETS/bundle.new" <<'PYEOF'
import json, shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
names = list(json.loads((src / "manifest.json").read_text(encoding="utf-8"))["files"]) + ["manifest.json"]
for name in names:
    shutil.copyfile(src / name, dst / name)
PYEOF
rm -rf "$ASSETS/bundle"
mv "$ASSETS/bundle.new" "$ASSETS/bundle"

mkdir -p "$ASSETS/profiles"
if [ ${#PROFILES[@]} -eq 0 ]; then
    cp "$REPO"/mobile_lr/data/profiles/*.json "$ASSETS/profiles/"
else
    for p in "${PROFILES[@]}"; do
        if [ -f "$p" ]; then cp "$p" "$ASSETS/profiles/"; else cp "$REPO/mobile_lr/data/profiles/$p.json" "$ASSETS/profiles/"; fi
    done
fi
if [ -n "$POLICY" ]; then cp "$POLICY" "$ASSETS/policy.json"; fi
echo "copy_bundle: $(ls "$ASSETS/bundle" | wc -l) files in app/src/main/assets/bundle," \
     "$(ls "$ASSETS/profiles" | wc -l) profiles; identity $(sha256sum "$ASSETS/bundle/manifest.json" | cut -d' ' -f1)"
