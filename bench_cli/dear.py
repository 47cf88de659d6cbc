"""`bench dear run | diagnose | dissect | prune | refine | analyze`: DEAR's stages (dear/).

Each stage is a `Command` declaring the option groups it reads; its DearConfig is built from
those groups alone, so a stage never accepts an option it ignores (`dissect --alpha` is a usage
error, not a silently unused number).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.api import BenchError
from bench_cli.args import Command, Options, count, echo, grouped as _stage, positive, torch_device
from dear.config import KINDS  # no torch at start-up


def _add_model(q: argparse.ArgumentParser) -> None:
    q.add_argument("--base", default="corvi.mini", help="base detector (corvi.*, rajan.*; dissect takes any CNN detector) or checkpoint file")
    q.add_argument("--kind", choices=KINDS, help="how a checkpoint-file base was trained")
    q.add_argument("--out", type=Path, default=Path("results/dear"), help="output folder (default: %(default)s)")
    q.add_argument("--world", type=Path, help="AIGI-mini world (default: the seed-0 world)")
    q.add_argument("--device", type=torch_device, default="cpu")
    q.add_argument("--workers", type=count(0), default=0, help="DataLoader worker processes (default 0; other counts draw other augmentations)")
    q.add_argument("--seed", type=int, default=0)


def _add_rad(q: argparse.ArgumentParser) -> None:
    q.add_argument("--max-batches", type=count(1), default=100, help="RAD batches of 64 (default 100)")


def _add_prune(q: argparse.ArgumentParser) -> None:
    q.add_argument("--alpha", type=float, help="fraction pruned at each end (default: 0.2 Corvi, 0.3 Rajan)")
    q.add_argument("--mode", choices=["count", "percentile"], default="count",
                   help="count: official code (int(C*alpha) per end); percentile: the paper's Algorithm 1")


def _add_refit(q: argparse.ArgumentParser) -> None:
    q.add_argument("--max-epochs", type=count(0), help="refit epochs at most (default: 1000; 0 keeps the zero head)")
    q.add_argument("--lr", type=positive, help="refit learning rate (default: the official 1e-4; the bundled .mini weights use 1e-2)")
    q.add_argument("--steps-per-epoch", type=count(1), help="refit steps between validations (default: one pass over the data)")
    q.add_argument("--bn-drift", action="store_true", help="let BN statistics drift during the refit, as the official code does")


MODEL = Options(_add_model, lambda a: {"device": a.device, "num_workers": a.workers, "seed": a.seed})
RAD = Options(_add_rad, lambda a: {"max_batches": a.max_batches})
PRUNE = Options(_add_prune, lambda a: {"mode": a.mode, **({"alpha_low": a.alpha, "alpha_high": a.alpha} if a.alpha is not None else {})})
REFIT = Options(_add_refit, lambda a: {"steps_per_epoch": a.steps_per_epoch, "freeze_bn": not a.bn_drift,
                                       **{k: v for k, v in (("max_epochs", a.max_epochs), ("lr", a.lr)) if v is not None}})


def _config(kind: str | None, fields: dict[str, Any]) -> Any:
    from dear.config import DearConfig

    return DearConfig.for_kind(kind or "corvi", **fields)


def _world(args: argparse.Namespace) -> Path:
    from dear.config import default_world

    return args.world or default_world(0)


# --------------------------------------------------------------------------- stages


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inpainter", choices=["mini", "sd"], help="rebuild the diagnostic set with this inpainter "
                   "(default: use the world's diag/ set)")  # fmt: skip
    p.add_argument("--diag-limit", type=count(1), help="inpaint only the first N training reals")


def _run(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    from dear import pipeline
    from dear.config import require_kind

    kind = require_kind(args.base, args.kind)  # before the world is built
    config = _config(kind, fields)
    world = _world(args)
    args.out.mkdir(parents=True, exist_ok=True)
    res = pipeline.run_dear(args.base, args.out, config, world=world, kind=kind, inpainter=args.inpainter,
                            diag_limit=args.diag_limit)
    echo(json.dumps({"checkpoint": str(res.checkpoint), "timings_s": {k: round(v, 1) for k, v in res.timings.items()},
                     "gate": res.gate_summary, "head_learned": res.head_learned}, indent=1))
    if not res.head_learned:
        print(f"bench: warning: {pipeline.zero_head_message(res.checkpoint, res.summary)}", file=sys.stderr)
    return 0


def _add_diagnose(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", type=Path, help="folder of real images")
    p.add_argument("--out", type=Path, default=Path("results/dear/diag"), help="output folder (default: %(default)s)")
    p.add_argument("--inpainter", choices=["mini", "sd"], default="mini",
                   help="mini: AIGI-mini's training generator (offline); sd: Stable Diffusion 1.5 inpainting (diffusers)")
    p.add_argument("--limit", type=count(1), help="inpaint only the first N images")
    p.add_argument("--seed", type=int, default=0, help="seeds each image's mask and inpainting (default: 0)")


def _diagnose(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    from dear import pipeline

    echo(f"diagnostic set: {pipeline.diagnose(args.images, args.out, args.inpainter, args.seed, limit=args.limit)}")
    return 0


def _add_dissect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--diag", type=Path, help="diagnostic set: images/ + masks/, or DEAR's released data/train/fake "
                   "(lsun_inpaint_sd/ + lsun_inpaint_mask/) (default: <world>/diag)")
    p.add_argument("--layer", default="layer4", help="module whose output is dissected (default: layer4, the last conv stage)")


def _dissect(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    from dear import pipeline
    from dear.config import base_kind

    # Dissect takes any CNN detector (and Corvi's alpha for one of neither kind, recorded with the RAD).
    config = _config(args.kind or base_kind(args.base), {**fields, "layer": args.layer})
    diag = args.diag
    if diag is None:
        from suites.mini.layout import WorldLayout

        diag = WorldLayout(_world(args)).diag
    args.out.mkdir(parents=True, exist_ok=True)
    rad = pipeline.dissect(args.base, diag, config, args.out / "rad.npz", kind=args.kind)
    echo(f"rad: {args.out / 'rad.npz'} ({rad.num_channels} channels, {rad.n_samples} samples)")
    return 0


def _add_prune_stage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rad", type=Path, required=True, help="RAD file of `bench dear dissect`")
    p.add_argument("--kind", choices=KINDS, help="whose default alpha to use (default: from the detector recorded in the RAD file)")
    p.add_argument("--out", type=Path, default=Path("results/dear"), help="output folder (default: %(default)s)")


def _prune(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    """numpy on a RAD vector: imports neither torch nor any model."""
    from dear.config import base_kind
    from dear.prune import gate_from_rad
    from dear.rad import RADResult

    rad = RADResult.load(args.rad)  # its detector picks the default alpha: a Rajan RAD prunes 0.3 per end
    kind = args.kind or rad.extra.get("kind") or base_kind(rad.detector)
    if kind is None and args.alpha is None:
        raise BenchError(f"{args.rad}: recorded on {rad.detector!r}, which is neither Corvi- nor Rajan-trained, so "
                         "DEAR gives no default alpha for it; pass --alpha (or --kind corvi|rajan for theirs)")
    config = _config(kind, fields)
    args.out.mkdir(parents=True, exist_ok=True)
    gate = gate_from_rad(rad, config.alpha_low, config.alpha_high, config.mode, args.out / "gate.npz")
    echo(f"gate: {args.out / 'gate.npz'} (keeps {int(gate.sum())} of {gate.size} channels, "
         f"alpha {config.alpha_low:g}/{config.alpha_high:g}, {config.mode})")
    return 0


def _add_refine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gate", type=Path, required=True, help="gate file of `bench dear prune`")


def _refine(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    from dear import pipeline
    from dear.config import require_kind
    from dear.refine import world_data

    kind = require_kind(args.base, args.kind)
    config = _config(kind, fields)
    args.out.mkdir(parents=True, exist_ok=True)
    result = pipeline.refine_stage(args.base, args.gate, world_data(_world(args), kind), config,
                                   checkpoint=args.out / "model_best.pth")
    echo(f"checkpoint: {args.out / 'model_best.pth'} (best val balanced acc {result.best_score})")
    return 0


ANALYSES = ("robustness", "maps", "alpha", "ablation", "probe")


def _add_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("analysis", choices=ANALYSES)
    p.add_argument("--rad", type=Path, help="a saved RAD vector (default: computed)")
    p.add_argument("--gate", type=Path, help="probe: a saved gate (default: pruned from the RAD vector)")
    p.add_argument("--reduce", choices=["spatial", "pooled"], default="spatial",
                   help="robustness: per-channel MSE over feature-map positions (default) or of the pooled means the head sees")


def _analyze(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    from dear import analyses, pipeline
    from dear.config import require_kind
    from dear.rad import RADResult
    from dear.refine import world_data
    from suites.mini.layout import WorldLayout

    kind = require_kind(args.base, args.kind)
    config = _config(kind, fields)
    world = _world(args)
    layout = WorldLayout(world)
    out = args.out / f"analysis-{args.analysis}"
    out.mkdir(parents=True, exist_ok=True)
    df = None
    if args.analysis == "alpha":
        df = analyses.alpha_sensitivity(args.base, out, config=config, world=world, kind=kind, rad=args.rad)
    elif args.analysis == "ablation":
        from detectors.mini import mini_config

        given = {"max_epochs": args.max_epochs, "steps_per_epoch": args.steps_per_epoch, "lr": args.lr}
        recipe = mini_config(kind, seed=args.seed, device=args.device, **{k: v for k, v in given.items() if v is not None})
        df = analyses.inpaint_ablation(kind, out, world=world, train_config=recipe)
    else:
        model, _, label = pipeline.load_base_model(args.base, kind)

        def rad() -> RADResult:
            if not args.rad:
                return pipeline.dissect(model, layout.diag, config, out / "rad.npz", label)
            loaded = RADResult.load(args.rad)
            pipeline.warn_if_other_detector(loaded.detector, label, args.rad)
            return loaded

        if args.analysis == "probe":
            from dear.prune import load_gate

            if args.gate:
                gate, meta = load_gate(args.gate, model.num_features)
                pipeline.warn_if_other_detector(str(meta.get("detector", "")), label, args.gate)
            else:
                gate = pipeline.prune(rad(), config)
            df = analyses.refit_probe(model, gate, world_data(world, kind), out, config=config, device=args.device)
        elif args.analysis == "robustness":
            from detectors.data import list_folder_images

            df = analyses.rad_vs_robustness(model, rad(), list_folder_images(layout.real("test")), out, reduce=args.reduce,
                                            alpha=(config.alpha_low, config.alpha_high), device=args.device)
        else:
            analyses.activation_maps(model, rad(), layout.diag, out, originals=layout.real("train"), device=args.device)
    if df is not None:
        echo(df.to_string(index=False))
    echo(f"outputs: {out}")
    return 0


COMMAND = Command("dear", "DEAR: diagnose, dissect, prune, refine, run, analyze", subcommands=(
    _stage("run", "all stages: dissect -> prune -> refine -> checkpoint (timed)", (MODEL, RAD, PRUNE, REFIT), _run, _add_run),
    _stage("diagnose", "inpaint one rectangle per real image (images/ + masks/)", (), _diagnose, _add_diagnose),
    _stage("dissect", "RAD per channel of layer4 on a diagnostic set", (MODEL, RAD), _dissect, _add_dissect),
    _stage("prune", "bilateral 0/1 gate from a RAD vector", (PRUNE,), _prune, _add_prune_stage),
    _stage("refine", "refit the head under a gate (backbone frozen)", (MODEL, REFIT), _refine, _add_refine),
    _stage("analyze", "the paper's analyses: robustness (Fig. 4), maps (Fig. 3), alpha (sensitivity to alpha in 0.05, 0.1, "
           "0.2, 0.3; --alpha is not used), ablation (Fig. 8: trains the base --kind from scratch with the inpainted images "
           "as extra fakes; --max-epochs, --steps-per-epoch and --lr set that training, which otherwise follows the bundled "
           "weights' recipe); probe: converged linear heads with and without the inpainted stream",
           (MODEL, RAD, PRUNE, REFIT), _analyze, _add_analyze),
))
