"""Detection metrics on logits, and the long metrics table built from a scores table.

Conventions (bench.api): label 0 = real, 1 = fake; a score is a logit, positive = fake.
Every metric is returned as a percentage (x100), as the papers' tables print them.

Definitions, chosen to match scikit-learn 1.x exactly where it has the metric:
- AUC: Mann-Whitney U with ties counted one half = `sklearn.metrics.roc_auc_score`.
- AP: step-wise sum over distinct thresholds, sum_k (R_k - R_{k-1}) P_k, no interpolation =
  `sklearn.metrics.average_precision_score`.
- R.Acc / F.Acc: accuracy at the fixed threshold logit 0, as DEAR's Table 1 and the Corvi /
  Rajan test scripts threshold at probability 0.5. A real counts as right when its logit < 0,
  a fake when its logit > 0; a logit of exactly 0 is right for neither class (the detector is
  undecided). Acc is the mean of the two (balanced accuracy), asymmetry = R.Acc - F.Acc.
- EER: the point where FPR = FNR on the ROC drawn as straight segments between the operating
  points (exact linear interpolation, no curve fitting).
- TPR@FPR: the highest TPR among operating points whose FPR <= target (no interpolation:
  an operating point a detector can actually be set to).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pandas as pd

from bench.api import AVG, FAKE, ORIGINAL, POST_PROCESSED, REAL, BenchError, derive_seed


METRIC_COLUMNS: tuple[str, ...] = ("auc", "ap", "racc", "facc", "acc", "eer", "tpr1", "tpr5", "asym")
# A set with fewer real or fake images than this is flagged in tables, and gets no bootstrap
# interval: resampling one image gives that image every time, an interval of width 0.
SMALL_SET = 10
# metrics read at the fixed threshold logit 0: meaningless for an uncalibrated detector
THRESHOLD_METRICS: tuple[str, ...] = ("racc", "facc", "acc", "asym")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "condition", "detector", "weights", "display_name", "family", "calibrated", "suite",
    "set", "set_display", "set_kind", "set_order", "n_real", "n_fake",
    *METRIC_COLUMNS, "auc_lo", "auc_hi",
)
REQUIRED_SCORE_COLUMNS: tuple[str, ...] = (
    "detector", "display_name", "family", "calibrated", "set", "set_display", "set_kind",
    "real_set", "set_order", "condition", "label", "logit",
)


class MetricError(BenchError, ValueError):
    """Input a metric cannot be computed on (one class only, NaN scores, bad labels...)."""


# --------------------------------------------------------------------------- input checks


def _arrays(labels, scores, need: Sequence[int] = (REAL, FAKE)) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise MetricError(f"labels and scores must be 1-D of equal length, got shapes {y.shape} and {s.shape}")
    if len(y) and not np.isin(y, (REAL, FAKE)).all():
        bad = sorted(set(np.unique(y).tolist()) - {REAL, FAKE})[:5]
        raise MetricError(f"labels must be 0 (real) or 1 (fake); found {bad}")
    if np.isnan(s).any():
        raise MetricError(f"{int(np.isnan(s).sum())} score(s) are NaN")
    y = y.astype(np.int64)
    for cls in need:
        if not (y == cls).any():
            name = "real (label 0)" if cls == REAL else "fake (label 1)"
            raise MetricError(f"no {name} images among {len(y)}: this metric needs both classes")
    return y, s


def _operating_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives) when flagging score >= t, for every distinct
    score t from the highest down; the last point flags everything."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[last_of_group].astype(np.float64)
    fps = (last_of_group + 1) - tps
    return fps, tps


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of every operating point, starting at (0, 0)."""
    fps, tps = _operating_points(y, s)
    n_real, n_fake = float((y == REAL).sum()), float((y == FAKE).sum())
    return np.r_[0.0, fps / n_real], np.r_[0.0, tps / n_fake]


# --------------------------------------------------------------------------- metrics


def auc(labels, scores) -> float:
    """ROC AUC x100: probability that a fake outscores a real, ties counting one half."""
    y, s = _arrays(labels, scores)
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s_sorted)]
    group = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(len(s))
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]  # average 1-based rank of each tie group
    n_fake = int((y == FAKE).sum())
    n_real = len(y) - n_fake
    u = ranks[y == FAKE].sum() - n_fake * (n_fake + 1) / 2.0
    return 100.0 * u / (n_fake * n_real)


def ap(labels, scores) -> float:
    """Average precision x100 (fakes are the positives), step-wise as scikit-learn."""
    y, s = _arrays(labels, scores)
    fps, tps = _operating_points(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return 100.0 * float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def real_acc(labels, scores) -> float:
    """Share x100 of reals with logit < 0 (a logit of exactly 0 is not counted right)."""
    y, s = _arrays(labels, scores, need=(REAL,))
    return 100.0 * float(np.mean(s[y == REAL] < 0))


def fake_acc(labels, scores) -> float:
    """Share x100 of fakes with logit > 0 (a logit of exactly 0 is not counted right)."""
    y, s = _arrays(labels, scores, need=(FAKE,))
    return 100.0 * float(np.mean(s[y == FAKE] > 0))


def acc(labels, scores) -> float:
    """Balanced accuracy x100 at logit 0: mean of R.Acc and F.Acc."""
    _arrays(labels, scores)
    return (real_acc(labels, scores) + fake_acc(labels, scores)) / 2.0


def asymmetry(labels, scores) -> float:
    """R.Acc - F.Acc (points): positive = biased towards 'real', negative = towards 'fake'."""
    _arrays(labels, scores)
    return real_acc(labels, scores) - fake_acc(labels, scores)


def eer(labels, scores) -> float:
    """Equal error rate x100, linearly interpolated between ROC operating points."""
    y, s = _arrays(labels, scores)
    fpr, tpr = _roc(y, s)
    gap = fpr + tpr - 1.0  # FPR - FNR: strictly increasing along the ROC, -1 at (0,0), +1 at (1,1)
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return 100.0 * float(fpr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return 100.0 * float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(labels, scores, fpr: float = 0.01) -> float:
    """Highest TPR x100 over operating points with FPR <= `fpr` (a fraction, 0.01 = 1%)."""
    if not 0.0 <= fpr <= 1.0:
        raise MetricError(f"target FPR must be a fraction in [0, 1], got {fpr}")
    y, s = _arrays(labels, scores)
    fps, tps = _operating_points(y, s)
    n_real, n_fake = (y == REAL).sum(), (y == FAKE).sum()
    ok = fps <= fpr * n_real + 1e-9  # compare counts, so 1/100 == 0.01 exactly
    return 100.0 * float(tps[ok].max() / n_fake) if ok.any() else 0.0


_BOOT_CHUNK = 128  # replicates drawn per step: bounds memory on large sets


def _auc_replicates(reals: np.ndarray, fakes: np.ndarray, real_pick: np.ndarray, fake_pick: np.ndarray) -> np.ndarray:
    """AUC x100 of many resamples at once (rows of the pick matrices), without re-sorting:
    each fake earns the resampled count of reals below it plus half of those tied with it."""
    c, n_real = real_pick.shape
    order = np.argsort(reals, kind="mergesort")
    counts = np.bincount((real_pick + n_real * np.arange(c)[:, None]).ravel(), minlength=c * n_real)
    cum = np.zeros((c, n_real + 1))
    np.cumsum(counts.reshape(c, n_real)[:, order], axis=1, out=cum[:, 1:])
    r_sorted = reals[order]
    below = np.searchsorted(r_sorted, fakes, side="left")
    upto = np.searchsorted(r_sorted, fakes, side="right")
    credit = (cum[:, below] + cum[:, upto]) / 2.0  # below + half the ties
    wins = np.take_along_axis(credit, fake_pick, axis=1).sum(axis=1)
    return 100.0 * wins / (n_real * fake_pick.shape[1])


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    labels,
    scores,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric_fn`, resampling reals and fakes separately
    (stratified, so every replicate keeps the set's class sizes); seeded, hence reproducible.
    `auc` itself takes a vectorised path that gives the same replicates as the generic loop."""
    if n < 1:
        raise MetricError(f"bootstrap needs n >= 1 replicates, got {n}")
    if not 0.0 < level < 1.0:
        raise MetricError(f"confidence level must be in (0, 1), got {level}")
    y, s = _arrays(labels, scores)
    reals, fakes = s[y == REAL], s[y == FAKE]
    rng = np.random.default_rng(seed)
    if metric_fn is auc:
        return _quantiles(_mean_auc_replicates([("real", reals, fakes)], n, rng), level)
    y_boot = np.r_[np.zeros(len(reals), np.int64), np.ones(len(fakes), np.int64)]
    stats = []
    for start in range(0, n, _BOOT_CHUNK):
        c = min(_BOOT_CHUNK, n - start)
        real_pick = rng.integers(0, len(reals), size=(c, len(reals)))
        fake_pick = rng.integers(0, len(fakes), size=(c, len(fakes)))
        stats.append([metric_fn(y_boot, np.r_[reals[a], fakes[b]]) for a, b in zip(real_pick, fake_pick)])
    return _quantiles(np.concatenate(stats), level)


def bootstrap_avg_auc(
    groups: Sequence[tuple[Hashable, np.ndarray, np.ndarray]], n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the Avg AUC: the mean over sets of each set's AUC.

    `groups` holds (real-set key, real logits, fake logits) per generator set. Each replicate
    resamples every set's fakes and each real set once: sets scored against the same reals
    share that resample, since the Avg's uncertainty comes from one real sample, not one per set.
    With one group this is `bootstrap_ci(auc, ...)`, replicate for replicate.
    """
    if n < 1:
        raise MetricError(f"bootstrap needs n >= 1 replicates, got {n}")
    if not 0.0 < level < 1.0:
        raise MetricError(f"confidence level must be in (0, 1), got {level}")
    if not groups or any(len(r) == 0 or len(f) == 0 for _, r, f in groups):
        raise MetricError("the Avg bootstrap needs at least one set, each with real and fake scores")
    sizes: dict[Hashable, int] = {}
    for key, reals, _ in groups:
        if sizes.setdefault(key, len(reals)) != len(reals):
            raise MetricError(f"sets sharing the real set {key!r} have different numbers of reals ({sizes[key]}, {len(reals)})")
    return _quantiles(_mean_auc_replicates(groups, n, np.random.default_rng(seed)), level)


def _mean_auc_replicates(groups: Sequence[tuple[Hashable, np.ndarray, np.ndarray]], n: int, rng: np.random.Generator) -> np.ndarray:
    groups = [(key, np.asarray(reals, np.float64), np.asarray(fakes, np.float64)) for key, reals, fakes in groups]
    stats = []
    for start in range(0, n, _BOOT_CHUNK):
        c = min(_BOOT_CHUNK, n - start)
        real_picks: dict[Hashable, np.ndarray] = {}
        total = np.zeros(c)
        for key, reals, fakes in groups:
            if key not in real_picks:
                real_picks[key] = rng.integers(0, len(reals), size=(c, len(reals)))
            fake_pick = rng.integers(0, len(fakes), size=(c, len(fakes)))
            total += _auc_replicates(reals, fakes, real_picks[key], fake_pick)
        stats.append(total / len(groups))
    return np.concatenate(stats)


def _quantiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def compute_all(labels, scores, calibrated: bool = True) -> dict[str, float]:
    """Every metric column for one set; threshold metrics are NaN for uncalibrated detectors."""
    out = {
        "auc": auc(labels, scores),
        "ap": ap(labels, scores),
        "eer": eer(labels, scores),
        "tpr1": tpr_at_fpr(labels, scores, 0.01),
        "tpr5": tpr_at_fpr(labels, scores, 0.05),
    }
    if calibrated:
        out.update(racc=real_acc(labels, scores), facc=fake_acc(labels, scores), acc=acc(labels, scores),
                   asym=asymmetry(labels, scores))
    else:
        out.update({k: math.nan for k in THRESHOLD_METRICS})
    return {k: out[k] for k in METRIC_COLUMNS}


# --------------------------------------------------------------------------- scores -> metrics


def condition_order(conditions: Sequence[str]) -> list[str]:
    """Distinct conditions: "Original", then "Post-processed", then the rest as first seen."""
    seen = list(dict.fromkeys(conditions))
    head = [c for c in (ORIGINAL, POST_PROCESSED) if c in seen]
    return head + [c for c in seen if c not in head]


def _set_catalogue(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, set) with its description; conflicting descriptions are an error."""
    cols = ["suite", "set", "set_display", "set_kind", "real_set", "set_order"]
    cat = df[cols].drop_duplicates()
    dup = cat.duplicated(["suite", "set"], keep=False)
    if dup.any():
        s = cat[dup].iloc[0]
        raise MetricError(f"set {s['set']!r} of suite {s['suite']!r} is described in more than one way in the scores table")
    kinds = set(cat["set_kind"])
    if kinds - {"real", "generator", "wild"}:
        raise MetricError(f"unknown set_kind(s) {sorted(kinds - {'real', 'generator', 'wild'})}")
    suite_rank = {s: i for i, s in enumerate(df["suite"].unique())}
    kind_rank = {"generator": 0, "wild": 2, "real": 3}
    cat = cat.assign(
        _k=cat["set_kind"].map(kind_rank), _s=cat["suite"].map(suite_rank), _o=cat["set_order"].astype(float)
    )
    return cat.sort_values(["_k", "_s", "_o", "set"], kind="mergesort").drop(columns=["_k", "_s", "_o"])


def _check_detectors(df: pd.DataFrame) -> None:
    desc = df[["detector", "weights", "display_name", "family", "calibrated"]].drop_duplicates()
    dup = desc.duplicated(["detector", "weights"], keep=False)
    if dup.any():
        d = desc[dup].iloc[0]
        raise MetricError(f"detector {d['detector']!r} ({d['weights']}) has more than one display_name/family/calibrated value")


def evaluate(scores: pd.DataFrame, bootstrap: int = 0, seed: int = 0) -> pd.DataFrame:
    """The long metrics table: one row per (condition, detector, set) plus an "avg" row per
    (condition, detector) averaging the generator sets only (DEAR keeps in-the-wild sets apart).

    A generator set is scored together with its `real_set` images (same detector, condition);
    a wild set holding both labels is scored on its own, a fake-only wild set with its
    `real_set`. `set_order` in the output is the global column order used by tables:
    generator sets (suite order), then Avg, then wild sets. `n_real` of the Avg row counts the
    distinct real images behind it, `n_fake` all fakes. With `bootstrap` > 0, `auc_lo/auc_hi`
    hold a stratified percentile 95% interval of AUC per set, and on Avg rows of the mean AUC
    (`bootstrap_avg_auc`; NaN when 0, when the Avg itself is NaN, or when a set has fewer than
    SMALL_SET real or fake images, whose resamples would give an interval that looks tight).
    The optional columns `weights` and `suite` of the scores table (default "") are kept, so one
    detector under two weight tags stays two rows. Rows with a NaN logit are dropped with a warning.
    """
    missing = [c for c in REQUIRED_SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise MetricError(f"scores table lacks column(s) {missing}; it has {list(scores.columns)}")
    df = scores.copy()
    for opt in ("weights", "suite"):
        if opt not in df.columns:
            df[opt] = ""
        df[opt] = df[opt].fillna("").astype(str)
    df["logit"] = pd.to_numeric(df["logit"], errors="coerce").astype(np.float64)
    nan = df["logit"].isna()
    if nan.any():
        warnings.warn(f"evaluate: dropping {int(nan.sum())} score row(s) with a NaN logit (failed images)", stacklevel=2)
        df = df[~nan]
    if df.empty:
        raise MetricError("the scores table has no usable rows")
    df["calibrated"] = df["calibrated"].astype(bool)
    df = df.reset_index(drop=True)
    ident = "path" if "path" in df.columns else ("image_sha" if "image_sha" in df.columns else None)
    if ident is not None:
        dup = df.duplicated(["condition", "detector", "weights", "suite", "set", ident])
        if dup.any():
            r = df[dup].iloc[0]
            raise MetricError(
                f"image {r[ident]!r} is scored more than once by {r['detector']!r} under condition {r['condition']!r} "
                f"in set {r['set']!r}: one condition label must map to one condition_key"
            )
    _check_detectors(df)
    catalogue = _set_catalogue(df)
    scored_sets = list(catalogue[catalogue["set_kind"] != "real"].itertuples(index=False))
    n_gen = sum(s.set_kind == "generator" for s in scored_sets)
    position = {(s.suite, s.set): i + (i >= n_gen) for i, s in enumerate(scored_sets)}
    describe = df[["detector", "weights", "display_name", "family", "calibrated"]].drop_duplicates(["detector", "weights"])
    labels, logits = df["label"].to_numpy(), df["logit"].to_numpy()
    cells = df.groupby(["condition", "detector", "weights", "suite", "set"], sort=False).indices
    # Avg is the mean over every generator set of the suite, in every block: a set with no scores
    # under one condition (missing processed copies, an image set that failed the chain) makes that
    # Avg NaN with a warning, never a mean over fewer sets beside full ones.
    gen_all = {(su, se) for _, _, _, su, se in cells if (su, se) in position and position[(su, se)] < n_gen}

    rows: list[dict] = []
    for cond in condition_order(list(df["condition"].unique())):
        for d in describe.itertuples(index=False):
            base = {
                "condition": cond, "detector": d.detector, "weights": d.weights, "display_name": d.display_name,
                "family": d.family, "calibrated": bool(d.calibrated),
            }
            set_rows, real_sources, boot_groups = [], {}, []
            for s in scored_sets:
                own = cells.get((cond, d.detector, d.weights, s.suite, s.set))
                if own is None:
                    continue
                parts = [(s.set, own)]
                if not (s.set_kind == "wild" and len(np.unique(labels[own])) == 2):
                    if not isinstance(s.real_set, str) or not s.real_set:
                        raise MetricError(
                            f"{s.set_kind} set {s.set!r} ({s.suite}) holds one class only and names no real_set to score it against"
                        )
                    reals = cells.get((cond, d.detector, d.weights, s.suite, s.real_set))
                    if reals is None:
                        raise MetricError(
                            f"set {s.set!r} ({s.suite}) is scored against real set {s.real_set!r}, which has no scores "
                            f"for detector {d.detector!r} under condition {cond!r}"
                        )
                    parts.insert(0, (s.real_set, reals))
                idx = np.concatenate([i for _, i in parts])
                y, sc = labels[idx], logits[idx]
                try:
                    values = compute_all(y, sc, base["calibrated"])
                    lo = hi = math.nan
                    if bootstrap and min(int((y == REAL).sum()), int((y == FAKE).sum())) >= SMALL_SET:
                        rs = derive_seed(seed, cond, d.detector, d.weights, s.suite, s.set)
                        lo, hi = bootstrap_ci(auc, y, sc, n=bootstrap, seed=rs)
                except MetricError as exc:
                    raise MetricError(f"set {s.set!r} ({s.suite}), detector {d.detector!r}, condition {cond!r}: {exc}") from exc
                set_rows.append({
                    **base, "suite": s.suite, "set": s.set, "set_display": s.set_display, "set_kind": s.set_kind,
                    "set_order": position[(s.suite, s.set)], "n_real": int((y == REAL).sum()),
                    "n_fake": int((y == FAKE).sum()), **values, "auc_lo": lo, "auc_hi": hi,
                })
                if s.set_kind == "generator":
                    real_sources.update({(s.suite, name): int((labels[i] == REAL).sum()) for name, i in parts})
                    # sets share the resample of their real set; a set holding reals of its own has its own reals
                    own_reals = bool((labels[own] == REAL).any())
                    boot_groups.append(((s.suite, s.set if own_reals else parts[0][0]), sc[y == REAL], sc[y == FAKE]))
            gen_rows = [r for r in set_rows if r["set_kind"] == "generator"]
            if gen_rows:
                have = {(r["suite"], r["set"]) for r in gen_rows}
                complete = have == gen_all
                if not complete:
                    warnings.warn(
                        f"evaluate: {d.detector!r} under {cond!r} lacks generator set(s) "
                        f"{sorted(se for _, se in gen_all - have)}; its Avg is NaN",
                        stacklevel=2,
                    )
                lo = hi = math.nan
                big_enough = all(min(len(r), len(f)) >= SMALL_SET for _, r, f in boot_groups)
                if bootstrap and complete and big_enough:
                    lo, hi = bootstrap_avg_auc(boot_groups, n=bootstrap, seed=derive_seed(seed, cond, d.detector, d.weights, AVG))
                avg = {
                    **base, "suite": "", "set": AVG, "set_display": "Avg", "set_kind": "avg", "set_order": n_gen,
                    "n_real": sum(real_sources.values()), "n_fake": sum(r["n_fake"] for r in gen_rows),
                    **{m: float(np.mean([r[m] for r in gen_rows])) if complete else math.nan for m in METRIC_COLUMNS},
                    "auc_lo": lo, "auc_hi": hi,
                }
                set_rows.insert(len(gen_rows), avg)
            rows.extend(set_rows)
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
