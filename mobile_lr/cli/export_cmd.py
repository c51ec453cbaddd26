"""``mobile-lr export`` and ``mobile-lr verify``: make a training bundle, check one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mobile_lr.bundle import Manifest, load_bundle
from mobile_lr.cli.output import print_json, seed
from mobile_lr.validation import check_int, check_number

EXIT_UNSUPPORTED = 1
MAX_PRETRAIN_EPOCHS = 1000  # a recipe pre-trains in 10-30 epochs; the bound keeps an export finite
LRD_CHOICES = ("recipe", "sgd-lrd", "adamw-lrd")


def _backends(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in ("ort", "executorch")]
    if not parts or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of ort, executorch; got {text!r}")
    return parts


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (``width=0.5``, ``se=true``); a bare word is a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export", help="export a model recipe to a training bundle",
        description="Export a model recipe (a built-in name such as digits-mlp, digits-cnn, or "
                    "package.module:function returning a mobile_lr.recipes.Recipe) to a bundle "
                    "directory: ONNX Runtime Training artifacts, an ExecuTorch training program, "
                    "the schedule, the policy, labels and a manifest with SHA-256 of every file. "
                    "Every backend is proven before it is written as ok: the bundle is opened with "
                    "that engine, its evaluation loss checked against PyTorch eager and one "
                    "training step run. Exit status 1 if a requested backend cannot represent or "
                    "train the model (the reason is printed and recorded in the manifest).")
    ex.add_argument("recipe", help="built-in recipe name (digits-mlp, digits-cnn, the zoo's mobilenetv2, "
                                   "ds-cnn, text-transformer, gru-sensor, lstm-sensor) or "
                                   "package.module:function")
    ex.add_argument("--mode", help="fine-tuning mode of a zoo recipe: head, last-k, bias+head or lora "
                                   "(docs/ZOO.md says which engines train which)")
    ex.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the recipe function, repeatable, the value as JSON: e.g. "
                         "width=0.5, k=3 (last-k blocks), rank=8 (LoRA), batch_size=16")
    ex.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    ex.add_argument("--backend", type=_backends, default=None, metavar="LIST",
                    help="comma-separated backends (default: ort,executorch; ort with an LR-dropout "
                         "optimizer)")
    ex.add_argument("--schedule", type=Path, help="schedule spec JSON (default: cosine with warm-up)")
    ex.add_argument("--policy", type=Path, help="device policy JSON (battery floor, thermal limit, ...)")
    ex.add_argument("--pretrain-epochs", type=int, default=0, metavar="N",
                    help="first pre-train every parameter for N epochs on the recipe's own data "
                         "(digits recipes: the general population)")
    ex.add_argument("--optimizer", choices=LRD_CHOICES, default="recipe",
                    help="recipe: the recipe's own optimizer (default); sgd-lrd / adamw-lrd: that "
                         "optimizer with learning-rate dropout in the ORT optimizer graph (ORT only; "
                         "the recipe's hyper-parameters if it uses the same optimizer, else SGD "
                         "momentum 0.9 / AdamW defaults; see docs/LR_DROPOUT.md)")
    ex.add_argument("--lr-dropout-keep", type=float, metavar="P",
                    help="keep probability of each coordinate's learning rate per step, in [0, 1] "
                         "(required with --optimizer sgd-lrd|adamw-lrd; the paper's default is 0.5)")
    ex.add_argument("--lr-dropout-seed", type=seed, metavar="S",
                    help="seed of the counter-hash masks, 0 <= S < 2**32 (default 0)")
    ex.add_argument("--batchnorm", choices=("frozen", "train"), default="frozen",
                    help="frozen (default): batch norm uses its running statistics in training and "
                         "evaluation and never updates them (weight and bias train where listed); "
                         "train: training steps update the statistics, on the engines that can "
                         "(the others are reported unsupported, naming the modules)")
    ex.add_argument("--max-batch", type=int, default=None, metavar="N",
                    help="largest training batch the ExecuTorch program takes (default: the recipe's "
                         "batch, 32 for the built-in recipes); ExecuTorch plans a step's memory at "
                         "this batch, so it grows in proportion; a larger batch is refused at the "
                         "step. ONNX Runtime takes any batch")
    ex.add_argument("--force", action="store_true", help="replace an existing bundle in --out")
    ex.add_argument("--json", action="store_true", help="print the manifest as JSON")
    ex.set_defaults(func=cmd_export)

    ve = sub.add_parser(
        "verify", help="check a bundle against its manifest",
        description="Check that every file of a bundle matches manifest.json (present, size, "
                    "SHA-256, no extra file) without parsing any of them. Exit status 2 names the "
                    "first file that does not match.")
    ve.add_argument("bundle", type=Path, help="bundle directory")
    ve.add_argument("--sha256", help="expected bundle identity (SHA-256 of manifest.json), "
                                     "as printed by mobile-lr export")
    ve.add_argument("--json", action="store_true", help="print {ok, bundle_sha256, files, backends}")
    ve.set_defaults(func=cmd_verify)


def _summary(manifest: Manifest, identity: str) -> dict[str, Any]:
    return {"ok": True, "bundle_sha256": identity, "files": len(manifest.files),
            "recipe": manifest.model.recipe,
            "backends": {k: v.status for k, v in manifest.backends.items()},
            "lr_dropout": None if manifest.lr_dropout is None else manifest.lr_dropout.to_dict()}


def _lrd_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--optimizer``/``--lr-dropout-*`` checked together: None for the recipe's optimizer."""
    if args.optimizer == "recipe":
        for flag, value in (("--lr-dropout-keep", args.lr_dropout_keep),
                            ("--lr-dropout-seed", args.lr_dropout_seed)):
            if value is not None:
                raise ValueError(f"{flag}: only with --optimizer sgd-lrd or adamw-lrd")
        return None
    if args.lr_dropout_keep is None:
        raise ValueError(f"--lr-dropout-keep: required with --optimizer {args.optimizer}; "
                         "allowed: 0 <= P <= 1")
    if args.max_batch is not None:
        raise ValueError("--max-batch: sizes the ExecuTorch program; LR dropout is built for ONNX Runtime "
                         "Training only, which takes any batch; allowed: no --max-batch with "
                         f"--optimizer {args.optimizer}")
    if args.backend not in (None, ["ort"]):
        raise ValueError(f"--backend: {','.join(args.backend)}: LR dropout is built for ONNX Runtime "
                         "Training only; allowed: ort")
    # the range here, not first in the block builder: that ran after the pre-training
    check_number(args.lr_dropout_keep, "--lr-dropout-keep", lo=0.0, hi=1.0)
    return {"kind": args.optimizer, "keep": args.lr_dropout_keep,
            "seed": 0 if args.lr_dropout_seed is None else args.lr_dropout_seed}


def cmd_export(args: argparse.Namespace) -> int:
    from mobile_lr.export import export_bundle
    from mobile_lr.export.pipeline import check_max_batch
    from mobile_lr.recipes import load_recipe, pretrain

    # every flag before the pre-training (10^9 epochs was accepted: an export that never ends)
    check_int(args.pretrain_epochs, "--pretrain-epochs", lo=0, hi=MAX_PRETRAIN_EPOCHS)
    lrd = _lrd_options(args)
    options = dict(args.option)
    if args.mode is not None:
        options["mode"] = args.mode
    recipe = load_recipe(args.recipe, **options)
    check_max_batch(recipe, args.max_batch, "--max-batch")
    if args.pretrain_epochs:
        stats = pretrain(recipe, epochs=args.pretrain_epochs)
        print(f"pre-trained {args.pretrain_epochs} epochs: loss {stats['loss']:.4f}, "
              f"train accuracy {stats['accuracy']:.3f}", file=sys.stderr)
    options: dict[str, Any] = {"schedule": args.schedule, "policy": args.policy, "force": args.force,
                               "batchnorm": args.batchnorm,
                               "log": lambda msg: print(msg, file=sys.stderr)}
    if lrd is None:
        manifest = export_bundle(recipe, args.out, backends=args.backend or ["ort", "executorch"],
                                 max_batch=args.max_batch, **options)
    else:
        from mobile_lr.export.lr_dropout_block import export_lrd_bundle

        manifest = export_lrd_bundle(recipe, args.out, **lrd, **options)
    identity = load_bundle(args.out).sha256
    unsupported = {k: v.reason for k, v in manifest.backends.items() if v.status != "ok"}
    if args.json:
        print_json({"bundle_sha256": identity, "manifest": manifest.to_dict()}, indent=2)
    else:
        model = manifest.raw["model"]
        print(f"bundle {args.out}  ({len(manifest.files)} files, identity {identity})")
        mode = f" (mode {recipe.mode})" if recipe.mode else ""
        print(f"  model {model['recipe']}{mode}: {model['params_trainable']} trainable + "
              f"{model['params_frozen']} frozen parameters, {model['flops_per_step']:,} FLOPs per "
              f"training step at batch {model['flops_batch']} ({model['flops_forward']:,} forward + "
              f"{model['flops_backward']:,} backward)")
        for name, info in manifest.backends.items():
            files = ", ".join(info.files)
            print(f"  {name}: {info.status}" + (f" ({files})" if info.status == "ok" else ""))
        if manifest.lr_dropout is not None:
            lrd = manifest.lr_dropout
            print(f"  LR dropout: {lrd.kind}, keep {lrd.keep}, seed {lrd.seed} "
                  f"({lrd.rule} rule, {lrd.mask} masks; optimizer {manifest.optimizer.to_dict()})")
    for name, reason in unsupported.items():
        print(f"mobile-lr export: {name} backend not exported: {reason}", file=sys.stderr)
    return EXIT_UNSUPPORTED if unsupported else 0


def cmd_verify(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle, args.sha256)  # a BundleError: exit 2, {"ok": false, ...} under --json
    summary = _summary(bundle.manifest, bundle.sha256)
    if args.json:
        print_json(summary)
    else:
        print(f"ok: {args.bundle} matches its manifest ({summary['files']} files, identity {bundle.sha256})")
        if summary["lr_dropout"]:
            lrd = summary["lr_dropout"]
            print(f"  LR dropout: {lrd.get('kind')}, keep {lrd.get('keep')}, seed {lrd.get('seed')}")
    return 0
