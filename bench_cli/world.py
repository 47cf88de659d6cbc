"""`bench world build | train-generators`: the AIGI-mini world (suites.mini)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.api import BenchError
from bench_cli.args import Command, count, csv_list, echo


def _add_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", type=Path, help="where to build (default: $AIGI_BENCH_HOME/worlds/mini-v2-seed<seed>)")
    p.add_argument("--reduced", action="store_true", help="the small configuration used by tests")
    p.add_argument("--generators-dir", type=Path, help="generator weights to use (default: the bundled ones)")
    p.add_argument("--force", action="store_true", help="rebuild even if a current world exists")


def _build(args: argparse.Namespace) -> int:
    from suites.mini import world

    config = world.WorldConfig.reduced() if args.reduced else None
    t = time.perf_counter()
    if args.force:
        root = args.root or world.default_root(args.seed)
        path = world.build_world(root, seed=args.seed, config=config, generators_dir=args.generators_dir)
    else:
        path = world.ensure_world(seed=args.seed, root=args.root, config=config, generators_dir=args.generators_dir)
    problems = world.verify_world(path)
    if problems:
        again = " ".join(["bench world build --force", *(["--root", str(args.root)] if args.root else []),
                          *(["--seed", str(args.seed)] if args.seed else []), *(["--reduced"] if args.reduced else []),
                          *(["--generators-dir", str(args.generators_dir)] if args.generators_dir else [])])
        raise BenchError(f"world at {path} does not match its manifest: {'; '.join(problems[:5])}; rebuild it with `{again}`")
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    echo(f"world: {path} ({size / 2**20:.1f} MiB, verified, {time.perf_counter() - t:.1f} s)")
    return 0


def _add_train_generators(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results/generators"),
                   help="output folder (default: %(default)s; the bundled weights are never overwritten unless named here); "
                   "build a world from it with `bench world build --generators-dir DIR --root NEWDIR`")
    p.add_argument("--steps", type=count(1), help="Adam steps per generator (default: each config's full count)")
    p.add_argument("--names", type=csv_list, help="only these generators")
    p.add_argument("--workers", type=count(1), help="parallel training processes")
    p.add_argument("--seed", type=int, default=0)


def _train_generators(args: argparse.Namespace) -> int:
    from suites.mini import generators

    generators.train_generators(args.out, steps=args.steps, names=args.names, seed=args.seed, workers=args.workers)
    return 0


COMMAND = Command("world", "build the AIGI-mini world or retrain its generators", subcommands=(
    Command("build", "build (or verify) the AIGI-mini world; also happens on first use", _add_build, _build),
    Command("train-generators", "retrain the AIGI-mini generators from scratch (fixed seeds)", _add_train_generators,
            _train_generators),
))
