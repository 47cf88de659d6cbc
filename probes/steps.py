"""The probe steps that write run folders (`bench probe fit`, `transfer`): each reads an
embeddings folder (`probes.data.Embeddings`), checks every input before the first fit, and
writes its outputs with a manifest (`probes.folders`)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.data import Embeddings, Splits
from probes.folders import locked, write_folder
from probes.lr import GRID, accuracy, auc, fit_lr
from probes.spec import ProbeError


@dataclass(frozen=True)
class Common:
    """What every step shares: the embeddings, the condition, the split seed, where to write."""

    embeddings: Path
    out: Path = Path("results/probe")
    condition: str | None = None
    seed: int = 0
    run_name: str | None = None

    def load(self) -> Embeddings:
        return Embeddings.load(self.embeddings)


def read_features(path: str | Path | None, dim: int) -> np.ndarray | None:
    """Indices of the features to keep, from a removal's kept_features.csv (column `feature`)
    or a text file of integers; a list that leaves no feature is refused."""
    if path is None:
        return None
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"--features {path}: no such file")
    try:
        kept = pd.read_csv(path)["feature"].to_numpy() if path.suffix == ".csv" else np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (ValueError, KeyError) as exc:
        raise ProbeError(f"--features {path}: expected a CSV with a 'feature' column or whitespace-separated integers ({exc})") \
            from None
    kept = np.unique(np.asarray(kept, dtype=np.int64))
    if kept.size == 0:
        raise ProbeError(f"--features {path}: keeps 0 features; a probe needs at least one")
    if kept.min() < 0 or kept.max() >= dim:
        raise ProbeError(f"--features {path}: indices must be in [0, {dim}), found {kept.min()}..{kept.max()}")
    return kept


def fit_step(common: Common, generator: str, *, tag: str | None = None, install: bool = False, features: str | None = None,
             grid: dict[str, tuple[Any, ...]] | None = None) -> dict[str, Any]:
    """Fit the paper's LR probe on one generator (training split) and write it as a probe file,
    with its accuracy and AUC on every generator's test split; `install` copies it to the
    weights folder as `clip-lr.<tag>`."""
    emb = common.load()
    emb.require_generators([generator], "--train")
    kept = read_features(features, emb.dim)
    splits = Splits(emb, common.condition, common.seed)
    train = splits.problem(generator, "train", kept).check(f"generator {generator!r}, training split")
    tests = {g: splits.problem(g, "test", kept).check(f"generator {g!r}, test split") for g in emb.generators}
    tag = tag or f"{emb.encoder.slug}-{generator}" + ("" if splits.condition == "original" else "-pp")
    run_dir = common.out / "fit" / (common.run_name or tag)
    with locked(run_dir):
        probe = fit_lr(train, seed=common.seed, grid=grid or GRID)
        metrics = [{"test": g, "accuracy": accuracy(probe.logits(p.x), p.y), "auc": auc(probe.logits(p.x), p.y), "images": len(p.y)}
                   for g, p in tests.items()]
        meta = {"encoder": emb.encoder.to_json(), "fingerprint": emb.manifest["fingerprint"], "generator": generator,
                "condition": splits.condition, "tag": tag, "embeddings": str(emb.folder), "split": splits.manifest(),
                "lr": probe.record(), "features": None if kept is None else len(kept), "labels": "1 = fake (logit > 0 = fake)"}
        from probes.probe_file import ProbeFile

        pf = ProbeFile(probe.weight, kept, meta)
        import pandas as pd

        write_folder(run_dir, "fit", {"probe": meta, "test": metrics}, {
            "probe.safetensors": lambda p: pf.save(p),
            "probe.json": lambda p: None if p.is_file() else p.write_text("{}"),
            "test_metrics.csv": lambda p: pd.DataFrame(metrics).to_csv(p, index=False),
        })
    installed = None
    if install:
        from bench.weights import weights_dir
        from probes.catalog import NAME

        target = Path(weights_dir()) / NAME / f"{tag}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "probe.safetensors", target)
        shutil.copyfile(run_dir / "probe.json", target.with_suffix(".json"))
        installed = f"{NAME}.{tag}"
    return {"folder": str(run_dir), "tag": tag, "installed": installed, "lr": probe.record(), "test": metrics}


def transfer_step(common: Common, method: str = "lr", *, groups: str | None = None, features: str | None = None,
                  train_condition: str | None = None, grid: dict[str, tuple[Any, ...]] | None = None) -> dict[str, Any]:
    """The transfer matrix (accuracy and AUC) under one condition, as CSV and heat maps."""
    from probes import transfer

    emb = common.load()
    transfer.check_generators(emb.generators)
    group_map = transfer.parse_groups(groups, emb.generators)
    kept = read_features(features, emb.dim)
    splits = Splits(emb, common.condition, common.seed)
    train_splits = Splits(emb, train_condition, common.seed) if train_condition else splits
    name = common.run_name or f"{emb.folder.name}-{method}-{_slug(splits.condition)}" + (
        "" if train_splits is splits else f"-from-{_slug(train_splits.condition)}") + ("" if kept is None else "-kept")
    run_dir = common.out / "transfer" / name
    with locked(run_dir):
        matrix = transfer.transfer_matrix(splits, method, features=kept, train_splits=train_splits, groups=group_map,
                                          grid=grid)
        return write_matrix(run_dir, matrix, emb, {"split": splits.manifest()})


def write_matrix(run_dir: Path, matrix: Any, emb: Embeddings, extra: dict[str, Any]) -> dict[str, Any]:
    """CSV tables and heat maps of a transfer matrix, with a manifest."""
    from probes.plots import heatmap

    title = (f"{matrix.method} on {emb.encoder.name} ({emb.encoder.tap}, {matrix.features} features), "
             f"{emb.display(matrix.condition)}")
    files: dict[str, Any] = {
        "transfer_long.csv": lambda p: matrix.long().to_csv(p, index=False),
    }
    for metric in ("accuracy", "auc"):
        table = matrix.table(metric)
        files[f"transfer_{metric}.csv"] = lambda p, t=table: t.round(2).to_csv(p)
        files[f"transfer_{metric}.png"] = lambda p, t=table, m=metric: heatmap(t, title, p, f"{m} (%)")
        if matrix.groups:
            files[f"groups_{metric}.csv"] = lambda p, m=metric: matrix.group_table(m).round(2).to_csv(p, index=False)
    summary = matrix.summary()
    manifest = {"embeddings": str(emb.folder), "encoder": emb.encoder.to_json(), "summary": summary, "groups": matrix.groups,
                "generators": matrix.generators, **extra}
    if matrix.method == "residual":
        import torch
        from safetensors.torch import save_file

        directions = {f"residual.{g}": torch.as_tensor(p.direction, dtype=torch.float32) for g, p in matrix.probes.items()}
        files["directions.safetensors"] = lambda p: save_file(directions, str(p))
    write_folder(run_dir, "transfer", manifest, files)
    return {"folder": str(run_dir), **summary, "accuracy": matrix.table("accuracy").round(1)}


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")
