"""`bench world`, `bench train`, `bench dear`, `bench analyze`, `bench reproduce`: the methods'
faces. Each handler is a thin call into `suites/`, `detectors/` or `dear/`; the work lives there.
(The core's `bench/cli.py` holds the benchmark commands; this module is the wiring of the parts
the core must not know, kept apart so the core stays importable on its own.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.api import BenchError
from bench.cli_args import Command, count, csv_list, echo, positive, torch_device
from detectors import MINI_DETECTORS  # a constant: no torch at start-up

# --------------------------------------------------------------------------- world


def _add_world(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build (or verify) the AIGI-mini world; also happens on first use")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--root", type=Path, help="where to build (default: $AIGI_BENCH_HOME/worlds/mini-v1-seed<seed>)")
    b.add_argument("--reduced", action="store_true", help="the small configuration used by tests")
    b.add_argument("--generators-dir", type=Path, help="generator weights to use (default: the bundled ones)")
    b.add_argument("--force", action="store_true", help="rebuild even if a current world exists")
    g = sub.add_parser("train-generators", help="retrain the AIGI-mini generators from scratch (fixed seeds)")
    g.add_argument("--out", type=Path, default=Path("results/generators"),
                   help="output folder (default: %(default)s; the bundled weights are never overwritten unless named here); "
                   "build a world from it with `bench world build --generators-dir DIR --root NEWDIR`")
    g.add_argument("--steps", type=count(1), help="Adam steps per generator (default: each config's full count)")
    g.add_argument("--names", type=csv_list, help="only these generators")
    g.add_argument("--workers", type=count(1), help="parallel training processes")
    g.add_argument("--seed", type=int, default=0)


def _cmd_world(args: argparse.Namespace) -> int:
    from suites.mini import generators, world

    if args.world_command == "train-generators":
        generators.train_generators(args.out, steps=args.steps, names=args.names, seed=args.seed, workers=args.workers)
        return 0
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


# --------------------------------------------------------------------------- train


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("detector", choices=MINI_DETECTORS,
                   help="what to train: a base detector, or a Stay-Positive head refit (-plus) of the base in --out")
    p.add_argument("--data", type=Path, help="a folder laid out like AIGI-mini (train/real, train/fake, train/recon, "
                   "val/...); default: the AIGI-mini world")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("results/weights"), help="folder for <detector>.mini.safetensors (default: %(default)s)")
    p.add_argument("--max-epochs", type=count(1), help="cap on epochs (CPU budget)")
    p.add_argument("--steps-per-epoch", type=count(1), help="cap on steps per epoch")
    p.add_argument("--device", type=torch_device, default="cpu")
    p.add_argument("--seed", type=int, default=0)


def _cmd_train(args: argparse.Namespace) -> int:
    from detectors.training import mini_config, train_mini
    from suites.mini.world import ensure_world

    overrides: dict[str, Any] = {"device": args.device, "seed": args.seed}
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.steps_per_epoch is not None:
        overrides["steps_per_epoch"] = args.steps_per_epoch
    data = args.data or ensure_world()
    args.out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    path = train_mini(args.detector, data, args.out, mini_config(args.detector, **overrides),
                      summary_path=args.out / f"{args.detector}.train.json")
    echo(f"weights: {path} ({time.perf_counter() - t:.0f} s); history: {args.out / (args.detector + '.train.json')}")
    return 0


# --------------------------------------------------------------------------- dear


def _add_dear(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dear_command", metavar="STAGE", required=True)

    # Each stage takes only the options it reads: dissect has no alpha, refine prunes nothing.
    def model_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--base", default="corvi.mini", help="base detector (corvi.*, rajan.*; dissect takes any CNN detector) or checkpoint file")
        q.add_argument("--kind", choices=["corvi", "rajan"], help="how a checkpoint-file base was trained")
        q.add_argument("--out", type=Path, default=Path("results/dear"), help="output folder (default: %(default)s)")
        q.add_argument("--world", type=Path, help="AIGI-mini world (default: the seed-0 world)")
        q.add_argument("--device", type=torch_device, default="cpu")
        q.add_argument("--workers", type=count(0), default=0,
                       help="DataLoader worker processes (default 0; other counts draw other augmentations)")
        q.add_argument("--seed", type=int, default=0)

    def rad_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--max-batches", type=count(1), default=100, help="RAD batches of 64 (default 100)")

    def prune_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--alpha", type=float, help="fraction pruned at each end (default: 0.2 Corvi, 0.3 Rajan)")
        q.add_argument("--mode", choices=["count", "percentile"], default="count",
                       help="count: official code (int(C*alpha) per end); percentile: the paper's Algorithm 1")

    def refit_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--max-epochs", type=count(0), help="refit epochs at most (default: 1000; 0 keeps the zero head)")
        q.add_argument("--lr", type=positive, help="refit learning rate (default: the official 1e-4; the bundled .mini weights use 1e-2)")
        q.add_argument("--steps-per-epoch", type=count(1), help="refit steps between validations (default: one pass over the data)")
        q.add_argument("--bn-drift", action="store_true", help="let BN statistics drift during the refit, as the official code does")

    run = sub.add_parser("run", help="all stages: dissect -> prune -> refine -> checkpoint (timed)")
    for options in (model_options, rad_options, prune_options, refit_options):
        options(run)
    run.add_argument("--inpainter", choices=["mini", "sd"], help="rebuild the diagnostic set with this inpainter "
                     "(default: use the world's diag/ set)")  # fmt: skip
    run.add_argument("--diag-limit", type=count(1), help="inpaint only the first N training reals")
    d = sub.add_parser("diagnose", help="inpaint one rectangle per real image (images/ + masks/)")
    d.add_argument("images", type=Path, help="folder of real images")
    d.add_argument("--out", type=Path, default=Path("results/dear/diag"), help="output folder (default: %(default)s)")
    d.add_argument("--inpainter", choices=["mini", "sd"], default="mini",
                   help="mini: AIGI-mini's training generator (offline); sd: Stable Diffusion 1.5 inpainting (diffusers)")
    d.add_argument("--limit", type=count(1), help="inpaint only the first N images")
    d.add_argument("--seed", type=int, default=0, help="seeds each image's mask and inpainting (default: 0)")
    q = sub.add_parser("dissect", help="RAD per channel of layer4 on a diagnostic set")
    model_options(q)
    rad_options(q)
    q.add_argument("--diag", type=Path, help="diagnostic set: images/ + masks/, or DEAR's released data/train/fake "
                   "(lsun_inpaint_sd/ + lsun_inpaint_mask/) (default: <world>/diag)")
    q.add_argument("--layer", default="layer4", help="module whose output is dissected (default: layer4, the last conv stage)")
    q = sub.add_parser("prune", help="bilateral 0/1 gate from a RAD vector")
    q.add_argument("--rad", type=Path, required=True, help="RAD file of `bench dear dissect`")
    q.add_argument("--kind", choices=["corvi", "rajan"], help="whose default alpha to use (default: from the detector recorded in the RAD file)")
    q.add_argument("--out", type=Path, default=Path("results/dear"), help="output folder (default: %(default)s)")
    prune_options(q)
    q = sub.add_parser("refine", help="refit the head under a gate (backbone frozen)")
    model_options(q)
    refit_options(q)
    q.add_argument("--gate", type=Path, required=True, help="gate file of `bench dear prune`")
    a = sub.add_parser("analyze", help="the paper's analyses: robustness (Fig. 4), maps (Fig. 3), alpha (sensitivity to "
                       "alpha in 0.05, 0.1, 0.2, 0.3; --alpha is not used), ablation (Fig. 8: trains the base --kind from scratch "
                       "with the inpainted images as extra fakes; --max-epochs, --steps-per-epoch and --lr set that training, "
                       "which otherwise follows the bundled weights' recipe); "
                       "probe: converged linear heads with and without the inpainted stream")
    a.add_argument("analysis", choices=["robustness", "maps", "alpha", "ablation", "probe"])
    for options in (model_options, rad_options, prune_options, refit_options):
        options(a)
    a.add_argument("--rad", type=Path, help="a saved RAD vector (default: computed)")
    a.add_argument("--gate", type=Path, help="probe: a saved gate (default: pruned from the RAD vector)")
    a.add_argument("--reduce", choices=["spatial", "pooled"], default="spatial",
                   help="robustness: per-channel MSE over feature-map positions (default) or of the pooled means the head sees")


def _dear_config(args: argparse.Namespace, kind: str) -> Any:
    from dear.pipeline import DearConfig

    make = DearConfig.dear_r if kind == "rajan" else DearConfig.dear_c
    kw: dict[str, Any] = {}
    given = vars(args)
    if "device" in given:  # the stages that load a model and data (all but prune)
        kw.update(device=args.device, num_workers=args.workers, seed=args.seed)
    if "max_batches" in given:
        kw["max_batches"] = args.max_batches
    if "mode" in given:
        kw["mode"] = args.mode
        if args.alpha is not None:
            kw.update(alpha_low=args.alpha, alpha_high=args.alpha)
    if "bn_drift" in given:
        kw.update(steps_per_epoch=args.steps_per_epoch, freeze_bn=not args.bn_drift)
        kw.update({k: v for k, v in (("max_epochs", args.max_epochs), ("lr", args.lr)) if v is not None})
    if given.get("layer"):
        kw["layer"] = args.layer
    return make(**kw)


def _cmd_dear(args: argparse.Namespace) -> int:
    from dear import pipeline

    cmd = args.dear_command
    if cmd == "diagnose":
        echo(f"diagnostic set: {pipeline.diagnose(args.images, args.out, args.inpainter, args.seed, limit=args.limit)}")
        return 0
    if cmd == "prune":
        from dear.dissect import RADResult

        rad = RADResult.load(args.rad)  # its detector picks the default alpha: a Rajan RAD prunes 0.3 per end
        kind = args.kind or rad.extra.get("kind") or pipeline.base_kind(rad.detector)
        if kind is None and args.alpha is None:
            raise BenchError(f"{args.rad}: recorded on {rad.detector!r}, which is neither Corvi- nor Rajan-trained, so "
                             "DEAR gives no default alpha for it; pass --alpha (or --kind corvi|rajan for theirs)")
        config = _dear_config(args, kind or "corvi")
        args.out.mkdir(parents=True, exist_ok=True)
        gate = pipeline.prune(rad, config, args.out / "gate.npz")
        echo(f"gate: {args.out / 'gate.npz'} (keeps {int(gate.sum())} of {gate.numel()} channels, "
             f"alpha {config.alpha_low:g}/{config.alpha_high:g}, {config.mode})")
        return 0
    # Every stage but dissect starts from a Corvi- or Rajan-trained base; refuse any other before
    # the world is built. Dissect takes any CNN detector, and Corvi's alpha for one of neither kind.
    kind = (args.kind or pipeline.base_kind(args.base)) if cmd == "dissect" else pipeline.require_kind(args.base, args.kind)
    config = _dear_config(args, kind or "corvi")
    world = args.world or pipeline.default_world(0)
    args.out.mkdir(parents=True, exist_ok=True)
    if cmd == "run":
        res = pipeline.run_dear(args.base, args.out, config, world=world, kind=kind, inpainter=args.inpainter,
                                diag_limit=args.diag_limit)
        echo(json.dumps({"checkpoint": str(res.checkpoint), "timings_s": {k: round(v, 1) for k, v in res.timings.items()},
                         "gate": res.gate_summary, "head_learned": res.head_learned}, indent=1))
        if not res.head_learned:
            print(f"bench: warning: {pipeline.zero_head_message(res.checkpoint, res.summary)}", file=sys.stderr)
        return 0
    if cmd == "dissect":
        rad = pipeline.dissect(args.base, args.diag or world / "diag", config, args.out / "rad.npz", kind=args.kind)
        echo(f"rad: {args.out / 'rad.npz'} ({rad.num_channels} channels, {rad.n_samples} samples)")
        return 0
    if cmd == "refine":
        from dear.refine import RefineData

        result = pipeline.refine_stage(args.base, args.gate, RefineData.from_world(world, kind), config,
                                       checkpoint=args.out / "model_best.pth")
        echo(f"checkpoint: {args.out / 'model_best.pth'} (best val balanced acc {getattr(result, 'best_score', '?')})")
        return 0
    return _dear_analysis(args, config, world, kind)


def _dear_analysis(args: argparse.Namespace, config: Any, world: Path, kind: str) -> int:
    from dear import analyses, pipeline
    from dear.dissect import RADResult

    out = args.out / f"analysis-{args.analysis}"
    out.mkdir(parents=True, exist_ok=True)
    if args.analysis == "alpha":
        df = analyses.alpha_sensitivity(args.base, out, config=config, world=world, kind=kind, rad=args.rad)
    elif args.analysis == "ablation":
        from detectors.training import mini_config

        given = {"max_epochs": args.max_epochs, "steps_per_epoch": args.steps_per_epoch, "lr": args.lr}
        recipe = mini_config(kind, seed=args.seed, device=args.device, **{k: v for k, v in given.items() if v is not None})
        df = analyses.inpaint_ablation(kind, out, world=world, train_config=recipe)
    else:
        model, _, label = pipeline.load_base_model(args.base, kind)

        def rad() -> RADResult:
            if not args.rad:
                return pipeline.dissect(model, world / "diag", config, out / "rad.npz", label)
            loaded = RADResult.load(args.rad)
            pipeline.warn_if_other_detector(loaded.detector, label, args.rad)
            return loaded

        df = None
        if args.analysis == "probe":
            from dear.prune import load_gate
            from dear.refine import RefineData

            if args.gate:
                gate, meta = load_gate(args.gate, model.num_features)
                pipeline.warn_if_other_detector(str(meta.get("detector", "")), label, args.gate)
            else:
                gate = pipeline.prune(rad(), config)
            df = analyses.refit_probe(model, gate, RefineData.from_world(world, kind), out, config=config, device=args.device)
        elif args.analysis == "robustness":
            from detectors.training import list_folder_images

            df = analyses.rad_vs_robustness(model, rad(), list_folder_images(world / "test" / "real"), out, reduce=args.reduce,
                                            alpha=(config.alpha_low, config.alpha_high), device=args.device)
        else:
            analyses.activation_maps(model, rad(), world / "diag", out, originals=world / "train" / "real", device=args.device)
    if df is not None:
        echo(df.to_string(index=False))
    echo(f"outputs: {out}")
    return 0


# --------------------------------------------------------------------------- analyze (Stay-Positive eq. 1)


def _add_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("analysis", choices=["decomposition"], help="decomposition: real-score / fake-score split of the logit (Stay-Positive eq. 1)")
    p.add_argument("--suite", default="mini", help="suite whose images are decomposed (default: %(default)s)")
    p.add_argument("--detectors", type=csv_list, default=["corvi", "corvi-plus", "rajan", "rajan-plus"],
                   help="comma-separated ResNet detectors with a linear head (default: corvi,corvi-plus,rajan,rajan-plus)")
    p.add_argument("--max-per-set", type=count(1), default=40, help="first N images of each set (default: %(default)s)")
    p.add_argument("--data-root", help="the suite's data (as for bench run)")
    p.add_argument("--out", type=Path, default=Path("results/analysis"),
                   help="writes <out>/decomposition-<detector>/ (default: %(default)s)")
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def _cmd_analyze(args: argparse.Namespace) -> int:
    from bench import registry
    from bench.images import write_failures
    from bench.registry import check_detector_name
    from detectors.decomposition import decompose, plot_decomposition

    if not args.detectors:
        raise BenchError("--detectors names no detector")
    for name in args.detectors:  # every name, before hours of work on the first
        check_detector_name(name)
    suite = registry.get_suite(args.suite).load(args.data_root, args.max_per_set)
    for name in args.detectors:
        det = registry.create_detector(name)
        errors: dict[str, str] = {}
        df = decompose(det, suite.records, device=args.device, errors=errors)
        out = args.out / f"decomposition-{det.info.name}"
        out.mkdir(parents=True, exist_ok=True)
        listed = write_failures(out, errors.items())
        if df.empty:
            raise BenchError(f"{det.weights}: no image of suite {args.suite!r} could be read; see {listed or 'the suite'}")
        df.to_csv(out / "decomposition.csv", index=False)
        if listed:
            print(f"bench: {len(errors)} image(s) could not be read and were skipped; see {listed}", file=sys.stderr)
        figs = plot_decomposition(df, out, title=f"{det.info.display_name} ({det.weights})")
        for old in set(out.glob("decomposition_*.png")) - set(figs):  # sets of an earlier run, gone from the data
            old.unlink()
        summary = df.groupby(["set", "label"])[["fake_score", "real_score", "logit"]].mean().round(3)
        echo(f"== {det.info.display_name}\n{summary.to_string()}\n" + "\n".join(f"figure: {f}" for f in figs))
    return 0


# --------------------------------------------------------------------------- reproduce


DEAR = {"dear-c": "corvi", "dear-r": "rajan"}


def _add_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results/reproduce"), help="where everything is written (default: %(default)s)")
    scale = p.add_mutually_exclusive_group()  # smoke-test weights must never replace the bundled ones
    scale.add_argument("--reduced", action="store_true", help="a minute-long smoke version (CI): few steps, reduced world")
    scale.add_argument("--install", action="store_true", help="copy the results over the bundled weights of this checkout")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    """Every bundled weight from scratch: generators -> world -> detectors -> Stay-Positive -> DEAR."""
    import shutil

    from dear.pipeline import build_mini
    from detectors.training import mini_config, train_mini
    from suites.mini import generators, world

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
    for name in MINI_DETECTORS:
        t = time.perf_counter()
        train_mini(name, root, dets, mini_config(name, **fast), summary_path=dets / f"{name}.train.json")
        times[name] = time.perf_counter() - t
    unlearned = []  # DEAR heads that never beat the zero head: written, never installed (as build_mini)
    for name, kind in DEAR.items():
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
        from importlib import resources

        from dear.pipeline import bundled_weights_dir as dear_weights

        targets = {"generators": generators.bundled_weights_dir(),
                   "detectors": Path(str(resources.files("detectors") / "weights")),
                   "dear": dear_weights()}
        for f in gens.glob("*.safetensors"):
            shutil.copy(f, targets["generators"] / f.name)
        for f in dets.glob("*.mini.*"):
            if f.name not in unlearned:
                shutil.copy(f, targets["dear" if f.suffix == ".pth" else "detectors"] / f.name)
        echo(f"installed into {', '.join(str(v) for v in targets.values())}")
        if unlearned:
            echo(f"not installed (the refit never beat the zero head): {', '.join(unlearned)}")
    return 0


COMMANDS = [
    Command("world", "build the AIGI-mini world or retrain its generators", _add_world, _cmd_world),
    Command("train", "train a detector with the Corvi/Rajan recipe, or refit a Stay-Positive head", _add_train, _cmd_train),
    Command("dear", "DEAR: diagnose, dissect, prune, refine, run, analyze", _add_dear, _cmd_dear),
    Command("analyze", "Stay-Positive analyses of trained detectors", _add_analyze, _cmd_analyze),
    Command("reproduce", "retrain every bundled weight from scratch (generators, world, detectors, DEAR)",
            _add_reproduce, _cmd_reproduce),
]
