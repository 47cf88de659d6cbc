"""The DEAR paper's analyses on AIGI-mini; each writes a PNG and the data behind it.

- `rad_vs_robustness` (paper Fig. 4): per-channel change of activations under WEBP compression
  against RAD: are the extreme-RAD channels the fragile ones?
- `activation_maps` (Fig. 3): maps of a high-, middle- and low-RAD channel on inpainted images.
- `alpha_sensitivity` (sensitivity study): gate + refit for several alphas, test metrics.
- `inpaint_ablation` (Fig. 8): instead of DEAR, retrain the base from scratch with the inpainted
  images as extra fakes (Corvi-inpaint, Rajan-inpaint), test metrics.
- `refit_probe` (ours, not in the paper): a converged logistic-regression head on the refit's
  data, to tell a failed refit's optimisation from its features and data.
`evaluate` gives the per-set test metrics the last three report.
Activations are read UNgated (gate forced to ones) at the RAD layer, as RAD itself.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from bench.api import AVG, BenchError, DetectorInfo, TrainingData
from dear.config import KINDS, DearConfig, default_world
from dear.dissect import diagnostic_pairs, layer_activations, ungated
from dear.pipeline import dissect, load_base_model, prune, refine_stage, warn_if_other_detector
from dear.prune import KEPT, count_bands
from dear.rad import RADResult
from dear.refine import refine_loaders, world_data
from detectors.preprocess import Normalize
from detectors.resnet import GatedResNet, ResNetDetector


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write a figure as PNG (150 dpi) and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    _plt().close(fig)


def _activations(model: GatedResNet, image, layer: str, device: str) -> torch.Tensor:
    """(C, h, w) ungated activations of `layer` for one PIL image at native resolution."""
    x = Normalize(*model.normalization)(image)[None].to(device)
    with torch.no_grad(), ungated(model):
        return layer_activations(model.eval().to(device), x, layer)[0].float().cpu()


# --------------------------------------------------------------------------- (a) Fig. 4


def rad_vs_robustness(
    model: GatedResNet,
    rad: RADResult,
    images: Sequence[Path],
    out_dir: Path,
    *,
    quality: int = 75,
    reduce: str = "spatial",
    alpha: tuple[float, float] = (0.2, 0.2),
    device: str = "cpu",
) -> pd.DataFrame:
    """Per-channel MSE between activations of each image and of its WEBP(`quality`) copy.

    `reduce="spatial"` (the paper's per-channel activation MSE): mean over positions of the
    squared map difference; "pooled": MSE of the spatial means (what the head sees, blind to
    changes that cancel out over the map); `rel_mse` divides by the channel's mean squared
    activation (|RAD| and MSE both scale with a channel's magnitude, so the raw correlation is
    partly a size effect). Writes rad_vs_robustness.csv/.png/.json; the JSON holds Spearman
    correlations of both with |RAD - median RAD| and their means over the channels the count
    rule with `alpha` prunes at each end vs keeps."""
    from scipy.stats import spearmanr

    from bench.images import load_image
    from bench.registry import create_chain

    if reduce not in ("pooled", "spatial"):
        raise BenchError(f"reduce must be 'pooled' or 'spatial', not {reduce!r}")
    if not images:
        raise BenchError("rad_vs_robustness: no images")
    webp = create_chain(f"webp:quality={quality}")
    sq = torch.zeros(rad.num_channels, dtype=torch.float64)
    energy = torch.zeros(rad.num_channels, dtype=torch.float64)
    for path in images:
        im = load_image(str(path))
        a = _activations(model, im, rad.layer, device)
        b = _activations(model, webp(im, random.Random(0))[0], rad.layer, device)
        rad.check_channels(a.shape[0], f"this model's {rad.layer}")
        if reduce == "pooled":
            sq += (a.mean((1, 2)) - b.mean((1, 2))).double() ** 2
            energy += a.mean((1, 2)).double() ** 2
        else:
            sq += ((a - b).double() ** 2).mean((1, 2))
            energy += (a.double() ** 2).mean((1, 2))
    mse = (sq / len(images)).numpy()
    rel = (sq / energy.clamp_min(1e-12)).numpy()  # scale-free: |RAD| and MSE both grow with a channel's magnitude
    band = count_bands(rad.scores, alpha[0], alpha[1])
    df = pd.DataFrame({"channel": np.arange(rad.num_channels), "rad": rad.scores, "mse": mse, "rel_mse": rel,
                       "kept": band == KEPT, "band": band})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "rad_vs_robustness.csv", index=False)
    centered = np.abs(rad.scores - np.median(rad.scores))
    rho, rho_rel = spearmanr(centered, mse), spearmanr(centered, rel)
    summary = {
        "quality": quality, "reduce": reduce, "n_images": len(images), "layer": rad.layer, "alpha": list(alpha),
        "spearman_abs_centered_rad_vs_mse": float(rho.statistic), "spearman_p": float(rho.pvalue),
        "spearman_abs_centered_rad_vs_rel_mse": float(rho_rel.statistic), "spearman_rel_p": float(rho_rel.pvalue),
        "mean_mse": {k: float(v) for k, v in df.groupby("band")["mse"].mean().items()},
        "mean_rel_mse": {k: float(v) for k, v in df.groupby("band")["rel_mse"].mean().items()},
    }
    (out_dir / "rad_vs_robustness.json").write_text(json.dumps(summary, indent=1))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colors = {"kept": "tab:green", "pruned-high": "tab:red", "pruned-low": "tab:blue"}
    for name, g in df.groupby("band"):
        ax.scatter(g["rad"], g["mse"], s=8, alpha=0.7, color=colors[name], label=f"{name} ({len(g)})")
    ax.set_yscale("log")
    ax.set_xlabel("RAD (inside - outside inpainted region)")
    ax.set_ylabel(f"activation MSE under WEBP q={quality} ({reduce})")
    ax.set_title(f"RAD vs robustness, Spearman(|RAD-med|, MSE) = {summary['spearman_abs_centered_rad_vs_mse']:.2f}")
    ax.legend(fontsize=7)
    _save(fig, out_dir / "rad_vs_robustness.png")
    return df


# --------------------------------------------------------------------------- (b) Fig. 3


def activation_maps(
    model: GatedResNet,
    rad: RADResult,
    diag: Path,
    out_dir: Path,
    *,
    n_images: int = 3,
    originals: Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Maps of the highest-, median- and lowest-RAD channel on the first `n_images` diagnostic
    images, beside the original (if `originals`/<name> exists), mask and composite.
    Writes activation_maps.png and activation_maps.npz (maps, channels, RAD values)."""
    from bench.images import load_image
    from dear.dissect import read_mask

    pairs = diagnostic_pairs(diag)[:n_images]
    order = np.argsort(-rad.scores, kind="stable")
    picks = {"high": int(order[0]), "middle": int(order[len(order) // 2]), "low": int(order[-1])}
    plt = _plt()
    has_orig = originals is not None
    cols = 5 + has_orig
    fig, axes = plt.subplots(len(pairs), cols, figsize=(2.2 * cols, 2.2 * len(pairs)), squeeze=False)
    saved: dict[str, np.ndarray] = {}
    for r, (img_path, mask_path) in enumerate(pairs):
        composite = load_image(str(img_path))
        feats = _activations(model, composite, rad.layer, device)
        rad.check_channels(feats.shape[0], f"this model's {rad.layer}")
        panels = []
        if has_orig:
            orig = Path(originals) / img_path.name
            panels.append(("original", np.asarray(load_image(str(orig))) if orig.is_file() else np.zeros((8, 8, 3), np.uint8)))
        panels += [("mask", read_mask(mask_path)), ("composite", np.asarray(composite))]
        for name, ch in picks.items():
            m = feats[ch].numpy()
            saved[f"{img_path.stem}_{name}"] = m
            panels.append((f"{name} RAD ch{ch} ({rad.scores[ch]:+.3f})", m))
        for c, (title, arr) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 and title == "mask" else ("viridis" if arr.ndim == 2 else None))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save(fig, out_dir / "activation_maps.png")
    np.savez(out_dir / "activation_maps.npz", channels=np.array(list(picks.values())),
             rad=rad.scores[list(picks.values())], **saved)
    return {"channels": picks, "images": [str(p) for p, _ in pairs]}


# --------------------------------------------------------------------------- evaluation


def evaluate(model: GatedResNet, world: Path, label: str, suites: Sequence[str] = ("mini",), device: str = "cpu") -> pd.DataFrame:
    """Per-set metrics (percent) of `model` on each suite's scored sets, plus the 'avg' row over
    generator sets (in-the-wild sets keep their own rows, as DEAR reports them apart): the
    runner's scoring (`bench.runner.score_suite`) and `bench.metrics.evaluate`, as `bench run`
    and `bench table` compute them. Columns: model (= `label`), suite, set, kind, the metrics."""
    from bench.metrics import METRIC_COLUMNS, evaluate as metrics_of
    from bench.registry import get_suite
    from bench.runner import RunConfig, score_suite

    det = ResNetDetector(model.eval(), DetectorInfo(label, label, "CNN"), label)
    frames = []
    for suite_name in suites:
        suite = get_suite(suite_name).load(data_root=world)
        result = score_suite(suite, [det], RunConfig(suite=suite_name, device=device, workers=0))
        if result.errors:
            raise BenchError(f"{label} on {suite_name}: {'; '.join(result.errors.values())}")
        table = metrics_of(result.scores)
        frames.append(pd.DataFrame({"model": label, "suite": suite_name, "set": table["set"],
                                    "kind": table["set_kind"], **{m: table[m] for m in METRIC_COLUMNS}}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- (e) refit probe


def refit_probe(
    model: GatedResNet,
    gate: Any,
    data: TrainingData,
    out_dir: Path,
    *,
    batches: int = 30,
    costs: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
    config: DearConfig | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """Is a failed refit an optimisation problem or a data problem? Fit the head to convergence
    (scikit-learn's logistic regression, inverse regularisation `costs`) on the gated, pooled
    features of `batches` training batches, with and without as many inpainted batches (the
    refit's two BCE streams), and score balanced accuracy on the validation set the refit
    early-stops on. A probe that fails too means the features and data, not the lr or the
    step budget, are what the refit cannot get past. Writes refit_probe.csv and .png."""
    from sklearn.linear_model import LogisticRegression

    from detectors.fit import balanced_accuracy, epoch_batches

    config = config or DearConfig()
    model = model.to(device).eval()
    model.gate.set_(gate)
    torch.manual_seed(config.seed)
    train, inpaint, val = refine_loaders(data, batch_size=config.batch_size, inpaint_batch_size=config.inpaint_batch_size,
                                         crop=config.crop, seed=config.seed, normalization=model.normalization)

    def features(batches_of: Any) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        with torch.no_grad():
            for x, y in batches_of:
                xs.append(model.pooled(x.to(device)).float().cpu())
                ys.append(torch.as_tensor(y).float().reshape(-1))
        return torch.cat(xs).numpy(), torch.cat(ys).numpy()

    # Fresh passes (new augmentations) as needed, as the refit draws both of its streams.
    main, extra = features(epoch_batches(train, batches)), features(epoch_batches(inpaint, batches))
    xv, yv = features(val)
    streams = {"main": main, "main+inpainted": (np.r_[main[0], extra[0]], np.r_[main[1], extra[1]])}
    rows = []
    for name, (x, y) in streams.items():
        for c in costs:
            clf = LogisticRegression(C=c, max_iter=10000).fit(x, y)
            rows.append({"data": name, "C": c, "train_acc": float(clf.score(x, y)),
                         "val_bacc": balanced_accuracy(yv, clf.decision_function(xv)), "n_train": len(y),
                         "inpainted_fake_share": float(extra[1].mean()) if name != "main" else math.nan})
    df = pd.DataFrame(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "refit_probe.csv", index=False)
    fig, ax = _plt().subplots(figsize=(5, 3.5))
    for name, g in df.groupby("data", sort=False):
        ax.plot(g["C"], g["val_bacc"], "o-", label=name)
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="zero head")
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse L2 strength) of the converged linear probe")
    ax.set_ylabel("val balanced accuracy")
    ax.legend(fontsize=7)
    _save(fig, out_dir / "refit_probe.png")
    return df


# --------------------------------------------------------------------------- (c) alpha


def alpha_sensitivity(
    base: str | Path,
    out_dir: Path,
    alphas: Sequence[float] = (0.05, 0.1, 0.2, 0.3),
    config: DearConfig | None = None,
    *,
    world: Path | None = None,
    kind: str | None = None,
    rad: Path | None = None,
    suites: Sequence[str] = ("mini",),
) -> pd.DataFrame:
    """Gate + refit for each symmetric alpha (RAD computed once, or read from `rad`), each model
    evaluated on the test splits; the base detector is evaluated too (alpha = NaN).
    Writes alpha_sensitivity.csv/.png and each checkpoint under <out_dir>/alpha_<a>/."""
    config = config or DearConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = Path(world) if world is not None else default_world()
    model, kind, label = load_base_model(base, kind)
    data = world_data(world, kind)
    frames = [evaluate(model, world, f"{label} (base)", suites, config.device).assign(alpha=np.nan)]
    if rad is not None:
        r = RADResult.load(rad)
        r.check_channels(model.num_features, "the gated layer of this model")
        warn_if_other_detector(r.detector, label, rad)
    else:
        r = dissect(model, data.diag, config, out_dir / "rad.npz", label)
    for a in alphas:
        cfg = dataclasses.replace(config, alpha_low=a, alpha_high=a)
        m, _, _ = load_base_model(base, kind)
        sub = out_dir / f"alpha_{a:g}"
        gate = prune(r, cfg, sub / "gate.npz")
        refine_stage(m, gate, data, cfg, sub / "model_best.pth")
        frames.append(evaluate(m, world, f"DEAR alpha={a:g}", suites, config.device).assign(alpha=a))
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(out_dir / "alpha_sensitivity.csv", index=False)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    avg = df[(df["set"] == AVG) & (df["suite"] == suites[0])]
    for metric, color in (("acc", "tab:blue"), ("auc", "tab:orange")):
        pts = avg.dropna(subset=["alpha"])
        ax.plot(pts["alpha"], pts[metric], "o-", color=color, label=f"DEAR {metric.upper()}")
        base_v = avg[avg["alpha"].isna()][metric]
        if len(base_v):
            ax.axhline(float(base_v.iloc[0]), color=color, ls="--", lw=1, label=f"base {metric.upper()}")
    ax.set_xlabel("alpha (fraction pruned at each end)")
    ax.set_ylabel(f"{suites[0]} avg (%)")
    ax.legend(fontsize=7)
    _save(fig, out_dir / "alpha_sensitivity.png")
    return df


# --------------------------------------------------------------------------- (d) Fig. 8


def inpaint_ablation(
    kind: str,
    out_dir: Path,
    *,
    world: Path | None = None,
    train_config: Any = None,
    compare: dict[str, str | Path] | None = None,
    suites: Sequence[str] = ("mini",),
) -> pd.DataFrame:
    """Train a mini res50nodown from scratch the `kind` way with the diagnostic composites as
    extra fakes (Corvi: added unpaired; Rajan: each paired with the training real it came from,
    same file name), via `detectors.fit.train_detector`; evaluate it next to `compare`
    ({label: detector name or DEAR checkpoint}, e.g. the base and DEAR models).
    Writes <kind>-inpaint.mini.pth (DEAR layout, gate ones), <kind>-inpaint.json (the training
    history, `TrainResult`) and inpaint_ablation.csv/.png."""
    from bench.registry import create_detector
    from dear.checkpoint import load_dear, save_dear
    from detectors.augment import af_augmentation
    from detectors.data import training_loaders
    from detectors.fit import train_detector
    from detectors.mini import mini_config
    from detectors.resnet import GatedResNet as Model, build_res50nodown
    from suites.mini.layout import WorldLayout

    if kind not in KINDS:
        raise BenchError(f"inpaint ablation is for {' or '.join(map(repr, KINDS))}, not {kind!r}")
    world = Path(world) if world is not None else default_world()
    cfg = train_config or mini_config(kind)
    paired = kind == "rajan"
    data = WorldLayout(world).training_data(paired=paired)  # validates the way the base trains (Rajan: val/recon)
    diag = [p for p, _ in diagnostic_pairs(data.diag)]
    torch.manual_seed(cfg.seed)
    if paired:  # each composite with the training real it was made from: the world's diag/ keeps the real's name
        orphans = [p.name for p in diag if not (data.train_real / p.name).is_file()]
        if orphans:
            raise BenchError(f"{data.diag}: the Rajan ablation pairs each composite with the training real of the same "
                             f"name in {data.train_real}; none for {len(orphans)} composite(s), e.g. {orphans[0]}")
        extra: list[tuple[Path, Any]] = [(data.train_real / p.name, p) for p in diag]
    else:
        extra = [(p, 1) for p in diag]
    train, val = training_loaders(data, af_augmentation(crop=cfg.crop, normalization=Model.normalization),
                                  Normalize(*Model.normalization), cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers,
                                  val_batch_size=cfg.val_batch_size, extra_items=extra)
    model = build_res50nodown("mini", drop_rate=cfg.drop_rate)
    result = train_detector(model, train, val, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-inpaint"
    save_dear(model, out_dir / f"{name}.mini.pth")
    (out_dir / f"{name}.json").write_text(json.dumps(dataclasses.asdict(result), indent=1, default=str))
    frames = [evaluate(model, world, f"{kind.capitalize()}-inpaint", suites)]
    for label, ref in (compare or {}).items():
        ref_model = load_dear(ref) if Path(str(ref)).is_file() else create_detector(str(ref)).model
        frames.append(evaluate(ref_model, world, label, suites))
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(out_dir / "inpaint_ablation.csv", index=False)
    plt = _plt()
    avg = df[(df["set"] == AVG) & (df["suite"] == suites[0])]
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(avg), 3.5))
    xs = np.arange(len(avg))
    ax.bar(xs - 0.2, avg["acc"], 0.4, label="Acc")
    ax.bar(xs + 0.2, avg["auc"], 0.4, label="AUC")
    ax.set_xticks(xs, avg["model"], rotation=20, fontsize=7)
    ax.set_ylabel(f"{suites[0]} avg (%)")
    ax.legend(fontsize=7)
    _save(fig, out_dir / "inpaint_ablation.png")
    return df
