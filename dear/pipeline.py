"""DEAR end to end: diagnostic set -> RAD -> bilateral gate -> head refit -> checkpoint.

Each stage is a function taking paths and returning paths or results, so the CLI
(`bench dear diagnose|dissect|prune|refine|run`) can call them one by one; `run_dear` chains
them and times every stage. Settings: `dear.config.DearConfig` (the official ones by default).
By default the data is the AIGI-mini world (`dear.refine.world_data`): diag/, train/real with
train/fake (Corvi) or train/recon (Rajan), val/real with val/fake.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.api import BenchError, TrainingData
from dear.checkpoint import load_base, save_dear
from dear.config import DearConfig, default_world, refuse_missing_file, require_kind
from dear.dissect import diagnostic_loader, diagnostic_pairs, rad_scores
from dear.prune import gate_from_rad, gate_summary, load_gate
from dear.rad import RADResult
from dear.refine import kind_of, refine, refine_loaders, world_data
from detectors.resnet import GatedResNet

log = logging.getLogger(__name__)


@dataclass
class DearResult:
    out: Path
    checkpoint: Path
    rad: Path
    gate: Path
    timings: dict[str, float]  # seconds per stage
    gate_summary: dict[str, int]
    refit: dict[str, Any]  # detectors.head.RefitResult as a dict
    summary: Path = field(default=Path())

    @property
    def head_learned(self) -> bool:
        return head_learned(self.refit)


def head_learned(refit: Any) -> bool:
    """False when no refit epoch beat the zero-initialised head on validation (best epoch 0):
    the kept head is then all zeros and every logit is 0. The official loop would not have
    written model_best.pth at all in that case (it saves only on improvement). `refit` is a
    RefitResult or its dict."""
    best = refit.get("best_epoch", 0) if isinstance(refit, dict) else refit.best_epoch
    return int(best) > 0


def zero_head_message(checkpoint: Path, summary: Path | None = None) -> str:
    """What to tell a user whose refit kept the zero head (`head_learned` is False)."""
    see = f"{summary} and " if summary else ""
    return (f"the refit never beat the zero head on validation, so {checkpoint} scores every image 0 (the official "
            f"loop would have written no checkpoint); see {see}`bench dear analyze probe`")


def warn_if_other_detector(recorded: str, label: str, source: str | Path) -> None:
    """A RAD or gate made on another detector may be applied on purpose (a transfer), so this
    only warns; names that are the same file count as the same detector."""
    if not recorded or not label or recorded == label:
        return
    a, b = Path(recorded), Path(label)
    if a.is_file() and b.is_file() and a.resolve() == b.resolve():
        return
    log.warning("%s was made on %s, not on %s: check that this is the detector you meant", source, recorded, label)


# --------------------------------------------------------------------------- inputs


def load_base_model(base: str | Path, kind: str | None = None) -> tuple[GatedResNet, str, str]:
    """(model with gate all ones, "corvi"|"rajan", label) from "corvi.mini", "rajan.official"
    or a checkpoint path (then `kind` says how the base was trained)."""
    kind = require_kind(base, kind)
    p = Path(base)
    if p.is_file():
        return load_base(p), kind, str(p)
    from bench.registry import create_detector

    det = create_detector(str(base))
    model = getattr(det, "model", None)
    if not isinstance(model, GatedResNet):
        raise BenchError(f"{base!r} is not a ResNet-50 nodown detector (DEAR gates its layer4)")
    with torch.no_grad():
        model.gate.gate.fill_(1.0)
    return model, kind, det.weights or str(base)


def _check_limit(limit: int | None, name: str) -> None:
    if limit is not None and limit < 1:
        raise BenchError(f"{name} must be at least 1 (the number of real images to inpaint), got {limit}")


# --------------------------------------------------------------------------- stages


def diagnose(images: Path | Sequence[Path], out_dir: Path, inpainter: str = "mini", seed: int = 0, progress: bool = True,
             limit: int | None = None) -> Path:
    """Build a diagnostic set from real images (a folder or a list) into `out_dir`; returns it."""
    from dear.inpaint import make_diagnostic_set, make_inpainter
    from detectors.data import list_folder_images

    _check_limit(limit, "limit")
    paths = list_folder_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise BenchError(f"{images}: no real images to inpaint")
    make_diagnostic_set(paths, out_dir, make_inpainter(inpainter), seed=seed, progress=progress)
    return Path(out_dir)


def _as_model(base: GatedResNet | str | Path, kind: str | None) -> tuple[GatedResNet, str]:
    if isinstance(base, GatedResNet):
        return base, ""
    model, _, label = load_base_model(base, kind)
    return model, label


def _dissection_model(base: torch.nn.Module | str | Path, kind: str | None) -> tuple[torch.nn.Module, str]:
    """Any registered CNN detector can be dissected (only pruning and refit need the gated
    ResNet): "npr.mini" gives NPR's network, to be read at e.g. `layer="layer2"`."""
    if isinstance(base, torch.nn.Module):
        return base, ""
    if Path(base).is_file():  # a Corvi/Rajan checkpoint: `kind` says how to read it
        return _as_model(base, kind)
    refuse_missing_file(base)
    from bench.registry import create_detector

    det = create_detector(str(base))  # built once; RAD reads the layer with the gate forced open
    model = getattr(det, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise BenchError(f"{base!r} has no torch model to dissect")
    return model, det.weights or str(base)


def dissect(base: torch.nn.Module | str | Path, diag: Path, config: DearConfig, out: Path | None = None, label: str = "",
            kind: str | None = None) -> RADResult:
    """RAD of `config.layer` on the diagnostic set at `diag` (saved to `out` if given).

    `base`: a model, a registry name ("corvi.mini", or any CNN detector such as "npr.mini" with
    its own `config.layer`) or a Corvi/Rajan checkpoint file (with `kind`)."""
    model, loaded = _dissection_model(base, kind)
    label = label or loaded
    pairs = diagnostic_pairs(diag)
    repeats = config.rad_repeats or (
        max(1, math.ceil(config.max_batches * config.rad_batch_size / len(pairs))) if config.max_batches else 1)
    torch.manual_seed(config.seed)  # the v2 augmentation draws from torch's global generator
    loader = diagnostic_loader(pairs, batch_size=config.rad_batch_size, seed=config.seed, repeats=repeats,
                               crop=config.crop, num_workers=config.num_workers, normalization=getattr(model, "normalization", None))
    data = f"{Path(diag)} ({len(pairs)} images x {repeats} passes, training augmentation, crop {config.crop})"
    rad = rad_scores(model, loader, config.layer, config.max_batches, config.device, detector=label, data=data,
                     progress=config.progress)
    if kind:  # a checkpoint file's name does not say how it was trained; `bench dear prune` reads this
        rad.extra["kind"] = kind
    if out is not None:
        rad.save(out)
    return rad


def prune(rad: RADResult | Path, config: DearConfig, out: Path | None = None) -> Any:
    """The 0/1 gate (numpy) from a RAD vector (saved to `out` as .npz if given)."""
    r = RADResult.load(rad) if isinstance(rad, (str, Path)) else rad
    return gate_from_rad(r, config.alpha_low, config.alpha_high, config.mode, out)


def refine_stage(base: GatedResNet | str | Path, gate: Any, data: TrainingData, config: DearConfig,
                 checkpoint: Path | None = None):
    """Refit the head under `gate` on `data` (a model is changed in place; a name or file is
    loaded); saves the official-format checkpoint if asked, with a warning when its head never
    beat the zero head (`run_dear` saves and reports its own). Returns the RefitResult."""
    model, label = _as_model(base, kind_of(data))
    if isinstance(gate, (str, Path)):
        g, meta = load_gate(gate, model.num_features)
        warn_if_other_detector(str(meta.get("detector", "")), label, gate)
    else:
        g = gate
    torch.manual_seed(config.seed)
    train, inpaint, val = refine_loaders(data, batch_size=config.batch_size, inpaint_batch_size=config.inpaint_batch_size,
                                         crop=config.crop, seed=config.seed, num_workers=config.num_workers,
                                         normalization=model.normalization)
    result = refine(model, g, train, inpaint, val, freeze_bn=config.freeze_bn, lr=config.lr, patience=config.patience,
                    delta=config.delta, min_lr=config.min_lr, max_epochs=config.max_epochs,
                    steps_per_epoch=config.steps_per_epoch, device=config.device, progress=config.progress)
    if checkpoint is not None:
        save_dear(model.cpu(), checkpoint)
        if not head_learned(result):
            log.warning("%s", zero_head_message(checkpoint))
    return result


# --------------------------------------------------------------------------- all stages


def run_dear(
    base: str | Path = "corvi.mini",
    out: Path = Path("results/dear"),
    config: DearConfig | None = None,
    *,
    world: Path | None = None,
    data: TrainingData | None = None,
    kind: str | None = None,
    checkpoint_name: str = "model_best.pth",
    inpainter: str | None = None,
    diag_limit: int | None = None,
) -> DearResult:
    """DEAR on `base`: diagnostic set, RAD, prune, refit, save; every stage timed.

    Data: `data` (explicit folders) or the AIGI-mini `world` (default: the seed-0 world). The
    diagnostic set is `data.diag` as found, unless `inpainter` ("mini" or "sd") is given: then
    it is built from the first `diag_limit` training reals into <out>/diag.
    Writes <out>/rad.npz, gate.npz, <checkpoint_name>, timings.json, summary.json (and diag/).

    Everything is first written to a new <out>/.partial-* folder and moved into `out` only once the run
    has finished, so a run that is interrupted leaves the previous complete set as it was
    rather than new RAD and gate files beside an old checkpoint and summary; what a failed run
    had finished stays in that folder, named in a warning."""
    config = config or DearConfig()
    _check_limit(diag_limit, "diag_limit")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _warn_of_leftovers(out)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".partial-"))  # unique: never another run's folder
    try:
        res = _run_stages(base, out, work, config, world, data, kind, checkpoint_name, inpainter, diag_limit)
        names = ["diag"] if inpainter is not None else []
        for name in [*names, "rad.npz", "gate.npz", checkpoint_name, "timings.json", "summary.json"]:
            if (out / name).is_dir():  # os.replace does not replace a non-empty folder
                shutil.rmtree(out / name)
            os.replace(work / name, out / name)
    except BaseException:
        if any(work.iterdir()):
            log.warning("the run stopped before finishing; %s is unchanged and what was done is in %s", out, work)
        else:
            work.rmdir()
        raise
    shutil.rmtree(work)
    return res


def _warn_of_leftovers(out: Path) -> None:
    """Name the work folders that earlier runs left in `out` (killed, or still running): they
    are never deleted here, since one may belong to a run in progress or hold hours of work."""
    left = sorted(p.name for p in out.glob(".partial-*") if p.is_dir())
    if left:
        log.warning("%s holds %d unfinished DEAR run folder(s) (%s): from interrupted runs, or a run still going; "
                    "delete them when no run uses them", out, len(left), ", ".join(left))


def _run_stages(base: str | Path, out: Path, work: Path, config: DearConfig, world: Path | None, data: TrainingData | None,
                kind: str | None, checkpoint_name: str, inpainter: str | None, diag_limit: int | None) -> DearResult:
    """`run_dear`'s stages, writing into `work`; the result and the files name `out`, where they
    will be."""
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    t = time.perf_counter()
    model, kind, label = load_base_model(base, kind)
    model.to(config.device)
    timings["load_base"] = time.perf_counter() - t

    t = time.perf_counter()
    if data is None:
        data = world_data(world or default_world(), kind)
    elif kind_of(data) != kind:
        raise BenchError(f"data is for a {kind_of(data)} base but {base!r} is {kind}")
    recorded = data  # the data as the summary names it (a built diag/ under `out`)
    if inpainter is not None:
        data = dataclasses.replace(data, diag=diagnose(data.train_real, work / "diag", inpainter, config.seed,
                                                         config.progress, diag_limit))
        recorded = dataclasses.replace(data, diag=out / "diag")
    diagnostic_pairs(data.diag)  # fails early with the missing folder named
    timings["diagnose"] = time.perf_counter() - t

    t = time.perf_counter()
    rad = dissect(model, data.diag, config, label=label, kind=kind)
    rad.data = rad.data.replace(str(data.diag), str(recorded.diag), 1)
    rad.save(work / "rad.npz")
    timings["dissect"] = time.perf_counter() - t

    t = time.perf_counter()
    gate = prune(rad, config, work / "gate.npz")
    timings["prune"] = time.perf_counter() - t

    t = time.perf_counter()
    result = refine_stage(model, gate, data, config)
    timings["refine"] = time.perf_counter() - t

    t = time.perf_counter()
    save_dear(model.cpu(), work / checkpoint_name)
    timings["save"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_all

    refit = dataclasses.asdict(result)
    res = DearResult(out, out / checkpoint_name, out / "rad.npz", out / "gate.npz",
                     {k: round(v, 3) for k, v in timings.items()}, gate_summary(gate), refit, out / "summary.json")
    (work / "timings.json").write_text(json.dumps(res.timings, indent=1))
    (work / "summary.json").write_text(json.dumps({
        "base": label, "kind": kind, "config": config.to_json(),
        "data": {k: str(v) for k, v in dataclasses.asdict(recorded).items()},
        "rad": {"n_samples": rad.n_samples, "n_batches": rad.n_batches, "min": float(rad.scores.min()),
                "max": float(rad.scores.max()), "mean": float(rad.scores.mean())},
        "gate": res.gate_summary, "timings": res.timings, "head_learned": res.head_learned, "refit": refit,
        "torch_threads": torch.get_num_threads(),
    }, indent=1, default=str))
    return res


# --------------------------------------------------------------------------- bundled weights

MINI_RECIPES: dict[str, str] = {"dear-c": "corvi", "dear-r": "rajan"}  # bundled DEAR weight -> the base it starts from


def bundled_weights_dir() -> Path:
    """dear/weights inside the package: where the bundled `<name>.mini.pth` files live."""
    return Path(__file__).parent / "weights"


def mini_config(name: str, **overrides: Any) -> DearConfig:
    """The recipe and CPU budget of the bundled `<name>.mini.pth`.

    The official settings (alpha 0.2 for DEAR-c, 0.3 for DEAR-r; 100 RAD batches of 64; crop 96;
    64 + 64 images a step; patience 5, delta 1e-3) except the refit's budget: lr 1e-2 instead of
    1e-4, a validation every 25 steps, at most 20 such epochs. The head starts from zero, and
    at 1e-4 it did not move the validation balanced accuracy off 0.50 within a CPU budget
    (the official run sees ~10^5 images per epoch); the same change, for the same reason, as
    the Stay-Positive refits in `detectors.mini.mini_config`."""
    if name not in MINI_RECIPES:
        raise BenchError(f"unknown DEAR detector {name!r}; known: {', '.join(MINI_RECIPES)}")
    base = DearConfig.for_kind(MINI_RECIPES[name], lr=1e-2, steps_per_epoch=25, max_epochs=20)
    return dataclasses.replace(base, **overrides)


def build_mini(name: str, out: Path = Path("results/dear"), *, world: Path | None = None, base: str | Path | None = None,
               install: bool = True, **overrides: Any) -> DearResult:
    """Rebuild `<name>.mini.pth` ("dear-c" from corvi.mini, "dear-r" from rajan.mini) on the
    AIGI-mini world with `mini_config(name, **overrides)`; `base` may name another base
    checkpoint file (as `bench reproduce` does with freshly trained ones). With `install`, copy
    the result into dear/weights/ (the bundled file)."""
    config = mini_config(name, **overrides)
    kind = MINI_RECIPES[name]
    res = run_dear(base or f"{kind}.mini", Path(out) / name, config, world=world, kind=kind, checkpoint_name=f"{name}.mini.pth")
    if install and not res.head_learned:
        raise BenchError(f"{name}: the refit never beat the zero head on validation (see {res.summary}); "
                         f"{res.checkpoint} is left out of dear/weights")
    if install:
        bundled_weights_dir().mkdir(exist_ok=True)
        shutil.copyfile(res.checkpoint, bundled_weights_dir() / res.checkpoint.name)
    return res
