"""Computing scores and reading them back: the part of a run between the suite and the run folder.

`score_all` finds what the store lacks for each detector and condition, runs one feed pass per
group of detectors resident on the device (`bench.feed`: each image decoded once for all of
them), batches each detector's tensors with the one batcher (`bench.batching`) under a pixel
budget, stores every batch as it finishes (a crash loses at most the batches in flight), and
reads the scores table back (`assemble`).

The same loop feeds `bench.api.Embedder`s (frozen encoders whose forward returns (B, D)
vectors, for the probes of Gaintseva et al., arXiv 2406.15035): `compute_missing` is the part of
`score_all` that computes, and an embedder's rows go to the store's `vectors` table instead of
`scores`. One loop rather than a second one for features, so embeddings get the decoding,
post-processing seeds, device groups, per-image failures and crash safety of scores for free.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, NamedTuple

import pandas as pd

from bench.api import FAKE, REAL, Detector, Embedder, ImageRecord, Suite, Transform
from bench.batching import ShapeBatcher
from bench.conditions import ORIGINAL_KEY, Condition
from bench.devices import cache_suffix, compute_precision, default_workers, offload, pixel_budget, tune_allocator
from bench.feed import FeedDataset, WorkItem, identity as feed_identity, plan_chunks
from bench.rundir import FAILURE_COLUMNS, SCORE_COLUMNS
from bench.selection import row_label
from bench.store import ScoreRow, ScoreStore, VectorRow

log = logging.getLogger("bench.runner")


def fingerprint(det: Detector) -> str:
    """The cache key of a detector's weights. Without one, cache under the class and tag:
    reuse then assumes the code and weights behind that tag did not change."""
    if det.fingerprint:
        return det.fingerprint
    cls = type(det)
    return f"unversioned:{cls.__module__}.{cls.__qualname__}:{det.info.name}:{det.weights}"


def score_key(det: Detector, precision: str) -> str:
    """Where a detector's scores at an effective precision live in the store: other numerics,
    other scores (fp32 keeps the bare weights fingerprint, see `bench.devices.cache_suffix`)."""
    return fingerprint(det) + cache_suffix(precision)


class _DetectorFailed(Exception):
    pass


class _Entry(NamedTuple):
    """One row of a worker's block, waiting in a detector's batcher."""

    item: int  # work index
    tensor: Any  # the row (a view into block.tensor)
    block: Any  # the block it came from
    row: int


class _Scorer:
    """One detector's side of a feed pass: its batcher, its forwards and what they stored."""

    def __init__(self, det: Detector, fp: str, budget: int | None, config: Any):
        self.det, self.fp = det, fp
        self.batcher: ShapeBatcher[_Entry] = ShapeBatcher(config.batch_size, pixel_budget=budget)
        self.failed: str | None = None
        self.computed, self.seconds = 0, 0.0
        self.batch_sizes: dict[int, int] = {}
        self.vectors = isinstance(det, Embedder)

    def forward(self, entries: list[_Entry], device: str) -> list[Any]:
        import torch

        block = entries[0].block
        whole = len(entries) == len(block.items) and all(e.block is block and e.row == k for k, e in enumerate(entries))
        t0 = time.perf_counter()
        try:
            x = block.tensor if whole else torch.stack([e.tensor for e in entries])  # a worker's block as it came
            x = self.det.prepare(x.to(device, non_blocking=device.startswith("cuda")))
            with torch.inference_mode():
                out = self.det.forward(x)
            out = torch.as_tensor(out).detach().float()
            if self.vectors:  # (B, D) rows; a wrong shape is named below
                logits = list(out.cpu().numpy()) if out.dim() == 2 and out.shape[1] == self.det.dim else None
            else:
                logits = out.reshape(-1).cpu().tolist()
        except Exception as exc:
            raise _DetectorFailed(f"forward failed on a batch of shape {(len(entries), *entries[0].tensor.shape)}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.seconds += time.perf_counter() - t0
        if logits is None:
            raise _DetectorFailed(f"forward returned shape {tuple(out.shape)}, not (B, {self.det.dim}) vectors")
        if len(logits) != len(entries):
            raise _DetectorFailed(f"forward returned {len(logits)} outputs for a batch of {len(entries)} images")
        self.batch_sizes[len(entries)] = self.batch_sizes.get(len(entries), 0) + 1
        return logits


def _feed(
    work: list[WorkItem], scorers: dict[int, _Scorer], conds: list[Condition], transforms: list[Transform | None],
    sizes: dict[str, tuple[int, int]], store: ScoreStore, config: Any, device: str, progress: bool,
) -> None:
    """One pass over `work` for the detectors in `scorers` (resident on `device` together):
    each image read, decoded and post-processed once, every score stored as its batch finishes."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    preprocessors = [scorers[d].det.preprocess() if d in scorers else None for d in range(max(scorers) + 1)]
    chunks = plan_chunks(work, sizes, config.batch_size)
    on_cuda = device.startswith("cuda")
    workers = config.workers if config.workers is not None else default_workers()
    loader = DataLoader(FeedDataset(work, chunks, transforms, config.seed, preprocessors), batch_size=None, shuffle=False,
                        num_workers=min(workers, len(chunks)), collate_fn=feed_identity, pin_memory=on_cuda)
    total = sum(len(w.dets) for w in work)
    names = ",".join(scorers[d].det.info.name for d in scorers)
    bar = tqdm(total=total, unit="score", desc=names if len(names) < 40 else f"{len(scorers)} detectors", disable=not progress,
               dynamic_ncols=True)

    def flush(d: int, entries: list[_Entry]) -> None:
        sc = scorers[d]
        try:
            logits = sc.forward(entries, device)
        except _DetectorFailed as exc:
            sc.failed = str(exc)
            log.warning("detector %s stopped; its finished batches are kept (reason in the run's errors)", label(sc.det))
            return
        rows, bad = [], []
        for e, logit in zip(entries, logits):
            w = work[e.item]
            if not _finite(logit):
                bad.append((w.path, sc.fp, conds[w.cond].store_key, "the detector returned NaN"))
            elif sc.vectors:
                rows.append(VectorRow(sc.fp, w.sha, conds[w.cond].store_key, logit, params[e.item]))
            else:
                rows.append(ScoreRow(sc.fp, w.sha, conds[w.cond].store_key, logit, params[e.item]))
        # one transaction per batch: a crash loses at most the batches in flight
        (store.put_vectors if sc.vectors else store.put_many)(rows)
        store.record_failures(bad)
        sc.computed += len(rows)
        bar.update(len(entries))

    params: dict[int, str] = {}
    try:
        with compute_precision(config.precision, device):  # once per pass: flags set and restored around it
            for chunk in loader:
                params.update(chunk.params)
                failed = [(work[i].path, scorers[dd].fp, conds[work[i].cond].store_key, reason)
                          for i, d, reason in chunk.failures for dd in (work[i].dets if d < 0 else (d,)) if dd in scorers]
                store.record_failures(failed)  # one transaction per chunk, as for scores
                bar.update(len(failed))
                for block in chunk.blocks:
                    sc = scorers[block.det]
                    if sc.failed:
                        bar.update(len(block.items))
                        continue
                    for row, i in enumerate(block.items):  # conditions may share a batch: each entry knows its own
                        for batch in sc.batcher.add(_Entry(i, block.tensor[row], block, row)):
                            flush(block.det, batch)
            for d, sc in scorers.items():
                for batch in sc.batcher.drain():
                    if not sc.failed:
                        flush(d, batch)
    finally:
        bar.close()


def _finite(value: Any) -> bool:
    """A logit that is not NaN, or a vector without NaN or inf."""
    if isinstance(value, float):
        return not math.isnan(value)
    import numpy as np

    return bool(np.isfinite(value).all())


def _stored(store: ScoreStore, det: Detector, key: str, condition_key: str, shas: list[str]) -> Any:
    """What the store holds already for `det` (scores, or vectors of an Embedder): a mapping by sha."""
    return (store.get_vectors if isinstance(det, Embedder) else store.get_many)(key, condition_key, shas)


def _device_groups(dets: list[Detector], device: str) -> list[list[int]]:
    """Which detectors share a feed pass, resident on the device together: all of them, unless
    their parameters would take more than half of the GPU's free memory (then greedy groups)."""
    if not device.startswith("cuda") or len(dets) < 2:
        return [list(range(len(dets)))]
    import torch

    free = torch.cuda.mem_get_info(torch.device(device))[0] // 2
    groups: list[list[int]] = [[]]
    used = 0
    for d, det in enumerate(dets):
        size = sum(p.numel() * p.element_size() for m in _modules(det) for p in m.parameters())
        if groups[-1] and used + size > free:
            groups.append([])
            used = 0
        groups[-1].append(d)
        used += size
    return groups


def _modules(det: Detector) -> list[Any]:
    import torch

    return [v for v in vars(det).values() if isinstance(v, torch.nn.Module)]


class Computed(NamedTuple):
    """What `compute_missing` leaves for reading results back: each path's content hash (None:
    unreadable, reason in `unreadable`), the path read for each hash, per-detector stats, memory."""

    sha_of: dict[str, str | None]
    path_of: dict[str, str]
    unreadable: dict[str, str]
    stats: list[dict[str, Any]]
    memory: dict[str, float]


def score_all(
    store: ScoreStore, suite: Suite, built: list[Detector], pairs: list[tuple[Condition, Transform | None]],
    records_of: list[list[ImageRecord]], config: Any, device: str, precision: str, progress: bool,
    errors: dict[str, str], options: dict[str, dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]], dict[str, float]]:
    """Score what the store lacks for every detector and condition, in one feed pass per group
    of detectors resident on the device, then read the scores table back from the store. A
    detector that fails lands in `errors`; the others go on. Also returns the peak RSS (MiB)
    after each step (hashing, scoring, assembly) and of the workers."""
    done = compute_missing(store, built, pairs, records_of, config, device, precision, progress, errors)
    conds = [c for c, _ in pairs]
    scores, failures = assemble(store, suite, built, conds, records_of, done.sha_of, done.path_of, done.unreadable, precision,
                                options or {})
    memory = done.memory
    memory["after_assembly"] = peak_rss_mib()
    memory["workers"] = peak_rss_mib(children=True)
    return scores, failures, done.stats, memory


def compute_missing(
    store: ScoreStore, built: list[Detector], pairs: list[tuple[Condition, Transform | None]],
    records_of: list[list[ImageRecord]], config: Any, device: str, precision: str, progress: bool,
    errors: dict[str, str],
) -> Computed:
    """Compute and store what the store lacks for every detector (or `Embedder`) and condition,
    in one feed pass per group resident on the device; a detector that fails lands in `errors`."""
    conds = [c for c, _ in pairs]
    transforms = [t for _, t in pairs]
    unreadable: dict[str, str] = {}
    paths = list(dict.fromkeys(r.path for recs in records_of for r in recs))
    sha_of = dict(zip(paths, _hash_all(store, paths, unreadable, progress)))
    memory = {"after_hashing": peak_rss_mib()}
    path_of = {s: p for p, s in sha_of.items() if s is not None}
    keys = [score_key(det, precision) for det in built]
    need: dict[tuple[str, int], list[int]] = {}
    todo = [0] * len(built)
    for d in range(len(built)):
        queued: set[tuple[str, str]] = set()  # (sha, store key): a copy equal to its original is scored once
        for ci, cond in enumerate(conds):
            wanted = [s for s in dict.fromkeys(sha_of[r.path] for r in records_of[ci] if not cond.fakes_only or r.label == FAKE)
                      if s is not None and (s, cond.store_key) not in queued]
            have = _stored(store, built[d], keys[d], cond.store_key, wanted)
            for s in wanted:
                if s not in have:
                    need.setdefault((s, ci), []).append(d)
                    todo[d] += 1
            queued.update((s, cond.store_key) for s in wanted)
    scorers: dict[int, _Scorer] = {}
    budget = config.pixel_budget or pixel_budget(device)
    if need and not config.compute:  # a merge: what the shards did not store is missing, not computed here
        for d, n in enumerate(todo):
            if n:
                errors[label(built[d])] = (f"{n} score(s) are in no shard store: a shard stopped before them; rerun the "
                                            "shard (same command and --shard), then merge again")
        need = {}
    if need:
        work = [WorkItem(path_of[s], s, ci, tuple(ds)) for (s, ci), ds in need.items()]
        sizes = store.image_sizes(list(dict.fromkeys(w.sha for w in work)), path_of)
        if device == "cpu":
            tune_allocator()
        for group in _device_groups(built, device):
            members = {d: _Scorer(built[d], keys[d], budget, config) for d in group if todo[d]}
            if not members:
                continue
            mine = [WorkItem(w.path, w.sha, w.cond, tuple(d for d in w.dets if d in members)) for w in work]
            try:
                for sc in members.values():
                    sc.det.to(device)
                _feed([w for w in mine if w.dets], members, conds, transforms, sizes, store, config, device, progress)
            except Exception as exc:  # the feed itself broke (a worker died): every detector of the pass stops
                for sc in members.values():
                    sc.failed = sc.failed or f"{type(exc).__name__}: {exc}"
            finally:
                for sc in members.values():
                    offload(sc.det, device)
            scorers.update(members)
    stats = []
    for d, det in enumerate(built):
        sc = scorers.get(d)
        if sc is not None and sc.failed:
            errors[label(det)] = sc.failed
        stats.append({"detector": label(det), "to_compute": todo[d], "computed": sc.computed if sc else 0,
                      "seconds": round(sc.seconds, 3) if sc else 0.0,
                      "batch_sizes": dict(sorted(sc.batch_sizes.items())) if sc else {}})
    memory["after_scoring"] = peak_rss_mib()
    return Computed(sha_of, path_of, unreadable, stats, memory)


def peak_rss_mib(children: bool = False) -> float:
    """The process's peak resident memory so far (its finished DataLoader workers' with
    `children`), in MiB: recorded after each step of a run, so the step that sets the peak shows."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10, 1)


def _hash_all(store: ScoreStore, paths: list[str], unreadable: dict[str, str], progress: bool, chunk: int = 2000) -> list[str | None]:
    """Content hashes of every file (cached by the file's stat stamp), with a bar on big first runs."""
    from tqdm.auto import tqdm

    out: list[str | None] = []
    with tqdm(total=len(paths), unit="file", desc="hashing", disable=not progress or len(paths) <= chunk) as bar:
        for i in range(0, len(paths), chunk):
            out += store.file_shas(paths[i : i + chunk], errors=unreadable)
            bar.update(min(chunk, len(paths) - i))
    return out


def label(det: Detector) -> str:
    return det.weights or det.info.name


def assemble(
    store: ScoreStore, suite: Suite, dets: list[Detector], conds: list[Condition], records_of: list[list[ImageRecord]],
    sha_of: dict[str, str | None], path_of: dict[str, str], unreadable: dict[str, str], precision: str = "fp32",
    options: dict[str, dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores table (columns SCORE_COLUMNS, suite set order) and the per-image failures;
    `precision` (the effective one) selects which cached scores are read, and `options` (the
    builder options of each detector, by label) go into its rows' display name."""
    set_meta = {s.name: (i, s) for i, s in enumerate(suite.sets)}
    known = [s for s in sha_of.values() if s is not None]
    rows: list[dict[str, Any]] = []
    fails: list[dict[str, Any]] = []
    for det in dets:
        fp, info = score_key(det, precision), det.info
        display = row_label(det, (options or {}).get(label(det)))
        cache: dict[str, tuple[dict, dict]] = {}  # store key -> (scores by sha, failures by path)

        def lookup(key: str) -> tuple[dict, dict]:
            if key not in cache:
                cache[key] = (store.get_many(fp, key, known), store.failures(fp, key))
            return cache[key]

        for cond, records in zip(conds, records_of):
            stored, failed = lookup(cond.store_key)
            for rec in records:
                sha = sha_of[rec.path]
                order, iset = set_meta[rec.set]
                reuse = cond.fakes_only and rec.label == REAL  # reals keep their original score
                base = {"detector": info.name, "weights": label(det), "condition": cond.display, "condition_key": cond.key,
                        "set": rec.set, "path": rec.path, "image_sha": sha, "label": int(rec.label)}  # fmt: skip
                hit_from, fail_from = lookup(ORIGINAL_KEY) if reuse else (stored, failed)
                hit = None if sha is None else hit_from.get(sha)
                if hit is None:
                    # Failures are recorded under the path that was read for this sha.
                    reason = unreadable.get(rec.path) or fail_from.get(path_of.get(sha, ""))
                    if reason is not None:
                        fails.append({**base, "reason": reason})
                    continue
                logit, params = hit
                rows.append({
                    **base, "display_name": display, "family": info.family, "calibrated": bool(info.calibrated),
                    "suite": suite.name, "set_display": iset.display_name, "set_kind": iset.kind, "real_set": iset.real_set,
                    "set_order": order, "params": "{}" if reuse else params, "logit": float(logit),
                })  # fmt: skip
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    if not scores.empty:
        scores = scores.astype({"label": "int64", "set_order": "int64", "logit": "float64", "calibrated": "bool"})
    failures = pd.DataFrame(fails, columns=FAILURE_COLUMNS)
    return scores, failures
