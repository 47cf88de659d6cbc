"""Figures of the papers' kinds, from the scores table and the metrics table.

- `score_distributions`: logit histograms per set with the decision threshold at 0, one figure
  per detector x condition (the style of DEAR's Fig. 5).
- `accuracy_bars`: R.Acc / F.Acc per detector, Original vs Post-processed (DEAR's Fig. 1).
- `sweep_figure`: a metric against a post-processing parameter, one line per detector
  (Stay-Positive's Figs. 1 and 4).

Matplotlib is imported inside the functions, so `import bench.plots` stays cheap; figures are
built with `matplotlib.figure.Figure` and written by the Agg renderer, without pyplot, so the
caller's pyplot state and backend are never touched.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.api import AVG, FAKES_ONLY, ORIGINAL, BenchError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DPI = 150


class PlotError(BenchError, ValueError):
    """The data given cannot make the requested figure."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-") or "x"


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _need(df: pd.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise PlotError(f"{what} lacks column(s) {missing}")


def _label(display: str, weights: str, clash: bool) -> str:
    return f"{display} ({weights})" if clash and weights else display


def _tagged(detector: str, weights: str) -> str:
    """"corvi.mini" for detector "corvi" with weights "corvi.mini" (the runner's label) or "mini"."""
    if not weights or weights.startswith(f"{detector}."):
        return weights or detector
    return f"{detector}.{weights}"


def _set_display(df: pd.DataFrame, set_name: str) -> str:
    return str(df["set_display"].iloc[0]) if "set_display" in df.columns and len(df) else set_name


def _weights(df: pd.DataFrame) -> pd.Series:
    return df["weights"].fillna("").astype(str) if "weights" in df.columns else df["detector"].map(lambda _: "")


# --------------------------------------------------------------------------- score distributions


def _panel_mask(g: pd.DataFrame, kind: str) -> pd.Series:
    """Rows of one panel: the sets of `kind` plus the real sets they are scored against
    (every real set goes with the generators when the table names no real_set)."""
    mine = g["set_kind"] == kind
    if "real_set" in g.columns:
        reals = g.loc[mine, "real_set"].dropna().unique()
        return mine | ((g["set_kind"] == "real") & g["set"].isin(reals))
    return mine | ((g["set_kind"] == "real") & (kind == "generator"))


def score_distributions(scores_df: pd.DataFrame, out_dir: str | Path, bins: int = 40) -> list[Path]:
    """One PNG per detector x condition: density histograms of logits, reals filled grey and one
    outline per generator set; a second panel for in-the-wild sets when there are any. The dashed
    line is the decision threshold (logit 0); for an uncalibrated detector it is drawn dotted and
    the title says the threshold is not meaningful."""
    import numpy as np

    from bench.metrics import condition_order

    _need(scores_df, ("detector", "display_name", "calibrated", "set", "set_display", "set_kind", "set_order",
                      "condition", "label", "logit"), "scores table")
    df = scores_df[scores_df["logit"].notna()].copy()
    if df.empty:
        raise PlotError("scores table has no scores to plot")
    df["weights"] = _weights(df)
    out_dir = Path(out_dir)
    paths: list[Path] = []
    detectors = list(dict.fromkeys(zip(df["detector"], df["weights"])))
    multi = len({d for d, _ in detectors}) < len(detectors)
    for cond in condition_order(df["condition"].tolist()):
        for det, wt in detectors:
            g = df[(df["condition"] == cond) & (df["detector"] == det) & (df["weights"] == wt)]
            if g.empty:
                continue
            logits = g["logit"].to_numpy(float)
            finite = logits[np.isfinite(logits)]
            lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (-1.0, 1.0))
            lo, hi = min(lo, 0.0) - 0.5, max(hi, 0.0) + 0.5  # keep the threshold in view
            edges = np.linspace(lo, hi, bins + 1)
            panels = [(title, g[_panel_mask(g, kind)]) for title, kind in (("Generators", "generator"), ("In the wild", "wild"))]
            panels = [(t, p) for t, p in panels if (p["set_kind"] != "real").any()]
            if not panels:
                continue
            fig = _figure(6.0 * len(panels), 4.0)
            axes = fig.subplots(1, len(panels), squeeze=False)[0]
            first = g.iloc[0]
            calibrated = bool(first["calibrated"])
            for ax, (title, part) in zip(axes, panels):
                reals = np.clip(part.loc[part["label"] == 0, "logit"].to_numpy(float), lo, hi)
                if reals.size:
                    ax.hist(reals, bins=edges, density=True, color="0.6", alpha=0.6, label=f"real (n={reals.size})")
                fake_sets = part[part["label"] == 1].drop_duplicates("set").sort_values("set_order", kind="mergesort")
                for color, s in zip(_colors(len(fake_sets)), fake_sets.itertuples()):
                    x = np.clip(part.loc[(part["set"] == s.set) & (part["label"] == 1), "logit"].to_numpy(float), lo, hi)
                    ax.hist(x, bins=edges, density=True, histtype="step", linewidth=1.6, color=color,
                            label=f"{s.set_display} (n={x.size})")
                ax.axvline(0.0, color="k", linestyle="--" if calibrated else ":", linewidth=1.2,
                           label="threshold (logit 0)")
                ax.set_title(title)
                ax.set_xlabel("logit (positive = fake)")
                ax.set_ylabel("density")
                ax.legend(fontsize="small", frameon=False)
            note = "" if calibrated else " (uncalibrated: threshold 0 not meaningful)"
            fig.suptitle(f"{_label(first['display_name'], wt, multi)} - {cond}{note}")
            name = f"scores_{_slug(_tagged(det, wt))}_{_slug(cond)}.png"
            paths.append(_save(fig, out_dir / name))
    return paths


# --------------------------------------------------------------------------- summary sets


def summary_sets(metrics_df: pd.DataFrame) -> list[str]:
    """The sets a summary figure (accuracy bars, sweep) is drawn for: the generator average
    where the suite has generator sets, else each of its sets, because a wild-only suite has no
    Avg (DEAR keeps in-the-wild sets apart)."""
    if (metrics_df["set"] == AVG).any():
        return [AVG]
    return list(dict.fromkeys(metrics_df.sort_values("set_order", kind="stable")["set"]))


def summary_path(out_dir: str | Path, stem: str, set_name: str) -> Path:
    """`<stem>.png` for the generator average, `<stem>_<set>.png` for one set."""
    return Path(out_dir) / (f"{stem}.png" if set_name == AVG else f"{stem}_{_slug(set_name)}.png")


# --------------------------------------------------------------------------- accuracy bars


def accuracy_bars(metrics_df: pd.DataFrame, out_path: str | Path, set_name: str = AVG) -> Path:
    """R.Acc and F.Acc bars per calibrated detector on `set_name` (default: the average over
    generator sets), every condition of the table side by side in condition order (Original,
    Post-processed, then any swept chain): solid = the first, hatched = the others; blue =
    reals, red = fakes."""
    import numpy as np

    from bench.metrics import condition_order

    _need(metrics_df, ("condition", "detector", "display_name", "calibrated", "set", "racc", "facc"), "metrics table")
    on_set = metrics_df[metrics_df["set"] == set_name]
    skipped = list(dict.fromkeys(on_set.loc[~on_set["calibrated"].astype(bool), "display_name"]))
    df = on_set[on_set["calibrated"].astype(bool)].copy()
    df["weights"] = _weights(df)
    present = condition_order(list(df["condition"].unique()))
    if not present:
        raise PlotError(f"no calibrated detector has {set_name!r} rows")
    conds = present
    detectors = list(dict.fromkeys(zip(df["detector"], df["weights"], df["display_name"])))
    multi = len({d for d, _, _ in detectors}) < len(detectors)
    x = np.arange(len(detectors))
    nbar = 2 * len(conds)
    width = 0.8 / nbar
    fig = _figure(max(5.0, 1.3 * max(1.0, nbar / 4) * len(detectors) + 2.0), 4.2)
    ax = fig.subplots()
    hatches = [None, "//", "..", "xx", "\\\\", "++", "--", "oo"]
    styles = {c: {"hatch": hatches[i % len(hatches)], "alpha": 1.0 if i == 0 else 0.55} for i, c in enumerate(conds)}
    k = 0
    for cond in conds:
        for metric, color, what in (("racc", "tab:blue", "R.Acc"), ("facc", "tab:red", "F.Acc")):
            vals = []
            for det, wt, disp in detectors:
                row = df[(df["condition"] == cond) & (df["detector"] == det) & (df["weights"] == wt)]
                vals.append(float(row[metric].iloc[0]) if len(row) else math.nan)
                if math.isnan(vals[-1]) and metric == "racc":
                    log.warning("accuracy bars: %s has no %s value on %s for R.Acc/F.Acc; its bars are left empty",
                                _label(disp, wt, multi), cond, set_name)
            bars = ax.bar(x + (k - (nbar - 1) / 2) * width, vals, width, color=color, edgecolor="k", linewidth=0.5,
                          label=f"{what} {cond}", **styles[cond])
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
            k += 1
    ax.set_xticks(x, [_label(d, w, multi) for _, w, d in detectors], rotation=20 if len(detectors) > 5 else 0)
    ax.set_ylim(0, 109)
    ax.set_ylabel("accuracy at logit 0 (%)")
    ax.set_xlabel("detector" + (f" (uncalibrated, not shown: {', '.join(skipped)})" if skipped else ""))
    where = "average over generator sets" if set_name == AVG else f"set {_set_display(df, set_name)}"
    ax.set_title(f"Real and fake accuracy ({where})")
    ax.legend(fontsize="small", ncol=min(len(conds), 4), loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return _save(fig, Path(out_path))


# --------------------------------------------------------------------------- parameter sweeps


def param_value(condition: str, param: str) -> float | None:
    """The value of `param` in a condition label such as "webp:quality=50" or
    "jpeg:quality=75+blur:sigma=1" (read as the chain spec it is); `param` is "quality" or, to
    pick one step, "jpeg.quality". None when the label does not set it (e.g. "Original")."""
    from bench.registry import parse_chain_step

    spec = str(condition).split("@")[0].removesuffix(FAKES_ONLY)
    found = []
    for part in spec.split("+"):
        try:
            op, kwargs = parse_chain_step(part.strip(), spec)
        except BenchError:  # not a chain step: a label of one's own
            continue
        found += [value for key, value in kwargs.items() if param in (key, f"{op}.{key}", f"{op}:{key}")]
    if len(found) > 1:
        raise PlotError(f"condition {condition!r} sets {param!r} more than once; name the step, e.g. 'jpeg.{param}'")
    if not found:
        return None
    try:
        return float(found[0])
    except (TypeError, ValueError):
        raise PlotError(f"condition {condition!r}: {param}={found[0]!r} is not a number") from None


def sweep_figure(
    metrics_df: pd.DataFrame, param: str, metric: str = "ap", *, out_path: str | Path, set_name: str = AVG,
    x: Mapping[str, float] | None = None, xlabel: str | None = None,
) -> Path:
    """`metric` on `set_name` against `param`, one line per detector; each detector's unprocessed
    ("Original") value is a dotted line in its colour.

    The x value of a condition comes from `x` (condition label -> value, as a sweep run's manifest
    records it) or, without it, is parsed from the label by `param_value`."""
    from bench.tables import HEADERS

    if metric not in HEADERS:
        raise PlotError(f"unknown metric {metric!r}; choose from {list(HEADERS)}")
    _need(metrics_df, ("condition", "detector", "display_name", "set", metric), "metrics table")
    df = metrics_df[metrics_df["set"] == set_name].copy()
    df["weights"] = _weights(df)
    df["_x"] = [x.get(c) if x is not None else param_value(c, param) for c in df["condition"]]
    sweep = df[df["_x"].notna()]
    if sweep.empty:
        what = f"none of the swept conditions {sorted(x)} is" if x is not None else f"no condition label setting {param!r} is"
        raise PlotError(f"{what} in the table for set {set_name!r}; conditions: {sorted(set(metrics_df['condition']))}")
    categories = None  # values that are not numbers ("64x64", "30-100") stand at even steps, in sweep order
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sweep["_x"]):
        categories = list(dict.fromkeys(x.values() if x is not None else sweep["_x"]))
        sweep = sweep.assign(_x=sweep["_x"].map({v: i for i, v in enumerate(categories)}))
    detectors = list(dict.fromkeys(zip(df["detector"], df["weights"], df["display_name"])))
    multi = len({d for d, _, _ in detectors}) < len(detectors)
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    drew_original = False
    for color, (det, wt, disp) in zip(_colors(len(detectors)), detectors):
        mine = sweep[(sweep["detector"] == det) & (sweep["weights"] == wt)]
        if mine.empty:
            continue
        pts = mine.groupby("_x")[metric].mean().sort_index()
        ax.plot(pts.index.to_numpy(float), pts.to_numpy(float), marker="o", color=color, label=_label(disp, wt, multi))
        orig = df[(df["condition"] == ORIGINAL) & (df["detector"] == det) & (df["weights"] == wt)]
        if len(orig) and not math.isnan(float(orig[metric].iloc[0])):
            ax.axhline(float(orig[metric].iloc[0]), color=color, linestyle=":", linewidth=1.2)
            drew_original = True
    if drew_original:
        ax.plot([], [], color="0.3", linestyle=":", label="Original (no processing)")
    where = "average over generator sets" if set_name == AVG else f"set {_set_display(df, set_name)}"
    if categories is not None:
        ax.set_xticks(range(len(categories)), [str(v) for v in categories])
    ax.set_xlabel(xlabel or param)
    ax.set_ylabel(f"{HEADERS[metric]} (%)")
    ax.set_title(f"{HEADERS[metric]} vs {param} ({where})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", frameon=False)
    return _save(fig, Path(out_path))
