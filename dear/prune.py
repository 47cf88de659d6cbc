"""PRUNE: keep the middle band of the RAD distribution, drop both extremes.

Two readings of the same rule are offered because the paper and the code differ slightly:

- ``mode="count"`` (official code, dahyedahye/dear `dear/detector/corvi_mask_gated_detector.py`,
  `build_bilateral_gate`): rank channels by RAD, prune ``int(C * alpha_high)`` from the top and
  ``int(C * alpha_low)`` from the bottom. DEAR-c uses 0.2/0.2 (keeps 60%), DEAR-r 0.3/0.3
  (`configs/corvi_mask_gated.yaml`, `configs/rajan_mask_gated.yaml`).
- ``mode="percentile"`` (paper, Algorithm 1): ``tau_low = percentile(S, 100*alpha_low)``,
  ``tau_high = percentile(S, 100*(1 - alpha_high))``, keep ``tau_low <= S <= tau_high``.
  numpy's linear interpolation puts each threshold between two channels, so without ties
  this keeps one channel fewer at each end than the count rule (1228 vs 1230 of 2048 at
  0.2/0.2); ties at a threshold are all kept, which can add channels back.

Alphas are fractions in [0, 1) in both modes. Gates are float32 numpy 0/1 vectors: pruning
needs no torch (a model's `FeatureGate.set_` takes them as they are).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.api import BenchError, MissingDataError
from detectors.gates import gate_problem

PruneMode = Literal["count", "percentile"]


class PruneError(BenchError):
    pass


def _check(scores: np.ndarray, alpha_low: float, alpha_high: float) -> None:
    if scores.ndim != 1 or scores.size == 0:
        raise PruneError(f"RAD scores must be a non-empty 1-D vector, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise PruneError(f"RAD scores contain {int((~np.isfinite(scores)).sum())} non-finite values")
    check_alphas(alpha_low, alpha_high)


def check_alphas(alpha_low: float, alpha_high: float) -> None:
    """Each end prunes a fraction in [0, 1), and together they must leave a channel."""
    for name, a in (("alpha_low", alpha_low), ("alpha_high", alpha_high)):
        if not 0.0 <= a < 1.0:
            raise PruneError(f"{name} must be a fraction in [0, 1), got {a}")
    if alpha_low + alpha_high >= 1.0:
        raise PruneError(f"alpha_low + alpha_high = {alpha_low + alpha_high} prunes every channel; it must be < 1")


PRUNED_HIGH, KEPT, PRUNED_LOW = "pruned-high", "kept", "pruned-low"


def _scores(scores: Any, alpha_low: float, alpha_high: float) -> np.ndarray:
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    _check(s, alpha_low, alpha_high)
    return s


def count_bands(scores: Any, alpha_low: float, alpha_high: float) -> np.ndarray:
    """Band of each channel under the count rule: PRUNED_HIGH for the `int(C * alpha_high)`
    highest RAD, PRUNED_LOW for the `int(C * alpha_low)` lowest, KEPT for the rest; ties are
    ranked by channel index (stable sort), so the bands are reproducible."""
    s = _scores(scores, alpha_low, alpha_high)
    c = s.size
    order = np.argsort(-s, kind="stable")  # high RAD first
    n_top, n_bottom = int(c * alpha_high), int(c * alpha_low)  # n_top + n_bottom < c: check_alphas
    band = np.full(c, KEPT, dtype=object)
    band[order[:n_top]] = PRUNED_HIGH
    band[order[c - n_bottom :]] = PRUNED_LOW
    return band


def bilateral_gate(
    scores: Any,
    alpha_low: float,
    alpha_high: float,
    mode: PruneMode = "count",
) -> np.ndarray:
    """A 0/1 float32 gate [C]: 1 for channels kept (the middle of the RAD ranking)."""
    s = _scores(scores, alpha_low, alpha_high)
    if mode == "count":
        keep = count_bands(s, alpha_low, alpha_high) == KEPT
    elif mode == "percentile":
        tau_low = np.percentile(s, 100.0 * alpha_low)
        tau_high = np.percentile(s, 100.0 * (1.0 - alpha_high))
        keep = (s >= tau_low) & (s <= tau_high)
    else:
        raise PruneError(f"unknown prune mode {mode!r}; use 'count' or 'percentile'")
    if not keep.any():
        raise PruneError(f"pruning with alpha_low={alpha_low}, alpha_high={alpha_high} ({mode}) keeps no channel")
    return keep.astype(np.float32)


def _numpy(gate: Any) -> np.ndarray:
    return np.asarray(gate.detach().cpu() if hasattr(gate, "detach") else gate, dtype=np.float32).reshape(-1)


def gate_summary(gate: Any) -> dict[str, int]:
    g = _numpy(gate)
    return {"num_channels": int(g.size), "kept": int((g > 0).sum()), "pruned": int((g == 0).sum())}


def save_gate(gate: Any, path: str | Path, **metadata: Any) -> Path:
    """Gate vector and how it was made (alphas, mode, RAD file) as `.npz`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**gate_summary(gate), **metadata}
    np.savez(path, gate=_numpy(gate), metadata=np.array(json.dumps(meta, default=str)))
    return path


def gate_from_rad(rad: Any, alpha_low: float, alpha_high: float, mode: PruneMode = "count", out: Path | None = None) -> np.ndarray:
    """The gate of a `dear.rad.RADResult` (saved to `out` as .npz with its provenance if given)."""
    gate = bilateral_gate(rad.scores, alpha_low, alpha_high, mode)
    if out is not None:
        save_gate(gate, out, alpha_low=alpha_low, alpha_high=alpha_high, mode=mode, layer=rad.layer, detector=rad.detector,
                  rad=str(rad.path or ""))  # the file it was loaded from
    return gate


def load_gate(path: str | Path, num_channels: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(gate, metadata) of a gate file from `save_gate`; with `num_channels`, the width the
    model's gated layer must have. Refuses here, naming the file, a gate that is not 0/1 or that
    keeps no channel: either would refit a head that scores nothing (or NaN)."""
    from dear.rad import read_npz

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no gate file here")
    g, meta = read_npz(path, "gate", PruneError, "a gate file written by bench dear prune")
    if g.ndim != 1 or g.size == 0 or not isinstance(meta, dict) or not np.issubdtype(g.dtype, np.number):
        raise PruneError(f"{path}: not a gate file written by bench dear prune (gate shape {g.shape}, dtype {g.dtype})")
    gate = g.astype(np.float32)
    problem = gate_problem(gate)
    if problem:
        raise PruneError(f"{path}: {problem}")
    if not bool(gate.any()):
        raise PruneError(f"{path}: the gate keeps no channel (all {gate.size} are 0)")
    if num_channels is not None and gate.size != num_channels:
        raise PruneError(f"{path}: gate has {gate.size} channels but the model's gated layer has {num_channels} "
                         f"(made for {meta.get('detector') or 'another detector'})")
    return gate, meta
