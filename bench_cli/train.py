"""`bench train`: the AIGI-mini weights of the CNN detectors (detectors.mini), each with its recipe."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench_cli.args import Command, count, echo, torch_device
from detectors.mini import MINI_RECIPES  # a plain table: no torch at start-up


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("detector", choices=list(MINI_RECIPES),
                   help="what to train: a base detector, or a Stay-Positive head refit (-plus) of the base in --out")
    p.add_argument("--data", type=Path, help="a folder laid out like AIGI-mini (train/real, train/fake, train/recon, "
                   "val/...); default: the AIGI-mini world")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("results/weights"), help="folder for <detector>.mini.safetensors (default: %(default)s)")
    p.add_argument("--max-epochs", type=count(1), help="cap on epochs (CPU budget)")
    p.add_argument("--steps-per-epoch", type=count(1), help="cap on steps per epoch")
    p.add_argument("--device", type=torch_device, default="cpu")
    p.add_argument("--seed", type=int, default=0)


def _train(args: argparse.Namespace) -> int:
    from detectors.mini import mini_config, train_mini
    from suites.mini.layout import WorldLayout
    from suites.mini.world import ensure_world

    overrides: dict[str, Any] = {"device": args.device, "seed": args.seed}
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.steps_per_epoch is not None:
        overrides["steps_per_epoch"] = args.steps_per_epoch
    data = WorldLayout(args.data or ensure_world()).training_data(paired=MINI_RECIPES[args.detector].paired)
    args.out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    summary = args.out / f"{args.detector}.train.json"
    path = train_mini(args.detector, data, args.out, mini_config(args.detector, **overrides), summary_path=summary)
    echo(f"weights: {path} ({time.perf_counter() - t:.0f} s); history: {summary}")
    return 0


COMMAND = Command("train", "train a detector's AIGI-mini weights with its recipe, or refit a Stay-Positive head", _add_train, _train)
