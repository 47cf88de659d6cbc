"""`bench probe embed`: a suite's image embeddings under an encoder tap, computed once through the
runner's scoring loop (`bench.scoring.compute_missing`: the same decoding, post-processing seeds,
batching, devices, per-image failures and crash safety as scores) and cached in the score store's
`vectors` table under (encoder fingerprint + tap, image sha256, condition key), so a rerun or a
killed run computes only what is missing. The folder it writes (`vectors.npy`, `index.csv`,
`failures.csv`, `manifest.json`) is what every later probe step reads: fits are CPU seconds.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probes.folders import locked, write_folder
from probes.spec import EncoderSpec, ProbeError


@dataclass
class EmbedConfig:
    """What `bench probe embed` computes; stored in its manifest."""

    suite: str
    encoder: EncoderSpec
    post_process: bool = False
    chain: str = "rajan"
    seed: int = 0
    out: Path = Path("results/probe")
    run_name: str | None = None  # default: <suite>-<encoder slug>
    device: str | None = None
    batch_size: int = 32
    workers: int | None = None
    max_per_set: int | None = None
    data_root: str | None = None
    shard: str | None = None  # "K/N": embed only that shard (as `bench run --shard`); None: the launcher's, else all

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / "embed" / (self.run_name or f"{self.suite}-{self.encoder.slug}")


@dataclass
class EmbedResult:
    folder: Path
    count: int
    failures: int
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    computed: int = 0
    shard: str | None = None  # set when this call embedded one shard and wrote no folder


def _run_config(config: EmbedConfig) -> Any:
    from bench.runner import RunConfig

    return RunConfig(suite=config.suite, post_process=config.post_process, chain=config.chain, seed=config.seed, out=Path(config.out),
                     device=config.device, batch_size=config.batch_size, workers=config.workers, max_per_set=config.max_per_set,
                     data_root=config.data_root)


def embed(config: EmbedConfig, progress: bool = True) -> EmbedResult:
    """Embed the suite (every condition), export the folder; see the module docstring.

    With a shard ("K/N", or the one torchrun/SLURM assigns), only the images that shard owns are
    embedded (the same stable split as `bench run --shard`), into the shard's own store
    `<out>/cache.shard-K-of-N.sqlite`, and no folder is written. The unsharded call then reads
    every shard store beside the main one, computes only what no shard stored, and writes the
    folder: it is the merge."""
    from bench import sharding
    from bench.conditions import conditions_for
    from bench.devices import effective_precision, resolve_device
    from bench.images import pixel_limit
    from bench.runner import load_suite, shard_device
    from bench.scoring import compute_missing
    from probes.encoders import build_embedder

    t0 = time.perf_counter()
    started = datetime.now(timezone.utc)
    run = _run_config(config)
    pairs = conditions_for(run)  # an unknown chain fails here, before the suite or a model is loaded
    shard = sharding.resolve(config.shard)
    device = resolve_device(shard_device(config.device, shard))  # under torchrun/SLURM: the local rank's GPU
    precision = effective_precision("fp32", device)
    suite, source = load_suite(run)
    if not suite.records:
        raise ProbeError(f"suite {suite.name!r} has no images")
    run_dir = config.run_dir
    marker_name = f"probe-embed-{run_dir.name}"
    with locked(sharding.marker_dir(config.out, marker_name) / shard.tag if shard else run_dir):
        embedder = build_embedder(config.encoder, device)
        records_of = [sharding.owned(suite.records, suite.source, shard) for _ in pairs]
        errors: dict[str, str] = {}
        store = sharding.open_store(config.out, shard, read_shards=True)  # unsharded: the gather reads every shard's
        with store, pixel_limit(None):
            done = compute_missing(store, [embedder], pairs, records_of, run, device, precision, progress, errors)
            if shard:
                sharding.write_marker(config.out, marker_name, shard, {"stats": done.stats, "errors": errors})
                return EmbedResult(run_dir, 0, 0, errors, time.perf_counter() - t0,
                                   sum(s["computed"] for s in done.stats), shard=shard.tag)
            index, vectors, failures = _gather(store, embedder.fingerprint, suite, [c for c, _ in pairs], done)
        if not len(index):
            raise ProbeError(f"no image of suite {suite.name!r} was embedded: " + (next(iter(errors.values()), "") or
                             "; ".join(failures["reason"].head(3))))
        prep = embedder.preprocess()
        manifest = {
            "encoder": config.encoder.to_json(), "fingerprint": embedder.fingerprint, "dim": int(embedder.dim),
            "layout": getattr(embedder, "layout", None), "preprocessing": getattr(prep, "describe", lambda: type(prep).__name__)(),
            "config": {**dataclasses.asdict(config), "encoder": config.encoder.to_json(), "out": str(config.out)},
            "suite": {"name": suite.name, "source": suite.source, "weights_tag": getattr(source, "weights_tag", None),
                      "sets": [{"name": s.name, "display_name": s.display_name, "kind": s.kind, "real_set": s.real_set,
                                "images": len(s)} for s in suite.sets]},
            "conditions": [{"key": c.key, "display": c.display, "spec": c.spec} for c, _ in pairs],
            "device": device, "counts": {"vectors": len(index), "failures": len(failures), "per_detector": done.stats},
            "errors": errors, "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_folder(run_dir, "embed", manifest, {
            "vectors.npy": lambda p: np.save(p, vectors),
            "index.csv": lambda p: index.to_csv(p, index=False),
            "failures.csv": lambda p: failures.to_csv(p, index=False),
        })
    computed = sum(s["computed"] for s in done.stats)
    return EmbedResult(run_dir, len(index), len(failures), errors, time.perf_counter() - t0, computed)


def _gather(store: Any, fp: str, suite: Any, conds: list[Any], done: Any) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Every stored vector of the suite's records, in suite order per condition, and the failures."""
    kinds = {s.name: (s.kind, s.real_set) for s in suite.sets}
    known = [s for s in done.sha_of.values() if s is not None]
    rows, vecs, fails = [], [], []
    for cond in conds:
        stored = store.get_vectors(fp, cond.store_key, known)
        failed = store.failures(fp, cond.store_key)
        for rec in suite.records:
            sha = done.sha_of.get(rec.path)
            base = {"path": rec.path, "image_sha": sha, "set": rec.set, "label": int(rec.label), "condition_key": cond.key}
            hit = stored.get(sha) if sha else None
            if hit is None:
                reason = done.unreadable.get(rec.path) or failed.get(done.path_of.get(sha or "", ""), "not embedded")
                fails.append({**base, "reason": reason})
                continue
            kind, real_set = kinds[rec.set]
            rows.append({**base, "set_kind": kind, "real_set": real_set, "condition": cond.display, "params": hit[1]})
            vecs.append(hit[0])
    dim = len(vecs[0]) if vecs else 0
    vectors = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
    return pd.DataFrame(rows), vectors, pd.DataFrame(fails, columns=["path", "image_sha", "set", "label", "condition_key", "reason"])
