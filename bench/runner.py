"""Score a suite with detectors under conditions, resumably, and export the scores table.

A *condition* is how images are shown to a detector: "original", or a post-processing chain
spec with its seed (e.g. "rajan@seed=0"). Every (detector fingerprint, image sha256, condition
key) score lands in the shared `ScoreStore` as soon as its batch finishes, so a rerun after a
crash, or a later run over overlapping images, computes only what is missing.

Pixels are never resized by the runner: images are decoded, post-processed with a per-image
seed (`derive_seed(seed, transform.name, image_sha)`, so processed bytes do not depend on file
order, subsets or worker counts) and handed to the detector's own `preprocess`. Tensors are then
batched only with tensors of the same shape, so a native-resolution detector sees each image at
its own size and equal sizes share a batch.

`fakes_only` (the Stay-Positive protocol applies post-processing to fakes only; DEAR's applies it
to reals and fakes, the default here): reals keep their original score under the post-processed
condition. That is the same computation, so the stored "original" score is reused rather than
computed or stored twice.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import pandas as pd

from bench import registry
from bench.api import FAKE, FAKES_ONLY, ORIGINAL, POST_PROCESSED, REAL, BadImageError, BenchError, Detector, ImageRecord, MissingDataError, Suite, Transform, derive_seed
from bench.batching import ShapeBatcher
from bench.devices import cache_suffix, compute_precision, effective_precision, offload, resolve_device
from bench.rundir import FAILURE_COLUMNS, SCORE_COLUMNS, write_run
from bench.store import ScoreRow, ScoreStore, params_json, sha256_bytes

log = logging.getLogger("bench")

ORIGINAL_KEY = "original"


@dataclass
class RunConfig:
    """Everything that defines a run; stored verbatim in its manifest."""

    suite: str
    detectors: list[str] = field(default_factory=list)  # "corvi", "corvi.mini"; empty = the suite's default set
    post_process: bool = False
    chain: str = "rajan"
    fakes_only: bool = False
    seed: int = 0
    out: Path = Path("results")
    run_name: str | None = None  # default: the suite name
    device: str | None = None  # default: "cuda" when available, else "cpu"
    batch_size: int = 32
    workers: int = 2
    precision: str = "fp32"  # on CUDA: fp32 (TF32 off), tf32 or bf16 autocast; CPU runs fp32 (bench.devices)
    max_per_set: int | None = None
    data_root: str | None = None
    conditions: list[str] | None = None  # extra chain specs, e.g. ["webp:quality=50"]
    processed_copies: bool = False  # "Post-processed" = the suite's stored copies (DEAR's test_processed/)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.batch_size < 1:
            raise BenchError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise BenchError(f"workers must be 0 or more, got {self.workers}")
        effective_precision(self.precision, "cuda")  # an unknown name fails here, before any work


@dataclass(frozen=True)
class Condition:
    """One way of showing images to a detector: a store key and a table block name."""

    key: str  # "original", "rajan@seed=0", "rajan@seed=0,fakes-only"
    display: str  # "Original", "Post-processed", or the chain spec for sweep conditions
    spec: str | None = None  # chain spec; None = unprocessed
    fakes_only: bool = False
    copies: bool = False  # images are the suite's pre-processed copies, scored as they are

    @property
    def store_key(self) -> str:
        """Key of the scores in the store. A stored copy is scored unprocessed, so its score is
        an "original" score of other bytes (the sha tells them apart) and is shared as such."""
        return ORIGINAL_KEY if self.copies else self.key


COPIES_KEY = "processed-copies"


def condition_key(spec: str | None, seed: int, fakes_only: bool = False) -> str:
    """'original', or '<canonical chain name>@seed=<seed>[,fakes-only]'."""
    if spec is None:
        return ORIGINAL_KEY
    return f"{spec}@seed={seed}" + (",fakes-only" if fakes_only else "")


def conditions_for(config: RunConfig) -> list[tuple[Condition, Transform | None]]:
    """'Original' always, then 'Post-processed' when asked, then each extra (sweep) spec; with
    `fakes_only` the processed ones are labelled '... (fakes only)'.

    Chains are built here (unknown names fail fast) and named by their canonical `name`
    ('downscale:factor=0.50' -> 'downscale:factor=0.5'), so equal chains share cached scores.
    With `processed_copies`, 'Post-processed' is the suite's stored copies instead of the chain.
    """
    if config.processed_copies and config.post_process:
        raise BenchError("choose one post-processed block: the chain (--post-process) or the stored copies (--processed-copies)")
    if config.fakes_only and not (config.post_process or config.conditions):
        # silently ignoring it would record `fakes_only: true` for a run that processed nothing
        raise BenchError("--fakes-only applies to the post-processing chain: add --post-process "
                         "(stored copies, --processed-copies, are scored as they are)")  # fmt: skip
    out: list[tuple[Condition, Transform | None]] = [(Condition(ORIGINAL_KEY, ORIGINAL), None)]
    if config.processed_copies:
        out.append((Condition(COPIES_KEY, POST_PROCESSED, copies=True), None))
    specs = ([(config.chain, POST_PROCESSED)] if config.post_process else []) + [(c, None) for c in config.conditions or []]
    suffix = FAKES_ONLY if config.fakes_only else ""  # another protocol: tables must say which
    for spec, display in specs:
        transform = registry.create_chain(spec)
        name = transform.name
        out.append((Condition(condition_key(name, config.seed, config.fakes_only), (display or name) + suffix, name,
                              config.fakes_only), transform))
    seen: set[str] = set()
    return [(c, t) for c, t in out if not (c.key in seen or seen.add(c.key))]


@dataclass
class RunResult:
    run_dir: Path
    scores: pd.DataFrame
    failures: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)  # detector -> why it did not finish
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------- selection


def default_detector_names(weights_tag: str | None) -> list[str]:
    """Every registered detector whose `weights_tag` weights (its default weights when None) are
    on this machine, plus plain-callable plugins, which have no tags.

    Weights that would have to be downloaded are left out of the default selection (offline,
    every such detector would fail the run); naming the detector in --detectors fetches them."""
    from bench.weights import local_path, status

    names = []
    for name, spec in sorted(registry.scan("detectors").loaded.items()):
        if isinstance(spec, registry.DetectorSpec):
            tag = weights_tag or spec.default_weights
            weight = next((w for w in spec.weights if w.tag == tag), None)
            if weight is None:
                continue
            if status(name, weight) in ("local", "bundled"):
                names.append(f"{name}.{tag}")
            else:
                how = ("name it in --detectors to fetch them" if weight.hf_repo or weight.url else
                       f"{weight.where} Put the file at that path to include it" if weight.where else "put the file at that path")
                log.warning("%s.%s is skipped: its weights are not on this machine (%s); %s",
                            name, tag, local_path(name, weight), how)  # fmt: skip
        elif callable(spec):
            names.append(name)
    return names


def _load_suite(config: RunConfig) -> tuple[Suite, Any]:
    source = registry.get_suite(config.suite)
    missing = source.availability(config.data_root)
    if missing:
        raise MissingDataError(f"suite {config.suite!r} is not available: {missing}")
    return source.load(config.data_root, config.max_per_set), source


def _load_copies(config: RunConfig, suite: Suite, source: Any) -> Suite:
    """The suite's pre-processed copies (same set names), for `processed_copies`."""
    source = source or registry.get_suite(config.suite)
    if not getattr(source, "processed_dir", None):
        raise BenchError(f"suite {config.suite!r} has no stored pre-processed copies; use --post-process to apply a chain")
    copies = source.load(config.data_root, config.max_per_set, processed=True)
    unknown = [s.name for s in copies.sets if s.name not in {t.name for t in suite.sets}]
    if unknown:
        raise BenchError(f"suite {config.suite!r}: pre-processed sets {unknown} have no original counterpart")
    return copies


def _fingerprint(det: Detector) -> str:
    """The cache key of a detector's weights. Without one, cache under the class and tag:
    reuse then assumes the code and weights behind that tag did not change."""
    if det.fingerprint:
        return det.fingerprint
    cls = type(det)
    return f"unversioned:{cls.__module__}.{cls.__qualname__}:{det.info.name}:{det.weights}"


def _score_key(det: Detector, precision: str) -> str:
    """Where a detector's scores at an effective precision live in the store: other numerics,
    other scores (fp32 keeps the bare weights fingerprint, see `bench.devices.cache_suffix`)."""
    return _fingerprint(det) + cache_suffix(precision)


# --------------------------------------------------------------------------- data loading


class _Item(NamedTuple):
    index: int  # into the work list
    tensor: Any  # CHW tensor, or None on failure
    params: str  # JSON of the post-processing values drawn
    error: str | None


class _ScoringDataset:
    """Work items (path, sha, condition index) -> preprocessed tensors, in DataLoader workers.

    Per-image failures (undecodable file, a transform or preprocess that rejects the image)
    come back as items with `error` set; they never stop the loader.
    """

    def __init__(self, work: list[tuple[str, str, int]], transforms: list[Transform | None], seed: int, preprocess: Any):
        self.work, self.transforms, self.seed, self.preprocess = work, transforms, seed, preprocess

    def __len__(self) -> int:
        return len(self.work)

    def __getitem__(self, i: int) -> _Item:
        from bench.images import decode_image  # lazy: keeps the core importable on its own

        path, sha, cond = self.work[i]
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if sha256_bytes(data) != sha:
                raise BadImageError(path, "the file changed during the run; run again")
            image = decode_image(data, path)
            params: dict[str, Any] = {}
            transform = self.transforms[cond]
            if transform is not None:
                image, params = transform(image, random.Random(derive_seed(self.seed, transform.name, sha)))
            tensor = self.preprocess(image)
            return _Item(i, tensor, params_json(params), None)
        except BadImageError as exc:
            return _Item(i, None, "{}", exc.reason)
        except OSError as exc:
            return _Item(i, None, "{}", f"cannot read the file ({exc.strerror or exc})")
        except Exception as exc:  # a transform or preprocess rejecting one image: record it, go on
            return _Item(i, None, "{}", f"{type(exc).__name__}: {exc}")


def _identity(x: Any) -> Any:
    return x


class _DetectorFailed(Exception):
    pass


def _score_detector(
    det: Detector, fp: str, work: list[tuple[str, str, int]], conds: list[Condition], transforms: list[Transform | None],
    store: ScoreStore, config: RunConfig, device: str, progress: bool,
) -> int:
    """Compute and persist every work item; returns the number of scores computed."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    dataset = _ScoringDataset(work, transforms, config.seed, det.preprocess())
    on_cuda = device.startswith("cuda")
    loader = DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=config.workers, collate_fn=_identity,
        pin_memory=on_cuda, persistent_workers=False,
    )
    batcher: ShapeBatcher[_Item] = ShapeBatcher(config.batch_size)  # exact shapes: no resizing, no padding
    computed = 0
    bar = tqdm(total=len(work), unit="img", desc=f"{det.info.name}", disable=not progress, dynamic_ncols=True)

    def flush(items: list[_Item]) -> None:
        nonlocal computed
        shape = (len(items), *items[0].tensor.shape)
        try:
            batch = torch.stack([it.tensor for it in items]).to(device, non_blocking=on_cuda)
            with torch.inference_mode():
                out = det.forward(batch)
            logits = torch.as_tensor(out).detach().float().reshape(-1).cpu().tolist()
        except Exception as exc:
            raise _DetectorFailed(f"forward failed on a batch of shape {shape}: {type(exc).__name__}: {exc}") from exc
        if len(logits) != len(items):
            raise _DetectorFailed(f"forward returned {len(logits)} logits for a batch of {len(items)} images")
        rows, bad = [], []
        for it, logit in zip(items, logits):
            path, sha, cond = work[it.index]
            if math.isnan(logit):
                bad.append((path, fp, conds[cond].store_key, "the detector returned NaN"))
            else:
                rows.append(ScoreRow(fp, sha, conds[cond].store_key, logit, it.params))
        store.put_many(rows)  # one transaction per batch: a crash loses at most this batch
        store.record_failures(bad)
        computed += len(rows)
        bar.update(len(items))

    try:
        # Once per detector: the TF32 flags are set and restored around the loop, not per batch.
        with compute_precision(config.precision, device):
            for item in loader:
                if item.error is not None:
                    path, _, cond = work[item.index]
                    store.record_failure(path, fp, conds[cond].store_key, item.error)
                    bar.update(1)
                    continue
                # Conditions may share a batch (each item carries its own condition key).
                for batch in batcher.add(item):
                    flush(batch)
            for batch in batcher.drain():
                flush(batch)
    finally:
        bar.close()
    return computed


# --------------------------------------------------------------------------- run


def run(
    config: RunConfig,
    detectors: list[Detector] | None = None,
    suite: Suite | None = None,
    progress: bool = True,
) -> RunResult:
    """Score `suite` (or the registered `config.suite`) with `detectors` (or `config.detectors`).

    A `Suite` given here is used as loaded (`max_per_set` and `data_root` apply only when the
    runner loads the registered suite itself).

    A detector that cannot be built or fails mid-run is reported in `RunResult.errors`; the others
    still run and every finished score is stored and exported. On CUDA each detector is moved
    to the GPU for its turn and back to the CPU after it, so one model at a time holds GPU memory.
    """
    return _execute(config, detectors, suite, progress, {})


def sweep_slug(chain: str) -> str:
    """The whole chain as a file-name part: "webp" -> "webp", "jpeg:quality=75+blur" ->
    "jpeg-quality-75-blur", so a composed sweep never shares a folder with a plain one."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", "".join(chain.split())).strip("-") or "chain"


def sweep(
    config: RunConfig, chain: str, param: str, values: Sequence[Any],
    detectors: list[Detector] | None = None, suite: Suite | None = None, progress: bool = True,
) -> RunResult:
    """Run the conditions `chain:param=v` for each value (plus the original images).

    The manifest's "sweep" entry maps each condition to its value, so figures never have to parse
    the value back out of a label (a composed chain may set `param` in more than one step)."""
    if not values:
        raise BenchError("a sweep needs at least one value")
    chain = "".join(chain.split())
    last = chain.rsplit("+", 1)[-1]
    step, fixed = registry.parse_chain_step(last, chain)
    if param in fixed:
        raise BenchError(f"--chain {chain!r} already sets {param!r} in its last step, the one the sweep varies; drop it there")
    sep = "," if ":" in last else ":"  # the parameter belongs to the last step
    specs = [f"{chain}{sep}{param}={v}" for v in values]
    default_name = f"{config.suite}-sweep-{sweep_slug(chain)}-{param}" + ("-fakes-only" if config.fakes_only else "")
    cfg = dataclasses.replace(config, conditions=specs, run_name=config.run_name or default_name)
    try:
        display = {c.key: c.display for c, _ in conditions_for(cfg)}  # the labels the scores table will carry
    except BenchError as exc:  # say it comes from the sweep: the user typed --chain and --param, not these specs
        raise BenchError(f"sweeping {param} over --chain {chain!r} ({specs[0]}, ...): {exc}") from None
    points = []
    for spec, value in zip(specs, values):
        key = condition_key(registry.create_chain(spec).name, cfg.seed, cfg.fakes_only)
        points.append({"condition": display[key], "condition_key": key, "value": registry.parse_chain_value(str(value))})
    info = {"chain": chain, "step": step, "param": param, "values": [p["value"] for p in points], "conditions": points}
    return _execute(cfg, detectors, suite, progress, {"sweep": info})


def _execute(config: RunConfig, detectors: list[Detector] | None, suite: Suite | None, progress: bool, extra: dict[str, Any]) -> RunResult:
    started = datetime.now(timezone.utc)
    # Names and the device are checked before any data is loaded: a typo fails in a second,
    # not after a world build.
    device = resolve_device(config.device)
    precision = effective_precision(config.precision, device)
    if precision != config.precision:
        log.warning("precision %s applies to CUDA only; on %s the run computes in %s", config.precision, device, precision)
    pairs = conditions_for(config)
    conds: list[Condition] = [c for c, _ in pairs]
    names: list[str] | None = None
    if detectors is None and config.detectors:
        names = list(config.detectors)
        for name in names:
            registry.check_detector_name(name)
    source = None
    if suite is None:
        suite, source = _load_suite(config)
    if not suite.records:
        raise MissingDataError(f"suite {suite.name!r} has no images ({suite.source or 'no source'})")
    run_dir = config.out / (config.run_name or config.suite or suite.name)
    try:  # now, not after hours of scoring
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the run folder {run_dir}: {exc}") from exc

    errors: dict[str, str] = {}
    built: list[Detector] = []
    if detectors is not None:
        built = list(detectors)
    else:
        if names is None:
            if source is None:
                source = registry.get_suite(config.suite)
            tag = getattr(source, "weights_tag", None)
            names = default_detector_names(tag)
            if not names:
                raise BenchError(f"no registered detector has {tag!r} weights for suite {config.suite!r}; name some with --detectors")
            for name, why in sorted(registry.scan("detectors").errors.items()):
                log.warning("detector plugin %r did not load and is skipped: %s", name, why)
        for name in dict.fromkeys(map(registry.with_default_tag, names)):  # "npr,npr.mini" is one detector, scored once
            try:
                built.append(registry.create_detector(name))
            except BenchError as exc:  # missing weights, a factory that raises: report, go on
                errors[name] = str(exc)
                log.warning("detector %s could not be built and is skipped (reason in the run's errors)", name)

    _warn_if_replacing(run_dir, [_label(d) for d in built], [c.key for c in conds])
    copies = _load_copies(config, suite, source) if any(c.copies for c in conds) else None
    records_of = [list(copies.records if c.copies else suite.records) for c in conds]  # per condition
    config.out.mkdir(parents=True, exist_ok=True)
    with ScoreStore.in_dir(config.out) as store:
        scores, failures, stats = _score_all(store, suite, built, pairs, records_of, config, device, precision, progress, errors)

    manifest = _manifest(config, suite, source, built, conds, device, precision, started, stats, scores, failures, errors, extra)
    write_run(run_dir, manifest, scores, failures)
    return RunResult(run_dir, scores, failures, errors, manifest)


def _score_all(
    store: ScoreStore, suite: Suite, built: list[Detector], pairs: list[tuple[Condition, Transform | None]],
    records_of: list[list[ImageRecord]], config: RunConfig, device: str, precision: str, progress: bool,
    errors: dict[str, str],
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Score what the store lacks for every detector and condition, then read the scores table
    back from the store. A detector that fails lands in `errors`; the others go on."""
    conds = [c for c, _ in pairs]
    transforms = [t for _, t in pairs]
    unreadable: dict[str, str] = {}
    paths = list(dict.fromkeys(r.path for recs in records_of for r in recs))
    sha_of = dict(zip(paths, _hash_all(store, paths, unreadable, progress)))
    path_of = {s: p for p, s in sha_of.items() if s is not None}
    stats: list[dict[str, Any]] = []
    for det in built:
        label = _label(det)
        fp = _score_key(det, precision)
        t0 = time.perf_counter()
        computed = 0
        todo = 0
        try:
            det.to(device)
            work: list[tuple[str, str, int]] = []
            queued: set[tuple[str, str]] = set()  # (sha, store key): a copy equal to its original is scored once
            for ci, cond in enumerate(conds):
                wanted = [s for s in dict.fromkeys(sha_of[r.path] for r in records_of[ci] if not cond.fakes_only or r.label == FAKE)
                          if s is not None and (s, cond.store_key) not in queued]
                have = store.get_many(fp, cond.store_key, wanted)
                work += [(path_of[s], s, ci) for s in wanted if s not in have]
                queued.update((s, cond.store_key) for s in wanted)
            todo = len(work)
            if work:
                computed = _score_detector(det, fp, work, conds, transforms, store, config, device, progress)
        except _DetectorFailed as exc:
            errors[label] = str(exc)
        except Exception as exc:  # never lose the other detectors' work
            errors[label] = f"{type(exc).__name__}: {exc}"
        finally:
            offload(det, device)
        if label in errors:
            log.warning("detector %s stopped; its finished batches are kept (reason in the run's errors)", label)
        stats.append({"detector": label, "to_compute": todo, "computed": computed, "seconds": round(time.perf_counter() - t0, 3)})
    scores, failures = _assemble(store, suite, built, conds, records_of, sha_of, path_of, unreadable, precision)
    return scores, failures, stats


def score_suite(suite: Suite, detectors: list[Detector], config: RunConfig | None = None, *, progress: bool = False,
                store: ScoreStore | None = None) -> RunResult:
    """Score a loaded suite with built detectors the way `run` does (same decoding, seeding,
    batching, failures), without a run folder: for analyses that need a scores table.

    `config` supplies the conditions, seed, device and batching (default: the original images,
    on CPU, in this process); `store` defaults to a throwaway in-memory one, so models without a
    weights fingerprint never share cached scores. `RunResult.run_dir` is empty."""
    config = config or RunConfig(suite=suite.name, device="cpu", workers=0)
    device = resolve_device(config.device)
    precision = effective_precision(config.precision, device)
    pairs = conditions_for(config)
    if any(c.copies for c, _ in pairs):
        raise BenchError("score_suite scores a loaded suite; stored processed copies need `run`")
    records_of = [list(suite.records) for _ in pairs]
    errors: dict[str, str] = {}
    owned = store is None
    store = store or ScoreStore(":memory:")
    try:
        scores, failures, _ = _score_all(store, suite, list(detectors), pairs, records_of, config, device, precision,
                                         progress, errors)
    finally:
        if owned:
            store.close()
    return RunResult(Path(), scores, failures, errors)


def _warn_if_replacing(run_dir: Path, detectors: list[str], conditions: list[str]) -> None:
    """Say so before a run drops detectors or conditions that the run in the same folder had.

    Nothing is lost -- those scores stay in the cache, so the earlier command rebuilds the folder
    in seconds -- but a table read from the folder would silently lose rows or a block.
    """
    try:
        old = json.loads((run_dir / "manifest.json").read_text())
        old_dets = [d["weights"] for d in old["detectors"]]
        old_conds = [c["key"] for c in old["conditions"]]
    except (OSError, ValueError, KeyError, TypeError):  # no earlier run, or one this check cannot read
        return
    dropped = [d for d in old_dets if d not in detectors] + [c for c in old_conds if c not in conditions]
    if dropped:
        log.warning(
            "%s held a run with %s, which this run does not have; it is replaced (the scores stay in the cache, "
            "so rerunning that command restores it quickly). Use --run-name to keep runs side by side.",
            run_dir, ", ".join(dropped),
        )


def _hash_all(store: ScoreStore, paths: list[str], unreadable: dict[str, str], progress: bool, chunk: int = 2000) -> list[str | None]:
    """Content hashes of every file (cached by the file's stat stamp), with a bar on big first runs."""
    from tqdm.auto import tqdm

    out: list[str | None] = []
    with tqdm(total=len(paths), unit="file", desc="hashing", disable=not progress or len(paths) <= chunk) as bar:
        for i in range(0, len(paths), chunk):
            out += store.file_shas(paths[i : i + chunk], errors=unreadable)
            bar.update(min(chunk, len(paths) - i))
    return out


def _label(det: Detector) -> str:
    return det.weights or det.info.name


def _assemble(
    store: ScoreStore, suite: Suite, dets: list[Detector], conds: list[Condition], records_of: list[list[ImageRecord]],
    sha_of: dict[str, str | None], path_of: dict[str, str], unreadable: dict[str, str], precision: str = "fp32",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores table (columns SCORE_COLUMNS, suite set order) and the per-image failures;
    `precision` (the effective one) selects which cached scores are read."""
    set_meta = {s.name: (i, s) for i, s in enumerate(suite.sets)}
    known = [s for s in sha_of.values() if s is not None]
    rows: list[dict[str, Any]] = []
    fails: list[dict[str, Any]] = []
    for det in dets:
        fp, info = _score_key(det, precision), det.info
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
                base = {"detector": info.name, "weights": _label(det), "condition": cond.display, "condition_key": cond.key,
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
                    **base, "display_name": info.display_name, "family": info.family, "calibrated": bool(info.calibrated),
                    "suite": suite.name, "set_display": iset.display_name, "set_kind": iset.kind, "real_set": iset.real_set,
                    "set_order": order, "params": "{}" if reuse else params, "logit": float(logit),
                })  # fmt: skip
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    if not scores.empty:
        scores = scores.astype({"label": "int64", "set_order": "int64", "logit": "float64", "calibrated": "bool"})
    failures = pd.DataFrame(fails, columns=FAILURE_COLUMNS)
    return scores, failures


def _versions() -> dict[str, str]:
    import torch
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("aigi-bench")
    except PackageNotFoundError:
        own = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "aigi-bench": own, "pandas": pd.__version__}


def _manifest(
    config: RunConfig, suite: Suite, source: Any, dets: list[Detector], conds: list[Condition], device: str, precision: str,
    started: datetime, stats: list[dict[str, Any]], scores: pd.DataFrame, failures: pd.DataFrame,
    errors: dict[str, str], extra: dict[str, Any],
) -> dict[str, Any]:
    cfg = dataclasses.asdict(config)
    cfg["out"] = str(config.out)
    return {
        "config": cfg,
        "suite": {
            "name": suite.name, "description": suite.description, "source": suite.source,
            "weights_tag": getattr(source, "weights_tag", None),
            "sets": [{"name": s.name, "display_name": s.display_name, "kind": s.kind, "real_set": s.real_set, "images": len(s)} for s in suite.sets],
        },
        "detectors": [
            {"name": d.info.name, "weights": _label(d), "fingerprint": _fingerprint(d), "display_name": d.info.display_name,
             "family": d.info.family, "calibrated": d.info.calibrated, "input": d.info.input.describe()}
            for d in dets
        ],
        "conditions": [{"key": c.key, "display": c.display, "spec": c.spec, "fakes_only": c.fakes_only, "copies": c.copies}
                       for c in conds],
        "seed": config.seed,
        "chain": config.chain if config.post_process else None,
        "device": device,
        "precision": precision,
        "versions": _versions(),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {
            "images": len(suite.records), "scores": len(scores), "failures": len(failures),
            "computed": int(sum(s["computed"] for s in stats)),
            "per_detector": stats,
        },
        "errors": errors,
        **extra,
    }  # fmt: skip
