"""`bench reproduce`: every bundled weight from scratch (generators, world, detectors, DEAR)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_cli.args import Command, echo


def _add_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results/reproduce"), help="where everything is written (default: %(default)s)")
    scale = p.add_mutually_exclusive_group()  # smoke-test weights must never replace the bundled ones
    scale.add_argument("--reduced", action="store_true", help="a minute-long smoke version (CI): few steps, reduced world")
    scale.add_argument("--install", action="store_true", help="copy the results over the bundled weights of this checkout")


def _reproduce(args: argparse.Namespace) -> int:
    """generators -> world -> detectors -> Stay-Positive -> DEAR, each timed."""
    import shutil

    from dear.pipeline import MINI_RECIPES as DEAR_RECIPES, build_mini
    from detectors.mini import MINI_RECIPES, bundled_weights_dir as detector_weights, mini_config, train_mini
    from suites.mini import generators, world
    from suites.mini.layout import WorldLayout

    out = args.out
    gens, dets = out / "generators", out / "detectors"
    times: dict[str, float] = {}
    t = time.perf_counter()
    generators.train_generators(gens, steps=20 if args.reduced else None)
    times["generators"] = time.perf_counter() - t
    t = time.perf_counter()
    root = world.build_world(out / "world", seed=0, config=world.WorldConfig.reduced() if args.reduced else None,
                             generators_dir=gens)
    times["world"] = time.perf_counter() - t
    fast = {"max_epochs": 1, "steps_per_epoch": 2} if args.reduced else {}
    for name, recipe in MINI_RECIPES.items():
        t = time.perf_counter()
        data = WorldLayout(root).training_data(paired=recipe.paired)
        train_mini(name, data, dets, mini_config(name, **fast), summary_path=dets / f"{name}.train.json")
        times[name] = time.perf_counter() - t
    unlearned = []  # DEAR heads that never beat the zero head: written, never installed (as build_mini)
    for name, kind in DEAR_RECIPES.items():
        t = time.perf_counter()
        res = build_mini(name, out, world=root, base=dets / f"{kind}.mini.safetensors", install=False,
                         **({"max_batches": 2, "max_epochs": 1, "steps_per_epoch": 2} if args.reduced else {}))
        shutil.copy(res.checkpoint, dets / res.checkpoint.name)
        if not res.head_learned:
            unlearned.append(res.checkpoint.name)
        times[name] = time.perf_counter() - t
    (out / "times.json").write_text(json.dumps({k: round(v, 1) for k, v in times.items()}, indent=1))
    echo(json.dumps({k: round(v, 1) for k, v in times.items()}, indent=1))
    if args.install:
        from dear.pipeline import bundled_weights_dir as dear_weights

        targets = {"generators": generators.bundled_weights_dir(), "detectors": detector_weights(), "dear": dear_weights()}
        for f in gens.glob("*.safetensors"):
            shutil.copy(f, targets["generators"] / f.name)
        for f in dets.glob("*.mini.*"):
            if f.name not in unlearned:
                shutil.copy(f, targets["dear" if f.suffix == ".pth" else "detectors"] / f.name)
        echo(f"installed into {', '.join(str(v) for v in targets.values())}")
        if unlearned:
            echo(f"not installed (the refit never beat the zero head): {', '.join(unlearned)}")
    return 0


COMMAND = Command("reproduce", "retrain every bundled weight from scratch (generators, world, detectors, DEAR)",
                  _add_reproduce, _reproduce)
