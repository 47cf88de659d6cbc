"""The linear probe of Gaintseva et al. (arXiv 2406.15035, Sec. 3 and App.): scikit-learn's
LogisticRegression without an intercept (the paper reports the bias makes no difference) on
frozen embeddings, hyper-parameters chosen on a validation split over solver {lbfgs, saga},
C {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 10} and max_iter {10, 50, 100, 500, 1000, 5000}, then
refit on train + validation. The paper labels generated = 0 and real = 1; here fake = 1, so the
weight is the paper's negated and a positive logit means fake, as everywhere in the harness.
"""
from __future__ import annotations

import itertools
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from probes.data import Problem

GRID: dict[str, tuple[Any, ...]] = {
    "solver": ("lbfgs", "saga"),
    "C": (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0),
    "max_iter": (10, 50, 100, 500, 1000, 5000),
}
VAL_FRACTION = 0.2


@dataclass
class LRFit:
    """A fitted probe: weight (D,), the chosen hyper-parameters and how they were chosen."""

    weight: np.ndarray
    solver: str
    C: float
    max_iter: int
    val_accuracy: float
    grid_size: int
    not_converged: int  # grid fits that stopped at max_iter (part of the grid by design)
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("weight")
        return out


def validation_split(y: np.ndarray, seed: int, fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): a seeded `fraction` of each class, at least one of each."""
    rng = np.random.default_rng(seed)
    val = []
    for c in (0, 1):
        rows = np.flatnonzero(y == c)
        n = min(max(1, int(round(len(rows) * fraction))), len(rows) - 1)
        val.extend(rng.permutation(rows)[:n].tolist())
    val_rows = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), val_rows), val_rows


def _model(solver: str, C: float, max_iter: int, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(fit_intercept=False, solver=solver, C=C, max_iter=max_iter, random_state=seed)


def fit_lr(train: Problem, *, seed: int = 0, grid: dict[str, tuple[Any, ...]] | None = None) -> LRFit:
    """Choose (solver, C, max_iter) by validation accuracy on a seeded split of `train` (ties:
    the first in grid order), then refit on all of `train`."""
    from sklearn.exceptions import ConvergenceWarning

    grid = grid or GRID
    t0 = time.perf_counter()
    tr, va = validation_split(train.y, seed)
    Problem(train.x[tr], train.y[tr], train.rows[tr]).check("the probe's training split")
    combos = list(itertools.product(grid["solver"], grid["C"], grid["max_iter"]))
    best, best_acc, not_converged = combos[0], -1.0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for solver, C, max_iter in combos:
            model = _model(solver, C, max_iter, seed).fit(train.x[tr], train.y[tr])
            not_converged += int(np.any(model.n_iter_ >= max_iter))
            acc = float(np.mean((train.x[va] @ model.coef_[0] > 0) == train.y[va]))
            if acc > best_acc:
                best, best_acc = (solver, C, max_iter), acc
        final = _model(*best, seed).fit(train.x, train.y)
    return LRFit(final.coef_[0].astype(np.float64), best[0], float(best[1]), int(best[2]), best_acc, len(combos), not_converged,
                 time.perf_counter() - t0)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Percentage of rows on the right side of logit 0 (> 0 = fake): the paper's accuracy."""
    return float(100.0 * np.mean((np.asarray(logits) > 0) == (np.asarray(y) == 1)))


def auc(logits: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC x100 (`bench.metrics.auc`)."""
    from bench.metrics import auc as _auc

    return float(_auc(np.asarray(y), np.asarray(logits)))
