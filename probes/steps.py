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
        logits = {g: probe.logits(p.x) for g, p in tests.items()}
        metrics = [{"test": g, "accuracy": accuracy(logits[g], p.y), "auc": auc(logits[g], p.y), "images": len(p.y)}
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


def removal_step(common: Common, pair: list[str], *, drop_per_step: int = 1, max_removed: int | None = None,
                 combine_how: str = "kept-union", iters: int = 100, device: str = "cpu", groups: str | None = None,
                 progress: bool = True, grid: dict[str, tuple[Any, ...]] | None = None) -> dict[str, Any]:
    """Greedy removal on the search pair in both directions, then the transfer matrix with all
    features and with the kept ones (`probes.removal`)."""
    import pandas as pd

    from probes import removal, transfer

    emb = common.load()
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ProbeError(f"--pair needs two different generators D1,D2, got {','.join(pair)}")
    emb.require_generators(pair, "--pair")
    if combine_how not in removal.COMBINE:
        raise ProbeError(f"--combine {combine_how!r}: known {', '.join(removal.COMBINE)}")
    if max_removed is not None and not 0 < max_removed < emb.dim:
        raise ProbeError(f"--max-removed {max_removed} with {emb.dim} features would leave {emb.dim - max_removed}: a probe "
                         f"needs at least one feature (and removal at least one step), so it must be in [1, {emb.dim - 1}]")
    group_map = transfer.parse_groups(groups, emb.generators)
    splits = Splits(emb, common.condition, common.seed)
    a, b = pair
    problems = {g: (splits.problem(g, "train").check(f"generator {g!r}, training split"),
                    splits.problem(g, "test").check(f"generator {g!r}, test split")) for g in pair}
    name = common.run_name or f"{emb.folder.name}-{a}-{b}-{_slug(splits.condition)}"
    run_dir = common.out / "remove-features" / name
    with locked(run_dir):
        C = fit_lr(problems[a][0], seed=common.seed, grid=grid or GRID).C
        paths, curves = {}, {}
        for src, dst in ((a, b), (b, a)):
            ckpt = run_dir.parent / f".{name}.{src}-to-{dst}.checkpoint.npz"
            paths[f"{src}->{dst}"] = removal.search(problems[src][0], problems[dst][1], C, drop_per_step=drop_per_step,
                                                    max_removed=max_removed, iters=iters, checkpoint=ckpt, device=device,
                                                    progress=progress, label=f"{src}->{dst}")
        x_all = emb.vectors[splits.rows.index.to_numpy()].astype(np.float64)
        for key, path in paths.items():
            removed = np.arange(len(path.accuracy))
            points = np.unique(np.linspace(0, len(path.accuracy) - 1, min(40, len(path.accuracy))).astype(int))
            iso = {i: removal.isotropy(np.delete(x_all, path.order[:i], axis=1)) for i in points}
            curves[key] = pd.DataFrame({"removed": removed, "accuracy": np.where(np.array(path.accuracy) < 0, np.nan, path.accuracy),
                                        "loss": path.loss, "isotropy": [iso.get(i, np.nan) for i in removed],
                                        "feature": [None, *path.order]})
        kept = removal.combine([p.kept(emb.dim) for p in paths.values()], combine_how, emb.dim)
        before = transfer.transfer_matrix(splits, "lr", groups=group_map, grid=grid)
        after = transfer.transfer_matrix(splits, "lr", features=kept, groups=group_map, grid=grid)
        others = [g for g in emb.generators if g not in pair]
        summary = {
            "pair": pair, "C": C, "combine": combine_how, "features": emb.dim, "kept": len(kept),
            "cut": {k: {"removed": p.cut, "accuracy_all": p.accuracy[0], "accuracy_cut": p.accuracy[p.cut]} for k, p in paths.items()},
            "ood_accuracy": {"all_features": round(before.ood_mean(), 2), "kept": round(after.ood_mean(), 2)},
            "ood_accuracy_other_generators": {"all_features": round(before.ood_mean(among=others), 2) if len(others) > 1 else None,
                                              "kept": round(after.ood_mean(among=others), 2) if len(others) > 1 else None},
        }
        from probes.plots import heatmap, removal_curve

        title = f"greedy removal on {emb.encoder.name} ({emb.dim} features), {emb.display(splits.condition)}"
        files: dict[str, Any] = {
            "kept_features.csv": lambda p: pd.DataFrame({"feature": kept}).to_csv(p, index=False),
            "removal_curve.csv": lambda p: pd.concat([c.assign(direction=k) for k, c in curves.items()]).to_csv(p, index=False),
            "removal_curve.png": lambda p: removal_curve(curves, title, p),
            "transfer_all_accuracy.csv": lambda p: before.table().round(2).to_csv(p),
            "transfer_kept_accuracy.csv": lambda p: after.table().round(2).to_csv(p),
            "transfer_kept_accuracy.png": lambda p: heatmap(after.table(), f"{title}: {len(kept)} kept ({combine_how})", p),
        }
        write_folder(run_dir, "remove-features", {"embeddings": str(emb.folder), "encoder": emb.encoder.to_json(),
                                                  "split": splits.manifest(), "summary": summary}, files)
    return {"folder": str(run_dir), **summary, "accuracy": after.table().round(1)}


def heads_step(common: Common, train: str, val: str, *, top: int = 3, C: float = 1.0, device: str = "cpu",
               groups: str | None = None, grid: dict[str, tuple[Any, ...]] | None = None) -> dict[str, Any]:
    """Rank every attention head by a probe on its contribution, keep the top ones, and report
    the transfer matrix of a probe on their concatenation without the validation generator."""
    import torch
    from safetensors.torch import save_file

    from probes import heads, transfer

    emb = common.load()
    emb.require_generators([train, val], "--train/--val")
    if train == val:
        raise ProbeError("--train and --val must be different generators")
    layout = heads.layout_of(emb.manifest, emb.dim)
    gens = [g for g in emb.generators if g != val]
    transfer.check_generators(gens, "the transfer matrix without the validation generator")
    group_map = {k: [g for g in v if g != val] for k, v in transfer.parse_groups(groups, emb.generators).items()}
    splits = Splits(emb, common.condition, common.seed)
    run_dir = common.out / "heads" / (common.run_name or f"{emb.folder.name}-{train}-{val}-{_slug(splits.condition)}")
    with locked(run_dir):
        sel = heads.select(splits, train, val, layout, top=top, C=C, device=device)
        matrix = transfer.transfer_matrix(splits, "lr", generators=gens, features=sel.features, groups=group_map, grid=grid)
        full = transfer.transfer_matrix(splits, "lr", generators=gens, groups=group_map, grid=grid)
        n_heads = layout[1]
        directions = {f"head.L{layer}H{h}": torch.as_tensor(sel.weights[layer * n_heads + h], dtype=torch.float32) for layer, h in sel.top}
        summary = {"train": train, "val": val, "top": [f"L{layer}H{h}" for layer, h in sel.top], "C": C,
                   "ood_accuracy": {"top_heads": round(matrix.ood_mean(), 2), "all_heads": round(full.ood_mean(), 2)}}
        from probes.plots import heatmap

        write_folder(run_dir, "heads", {"embeddings": str(emb.folder), "encoder": emb.encoder.to_json(), "layout": layout,
                                        "split": splits.manifest(), "summary": summary}, {
            "head_ranking.csv": lambda p: sel.ranking.round(4).to_csv(p, index=False),
            "transfer_top_heads_accuracy.csv": lambda p: matrix.table().round(2).to_csv(p),
            "transfer_top_heads_accuracy.png": lambda p: heatmap(matrix.table(), f"top heads {summary['top']} of {emb.encoder.name}", p),
            "transfer_all_heads_accuracy.csv": lambda p: full.table().round(2).to_csv(p),
            "directions.safetensors": lambda p: save_file(directions, str(p)),
        })
    return {"folder": str(run_dir), **summary, "accuracy": matrix.table().round(1)}


def explain_step(source: Path, out: Path, *, k: int = 10, vocab_limit: int | None = 5000, phrases: Path | None = None,
                 run_name: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Nearest vocabulary tokens (and phrases) to the directions a fit, a residual transfer or a
    head selection wrote (`probes.explain`)."""
    from probes import explain
    from probes.folders import read_folder
    from probes.probe_file import ProbeFile

    manifest = read_folder(source, ("fit", "transfer", "heads"))
    where = str(source)
    if manifest["step"] == "fit":
        probe = ProbeFile.load(Path(source) / "probe.safetensors")
        spec = probe.encoder
        explain.require_text_space(spec, where)
        if probe.features is not None:
            raise ProbeError(f"{where}: the probe reads {len(probe.features)} selected features, not the whole embedding; "
                             "its weight is not a direction of the text space")
        directions = {f"lr.{probe.meta.get('generator')}": probe.weight}
    else:
        from bench.weights import load_state

        from probes.spec import EncoderSpec

        spec = EncoderSpec.from_json(manifest.get("encoder") or {}, where)
        explain.require_text_space(spec, where)
        file = Path(source) / "directions.safetensors"
        if not file.is_file():
            raise ProbeError(f"{where}: no directions to explain (a transfer folder has them with --method residual)")
        directions = {k: v.double().numpy() for k, v in load_state(file).items()}
    words_file = None
    if phrases is not None:
        if not Path(phrases).is_file():
            raise ProbeError(f"--phrases {phrases}: no such file")
        words_file = [line.strip() for line in Path(phrases).read_text().splitlines() if line.strip()]
        if not words_file:
            raise ProbeError(f"--phrases {phrases}: no phrase in it")
    from probes.encoders import load_clip_encoder

    encoder = load_clip_encoder(spec, with_text=True)
    if encoder.text is None:
        raise ProbeError(f"{spec.name}: the backbone was loaded without a text tower (its weights file holds the vision tower "
                         "only), so there is no text space to read directions in")
    encoder.to(device)
    vocab = explain.vocabulary(encoder.text.tokenize, vocab_limit)
    tables = [explain.explain(directions, explain.TextSpace.of(encoder, vocab), k, "token")]
    if words_file:
        tables.append(explain.explain(directions, explain.TextSpace.of(encoder, words_file), k, "phrase"))
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    run_dir = out / "explain" / (run_name or Path(source).name)
    with locked(run_dir):
        write_folder(run_dir, "explain", {"source": str(source), "encoder": spec.to_json(), "vocabulary": len(vocab),
                                          "phrases": len(words_file or [])}, {
            "nearest_texts.csv": lambda p: table.to_csv(p, index=False)})
    return {"folder": str(run_dir), "vocabulary": len(vocab), "table": table}
