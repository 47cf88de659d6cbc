"""Greedy feature removal (Gaintseva et al., arXiv 2406.15035, Sec. 5, Fig. 5): on a search pair
{D1, D2}, start from all d features and at each step remove the feature whose removal maximises
the out-of-domain accuracy of a probe trained on D1 and tested on D2, recording the order L and
the scores S; the same from D2 to D1; cut each list at argmax S; combine.

Each step fits one probe per remaining feature, all at once (`probes.batched`, the paper's LR
objective at the C that its grid chose on D1), each candidate warm-started from the current
solution with its feature zeroed. Accuracy on a small test split ties often, so a tie goes to the
lower out-of-domain log-loss. `drop_per_step` > 1 removes the k best candidates per step (k times
fewer steps). The state after every step is written atomically to a checkpoint beside the run
folder, so a killed search resumes where it stopped (same inputs, or the checkpoint is refused).

Combining ("the union of the remaining lists"): `kept-union` (default: the paper's words, a
feature stays when either direction kept it) or `removed-union` (a feature goes when either
direction removed it: the intersection of the kept sets, more aggressive).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probes.data import Problem
from probes.spec import ProbeError

COMBINE = ("kept-union", "removed-union")


@dataclass
class Path_:
    """One direction's search: features removed in order, and the score after each removal
    (scores[0]: all features)."""

    order: list[int]
    accuracy: list[float]
    loss: list[float]

    @property
    def cut(self) -> int:
        """How many removals to keep: argmax of the accuracy (ties: the lower loss, then fewer removals)."""
        best = max(range(len(self.accuracy)), key=lambda i: (self.accuracy[i], -self.loss[i], -i))
        return best

    def kept(self, d: int) -> np.ndarray:
        removed = set(self.order[: self.cut])
        return np.array([f for f in range(d) if f not in removed], dtype=np.int64)


def combine(kept: list[np.ndarray], how: str, d: int) -> np.ndarray:
    if how not in COMBINE:
        raise ProbeError(f"unknown combination {how!r}; known: {', '.join(COMBINE)}")
    sets = [set(k.tolist()) for k in kept]
    out = set.union(*sets) if how == "kept-union" else set.intersection(*sets)
    if not out:
        raise ProbeError(f"combining the two directions by {how} keeps 0 of {d} features; use kept-union")
    return np.array(sorted(out), dtype=np.int64)


def isotropy(x: np.ndarray) -> float:
    """Isotropy of a point cloud as Mu & Viswanath (ICLR 2018) measure it: min over the principal
    directions c of Z(c) = sum_i exp(c . x_i), divided by the max (1 = isotropic), in log space.
    The paper plots an isotropy of the kept space without defining it in what we could read; this
    is the measure common in the embedding literature."""
    from scipy.special import logsumexp

    if x.shape[1] == 0:
        return float("nan")
    _, vecs = np.linalg.eigh(x.T @ x)
    logz = np.array([logsumexp(x @ c) for c in vecs.T])
    return float(np.exp(logz.min() - logz.max()))


def _digest(*arrays: np.ndarray, **settings: Any) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def search(train: Problem, ood: Problem, C: float, *, drop_per_step: int = 1, max_removed: int | None = None, iters: int = 100,
           checkpoint: Path | None = None, device: str = "cpu", progress: bool = True, label: str = "") -> Path_:
    """One direction: fit on `train`, score on `ood`; see the module docstring."""
    import torch
    from tqdm.auto import tqdm

    from probes.batched import Masked, fit, loss_of

    d = train.x.shape[1]
    max_removed = d - 1 if max_removed is None else max_removed
    if not 0 < max_removed < d:
        raise ProbeError(f"--max-removed {max_removed} with {d} features would leave {d - max_removed}: it must be in [1, {d - 1}]")
    key = _digest(train.x, train.y, ood.x, ood.y, C=C, k=drop_per_step, max_removed=max_removed, iters=iters)
    xt = torch.as_tensor(train.x, dtype=torch.float64, device=device)
    yt = torch.as_tensor(train.y, device=device)
    xo = torch.as_tensor(ood.x, dtype=torch.float64, device=device)
    yo = torch.as_tensor(ood.y, device=device)

    def score(w: torch.Tensor, masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        design = Masked(xo, masks)
        z = design.lin(w)
        acc = ((z > 0) == (yo.unsqueeze(1) == 1)).double().mean(0) * 100
        return acc.cpu().numpy(), loss_of(design, w, yo).cpu().numpy()

    state = _resume(checkpoint, key)
    if state is None:
        mask = torch.ones(1, d, dtype=torch.float64, device=device)
        w = fit(Masked(xt, mask), yt, C, iters=max(iters, 300))
        acc, loss = score(w, mask)
        state = {"order": [], "accuracy": [float(acc[0])], "loss": [float(loss[0])], "w": w[0].cpu().numpy()}
    order: list[int] = list(state["order"])
    w_cur = torch.as_tensor(state["w"], dtype=torch.float64, device=device)
    total = sum(d - r for r in range(0, max_removed, drop_per_step))
    done = sum(d - r for r in range(0, len(order), drop_per_step))
    bar = tqdm(total=total, initial=done, unit="fit", desc=f"removal {label}".strip(), disable=not progress, dynamic_ncols=True)
    try:
        while len(order) < max_removed:
            alive = np.setdiff1d(np.arange(d, dtype=np.int64), np.asarray(order, dtype=np.int64))
            base = torch.ones(d, dtype=torch.float64, device=device)
            base[list(order)] = 0
            masks = base.repeat(len(alive), 1)
            masks[torch.arange(len(alive)), torch.as_tensor(alive, device=device)] = 0
            w = fit(Masked(xt, masks), yt, C, w_cur.repeat(len(alive), 1), iters=iters)
            acc, loss = score(w, masks)
            k = min(drop_per_step, max_removed - len(order))
            best = sorted(range(len(alive)), key=lambda i: (-acc[i], loss[i], alive[i]))[:k]
            order += [int(alive[i]) for i in best]
            if k == 1:
                w_cur, a, lo = w[best[0]], float(acc[best[0]]), float(loss[best[0]])
            else:  # the state after removing all k: one more warm-started fit
                base[[int(alive[i]) for i in best]] = 0
                w_cur = fit(Masked(xt, base[None]), yt, C, w[best[0]][None], iters=iters)[0]
                a_arr, lo_arr = score(w_cur[None], base[None])
                a, lo = float(a_arr[0]), float(lo_arr[0])
            state["accuracy"] += [a] * k if k == 1 else [np.nan] * (k - 1) + [a]
            state["loss"] += [lo] * k if k == 1 else [np.nan] * (k - 1) + [lo]
            state["order"], state["w"] = order, w_cur.cpu().numpy()
            _save(checkpoint, key, state)
            bar.update(len(alive))
    finally:
        bar.close()
    acc_list = [float(v) if np.isfinite(v) else -1.0 for v in state["accuracy"]]  # mid-step states are never a cut
    loss_list = [float(v) if np.isfinite(v) else np.inf for v in state["loss"]]
    return Path_(order, acc_list, loss_list)


def _resume(checkpoint: Path | None, key: str) -> dict[str, Any] | None:
    if checkpoint is None or not checkpoint.is_file():
        return None
    data = np.load(checkpoint, allow_pickle=False)
    if str(data["key"]) != key:
        raise ProbeError(f"{checkpoint}: a checkpoint of another search (other data or settings); delete it to start over")
    return {"order": data["order"].tolist(), "accuracy": data["accuracy"].tolist(), "loss": data["loss"].tolist(), "w": data["w"]}


def _save(checkpoint: Path | None, key: str, state: dict[str, Any]) -> None:
    if checkpoint is None:
        return
    from bench.files import atomic_path

    with atomic_path(checkpoint) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(key), order=np.array(state["order"], dtype=np.int64), accuracy=np.array(state["accuracy"]),
                     loss=np.array(state["loss"]), w=state["w"], saved=np.array(time.time()))
