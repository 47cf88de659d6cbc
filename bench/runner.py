"""Score a suite with detectors under conditions, resumably, and export the scores table.

A *condition* is how images are shown to a detector: "original", or a post-processing chain
spec with its seed (e.g. "rajan@seed=0"). Every (detector fingerprint, image sha256, condition
key) score lands in the shared `ScoreStore` as soon as its batch finishes, so a rerun after a
crash, or a later run over overlapping images, computes only what is missing.

Pixels are never resized by the runner: images are decoded, post-processed with a per-image
seed (`derive_seed(seed, transform.name, pixel_digest)`, the digest of the decoded pixels, so
processed bytes depend neither on file order, subsets or worker counts nor on how the file was
encoded) and handed to the detector's own `preprocess`. Tensors are then
batched only with tensors of the same shape, so a native-resolution detector sees each image at
its own size and equal sizes share a batch.

`fakes_only` (the Stay-Positive protocol applies post-processing to fakes only; DEAR's applies it
to reals and fakes, the default here): reals keep their original score under the post-processed
condition. That is the same computation, so the stored "original" score is reused rather than
computed or stored twice.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import platform
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from bench import registry, sharding
from bench.api import FAKE, REAL, BenchError, Detector, ImageRecord, MissingDataError, Suite
from bench.conditions import Condition, condition_key, conditions_for
from bench.devices import effective_precision, resolve_device
from bench.files import FolderBusyError, FolderLock, clean_stale
from bench.images import pixel_limit
from bench.rundir import FAILURE_COLUMNS, SCORE_COLUMNS, write_run
from bench.selection import default_selection, explain_defaults, options_for, row_label, warn_about_toys
from bench.scoring import fingerprint, label, score_all
from bench.store import ScoreStore

log = logging.getLogger("bench")

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
    workers: int | None = None  # DataLoader workers; None: one per available CPU, at most 8 (bench.devices.default_workers)
    pixel_budget: int | None = None  # pixels per batch; None: 16 x 1024^2 on CUDA (DEAR's), 4 x 1024^2 on CPU
    precision: str = "fp32"  # on CUDA: fp32 (TF32 off), tf32 or bf16 autocast; CPU runs fp32 (bench.devices)
    max_per_set: int | None = None
    data_root: str | None = None
    conditions: list[str] | None = None  # extra chain specs, e.g. ["webp:quality=50"]
    processed_copies: bool = False  # "Post-processed" = the suite's stored copies (DEAR's test_processed/)
    detector_options: dict[str, Any] = field(default_factory=dict)  # builder keywords, e.g. {"tile": False}
    allow_outside_root: bool = False  # manifests may name files outside their folder
    max_pixels: int | None = None  # the decompression-bomb limit for this run (None: bench.images' default)
    shard: str | None = None  # "K/N": only this shard of the images; "all": every image; None: the launcher's, else all
    compute: bool = True  # False: assemble from the store only (bench merge), compute nothing
    save_processed: Path | None = None  # also write each chain condition's images here (bench.export)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.save_processed = None if self.save_processed is None else Path(self.save_processed)
        if self.batch_size < 1:
            raise BenchError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise BenchError(f"workers must be 0 or more, got {self.workers}")
        if self.pixel_budget is not None and self.pixel_budget < 1:
            raise BenchError(f"the pixel budget must be at least 1, got {self.pixel_budget}")
        effective_precision(self.precision, "cuda")  # an unknown name fails here, before any work


@dataclass
class RunResult:
    run_dir: Path
    scores: pd.DataFrame
    failures: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)  # detector -> why it did not finish
    manifest: dict[str, Any] = field(default_factory=dict)
    written: bool = True  # False: nothing was scored, and the run folder was left as it was

    @property
    def ok(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------- loading


def load_suite(config: RunConfig) -> tuple[Suite, Any]:
    """The registered suite `config.suite` loaded as a run loads it (data root, sample, seed,
    options), and its source; MissingDataError when its data is not here."""
    source = registry.get_suite(config.suite)
    missing = source.availability(config.data_root)
    if missing:
        raise MissingDataError(f"suite {config.suite!r} is not available: {missing}")
    return source.load(config.data_root, config.max_per_set, **_load_options(source, config)), source


def _load_options(source: Any, config: RunConfig) -> dict[str, Any]:
    """The keywords of `SuiteSource.load` beyond (data_root, max_per_set) that this source takes:
    the sample seed, and `options` such as allow_outside_root. A plugin taking neither gets none."""
    try:
        params = inspect.signature(source.load).parameters
    except (TypeError, ValueError):
        return {}
    kw: dict[str, Any] = {}
    if "sample_seed" in params:
        kw["sample_seed"] = config.seed
    if "options" in params:
        kw["options"] = {"allow_outside_root": config.allow_outside_root}
    elif config.allow_outside_root:
        raise BenchError(f"suite {config.suite!r} reads no manifest, so --allow-outside-root does not apply to it")
    return kw


def _load_copies(config: RunConfig, suite: Suite, source: Any) -> Suite:
    """The suite's pre-processed copies (same set names), for `processed_copies`."""
    source = source or registry.get_suite(config.suite)
    if not getattr(source, "processed_dir", None):
        raise BenchError(f"suite {config.suite!r} has no stored pre-processed copies; use --post-process to apply a chain")
    copies = source.load(config.data_root, config.max_per_set, processed=True, **_load_options(source, config))
    unknown = [s.name for s in copies.sets if s.name not in {t.name for t in suite.sets}]
    if unknown:
        raise BenchError(f"suite {config.suite!r}: pre-processed sets {unknown} have no original counterpart")
    return copies


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
    shard = sharding.resolve(config.shard)
    # Names and the device are checked before any data is loaded: a typo fails in a second,
    # not after a world build.
    device = resolve_device(shard_device(config.device, shard))
    precision = effective_precision(config.precision, device)
    if precision != config.precision:
        log.warning("precision %s applies to CUDA only; on %s the run computes in %s", config.precision, device, precision)
    pairs = conditions_for(config)
    conds: list[Condition] = [c for c, _ in pairs]
    if config.save_processed is not None:
        if shard:
            raise BenchError("--save-processed writes one folder per condition: run it unsharded (after a sharded run "
                             "every score comes from the store, so only the saving is done)")
        if all(t is None for _, t in pairs):
            raise BenchError("--save-processed saves post-processed images: add --post-process (or --chain with it)")
    errors: dict[str, str] = {}
    names: list[str] | None = None
    if detectors is None and config.detectors:
        names = []
        for name in config.detectors:
            try:
                registry.check_detector_name(name)  # a typo stops the run here, with close matches
                names.append(name)
            except registry.PluginLoadError as exc:  # a broken plugin stops only itself
                errors[registry.with_default_tag(name) if "." in name else name] = str(exc)
                log.warning("detector %s is skipped: %s", name, exc)
    source = None
    if suite is None:
        suite, source = load_suite(config)
    if not suite.records:
        raise MissingDataError(f"suite {suite.name!r} has no images ({suite.source or 'no source'})")
    run_name = config.run_name or config.suite or suite.name
    run_dir = config.out / run_name
    _check_writable(config.out)  # now, not after hours of scoring; the run folder itself is made at the end
    # A shard holds its own lock (two copies of one shard must not run); the run folder's lock
    # is for whoever writes the folder: a whole run, or the merge.
    lock = FolderLock(sharding.marker_dir(config.out, run_name) / shard.tag) if shard else FolderLock(run_dir)
    with lock:
        for folder in (config.out, run_dir):
            for gone in clean_stale(folder):
                log.warning("removed %s, left by a bench process that was killed while writing", gone)
        built, options = _build(config, detectors, names, source, errors)
        if source is not None or detectors is None:
            warn_about_toys(built, getattr(source or registry.get_suite(config.suite), "weights_tag", None), config.suite)
        if not shard:
            _warn_if_replacing(run_dir, [label(d) for d in built], [c.key for c in conds])
        copies = _load_copies(config, suite, source) if any(c.copies for c in conds) else None
        records_of = [sharding.owned(copies.records if c.copies else suite.records, suite.source, shard) for c in conds]
        store = sharding.open_store(config.out, shard)
        with store, pixel_limit(config.max_pixels):
            scores, failures, stats, memory = score_all(store, suite, built, pairs, records_of, config, device, precision,
                                                        progress, errors, options)
        if shard:
            return _finish_shard(config, shard, run_name, built, stats, errors, started, progress)
        _report_silent_detectors(built, scores, failures, errors)
        failures = pd.concat([failures, _skipped_rows(suite, copies)], ignore_index=True) if suite.skipped or (
            copies is not None and copies.skipped) else failures
        manifest = _manifest(config, suite, source, built, options, conds, device, precision, started, stats, scores, failures,
                             errors, {"peak_rss_mib": memory, **extra})
        if scores.empty:  # never replace a run folder with a run that scored nothing
            log.warning("nothing was scored, so %s is left as it was", run_dir)
            return RunResult(run_dir, scores, failures, errors, manifest, written=False)
        write_run(run_dir, manifest, scores, failures)
        if config.save_processed is not None:  # after the run folder: a failed export loses no score
            _save_processed(config, pairs, records_of, progress)
    return RunResult(run_dir, scores, failures, errors, manifest)


def _save_processed(config: RunConfig, pairs: list[tuple[Condition, Any]], records_of: list[list[ImageRecord]],
                    progress: bool) -> None:
    from bench.export import save_processed

    for (cond, transform), records in zip(pairs, records_of):
        if transform is not None:
            folder = save_processed(Path(config.save_processed), cond.key, transform, records, config.seed,
                                    fakes_only=cond.fakes_only, progress=progress)
            log.info("saved the %s images to %s (score them with --suite folder --data-root %s/manifest.csv)",
                     cond.display, folder, folder)


def shard_device(device: str | None, shard: sharding.Shard | None) -> str | None:
    """A launcher's local rank picks the GPU of a shard: `cuda` (or no --device) -> cuda:<local rank>."""
    if shard is None or shard.local_rank is None or device not in (None, "cuda"):
        return device
    import torch

    return f"cuda:{shard.local_rank}" if torch.cuda.is_available() else device


def _finish_shard(config: RunConfig, shard: sharding.Shard, run_name: str, built: list[Detector], stats: list[dict[str, Any]],
                  errors: dict[str, str], started: datetime, progress: bool) -> RunResult:
    """Leave this shard's marker; the shard that finds every marker of its split merges."""
    record = {"config": {**dataclasses.asdict(config), "out": str(config.out), "shard": None},
              "detectors": [label(d) for d in built], "stats": stats, "errors": errors,
              "started": started.isoformat(timespec="seconds"), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    sharding.write_marker(config.out, run_name, shard, record)
    done = sharding.markers(config.out, run_name, shard.count)
    empty = pd.DataFrame(columns=SCORE_COLUMNS)
    result = RunResult(config.out / run_name, empty, pd.DataFrame(columns=FAILURE_COLUMNS), errors,
                       {"shard": str(shard), "shards_done": sorted(done), "counts": {"per_detector": stats}}, written=False)
    if len(done) < shard.count or errors:
        log.warning("shard %s done (%d of %d); the last shard merges, or run `bench merge --out %s --run-name %s`",
                    shard, len(done), shard.count, config.out, run_name)
        return result
    try:
        return merge(config.out, run_name, count=shard.count, detectors=built, progress=progress)
    except FolderBusyError:  # another shard is merging right now: it writes the folder
        log.warning("shard %s done; another shard is merging the run", shard)
        return result


def merge(out: Path, run_name: str, *, count: int | None = None, detectors: list[Detector] | None = None,
          progress: bool = True) -> RunResult:
    """Import every shard store under `out` into its main store and write the run folder of
    `run_name` from it, computing nothing (`bench merge`). The run's settings come from its
    shards' markers; a split with a shard missing is refused, naming it. Safe to rerun."""
    out = Path(out)
    counts = sharding.split_counts(out, run_name)
    if not counts:
        raise BenchError(f"no shard of run {run_name!r} finished under {out} (no {sharding.marker_dir(out, run_name)}/K-of-N.json)")
    count = count or counts[-1]
    done = sharding.markers(out, run_name, count)
    missing = [k for k in range(count) if k not in done]
    if missing:
        raise BenchError(f"run {run_name!r} split {count} ways: shard(s) {', '.join(f'{k}/{count}' for k in missing)} have not "
                         f"finished; run them (bench run ... --shard K/{count}), then merge")
    failed = {k: m["errors"] for k, m in done.items() if m.get("errors")}
    if failed:
        log.warning("shards with detectors that did not finish: %s", failed)
    stores = sharding.shard_stores(out)
    imported = sharding.import_stores(out / ScoreStore.FILENAME, stores)
    log.info("merged %s score rows from %d shard store(s)", imported["scores"], len(stores))
    cfg = dict(next(iter(done.values()))["config"])
    cfg.update(out=out, shard=sharding.ALL, compute=False)  # one process, even under the launcher that ran the shards
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return run(RunConfig(**{k: v for k, v in cfg.items() if k in fields}), detectors=detectors, progress=progress)


def _check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be written, before any work (creating only it)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".writing-probe-"):
            pass
    except OSError as exc:
        raise BenchError(f"cannot write the output folder {out}: {exc}") from exc


def _build(config: RunConfig, detectors: list[Detector] | None, names: list[str] | None, source: Any,
           errors: dict[str, str]) -> tuple[list[Detector], dict[str, dict[str, Any]]]:
    """The detectors of the run (given, named, or the suite's defaults) and the builder options
    each was built with, keyed by its label; a detector that cannot be built lands in `errors`."""
    if detectors is not None:
        return list(detectors), {}
    if names is None:
        source = source or registry.get_suite(config.suite)
        tag = getattr(source, "weights_tag", None)
        selection = default_selection(tag)
        explain_defaults(selection, tag, config.suite)
        names = selection.names
        for name, why in sorted(registry.scan("detectors").errors.items()):
            log.warning("detector plugin %r did not load and is skipped: %s", name, why)
    names = list(dict.fromkeys(map(registry.with_default_tag, names)))  # "npr,npr.mini" is one detector, scored once
    wanted = options_for(names, config.detector_options)
    built, options = [], {}
    for name in names:
        try:
            det = registry.create_detector(name, **wanted[name])
        except BenchError as exc:  # missing weights, a factory that raises: report, go on
            errors[name] = str(exc)
            log.warning("detector %s could not be built and is skipped (reason in the run's errors)", name)
            continue
        built.append(det)
        options[label(det)] = wanted[name]
    return built, options


def _report_silent_detectors(built: list[Detector], scores: pd.DataFrame, failures: pd.DataFrame, errors: dict[str, str]) -> None:
    """A detector that finished without one score (its preprocessing refused every image, or its
    forward gave NaN for all) is an error of the run, not a row that silently vanishes."""
    scored = set(scores["weights"]) if not scores.empty else set()
    for det in built:
        name = label(det)
        if name in scored or name in errors:
            continue
        mine = failures[failures["weights"] == name] if not failures.empty else failures
        reasons = mine["reason"].value_counts().head(2).index.tolist() if len(mine) else []
        errors[name] = ("produced no score: " + (f"all {len(mine)} of its images failed, e.g. {'; '.join(reasons)}"
                                                  if reasons else "no image reached it"))
        log.warning("detector %s produced no score", name)


def _skipped_rows(suite: Suite, copies: Suite | None) -> pd.DataFrame:
    """The files the suite's source left out, as rows of failures.csv (detector "-")."""
    skipped = list(suite.skipped) + (list(copies.skipped) if copies is not None else [])
    return pd.DataFrame([{"detector": "-", "weights": "-", "condition": "-", "condition_key": "-", "set": s.set, "path": s.path,
                          "image_sha": None, "label": None, "reason": f"skipped: {s.reason}"} for s in skipped],
                        columns=FAILURE_COLUMNS)


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
        scores, failures, _, _ = score_all(store, suite, list(detectors), pairs, records_of, config, device, precision,
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


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from bench.images import pixel_environment

    try:
        own = version("aigi-bench")
    except PackageNotFoundError:
        own = "unknown"
    return {"python": platform.python_version(), "aigi-bench": own, "pandas": pd.__version__, **pixel_environment()}


def _manifest(
    config: RunConfig, suite: Suite, source: Any, dets: list[Detector], options: dict[str, dict[str, Any]],
    conds: list[Condition], device: str, precision: str, started: datetime, stats: list[dict[str, Any]], scores: pd.DataFrame,
    failures: pd.DataFrame, errors: dict[str, str], extra: dict[str, Any],
) -> dict[str, Any]:
    cfg = dataclasses.asdict(config)
    cfg["out"] = str(config.out)
    cfg["save_processed"] = None if config.save_processed is None else str(config.save_processed)
    scoring = failures[failures["detector"] != "-"] if len(failures) else failures
    return {
        "config": cfg,
        "suite": {
            "name": suite.name, "description": suite.description, "source": suite.source,
            "weights_tag": getattr(source, "weights_tag", None),
            "sets": [{"name": s.name, "display_name": s.display_name, "kind": s.kind, "real_set": s.real_set, "images": len(s),
                      "reals": sum(r.label == REAL for r in s.records), "fakes": sum(r.label == FAKE for r in s.records)}
                     for s in suite.sets],
            "sampled": ({"seed": config.seed, "max_per_set": config.max_per_set, "sets": [dataclasses.asdict(x) for x in suite.sampled]}
                        if suite.sampled else None),
            "skipped": len(suite.skipped),
        },
        "detectors": [
            {"name": d.info.name, "weights": label(d), "fingerprint": fingerprint(d), "display_name": row_label(d, options.get(label(d))),
             "family": d.info.family, "calibrated": d.info.calibrated, "input": d.info.input.describe(),
             "options": options.get(label(d), {})}
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
            "failed_files": int(scoring["path"].nunique()) if len(scoring) else 0,
            "skipped_files": len(failures) - len(scoring),
            "computed": int(sum(s["computed"] for s in stats)),
            "per_detector": stats,
        },
        "errors": errors,
        **extra,
    }  # fmt: skip
