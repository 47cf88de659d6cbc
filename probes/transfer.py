"""Cross-generator transfer (Gaintseva et al., arXiv 2406.15035, Table 4): a probe trained on the
fakes of one generator (plus the shared reals) is tested on every generator, giving a train x test
matrix of accuracy and AUC, with row and column averages over the other generators and the mean
over blocks of generator groups (the paper's GAN / diffusion averages).

Two probes (`METHODS`):
- "lr": the paper's logistic regression (`probes.lr.fit_lr`);
- "residual": the residual vector resid_g = Norm(mean fake_g) - Norm(mean real), both means over
  the training split; an image scores cos(e, resid_g), and the threshold comes from a logistic
  regression on that one feature (with an intercept: a threshold is what it learns).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from probes.data import Problem, Splits
from probes.lr import LRFit, accuracy, auc, fit_lr
from probes.spec import ProbeError

METHODS = ("lr", "residual")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


@dataclass
class Residual:
    """A residual-vector probe: logit = a * cos(e, direction) + b."""

    direction: np.ndarray
    a: float
    b: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        norms = np.maximum(np.linalg.norm(x, axis=1), 1e-12)
        return self.a * (x @ _unit(self.direction)) / norms + self.b


def fit_residual(train: Problem) -> Residual:
    from sklearn.linear_model import LogisticRegression

    train.check("the residual vector's training data")
    direction = _unit(train.x[train.y == 1].mean(0)) - _unit(train.x[train.y == 0].mean(0))
    cos = (train.x @ _unit(direction)) / np.maximum(np.linalg.norm(train.x, axis=1), 1e-12)
    one = LogisticRegression().fit(cos[:, None], train.y)
    return Residual(direction, float(one.coef_[0, 0]), float(one.intercept_[0]))


def fit_method(method: str, train: Problem, seed: int, grid: dict[str, tuple[Any, ...]] | None = None) -> LRFit | Residual:
    if method == "lr":
        return fit_lr(train, seed=seed, grid=grid)
    if method == "residual":
        return fit_residual(train)
    raise ProbeError(f"unknown probe method {method!r}; known: {', '.join(METHODS)}")


@dataclass
class Matrix:
    """Rows: the generator trained on; columns: the generator tested on (in percent)."""

    generators: list[str]
    accuracy: np.ndarray
    auc: np.ndarray
    method: str
    condition: str
    train_condition: str
    features: int
    probes: dict[str, Any] = field(default_factory=dict)  # generator -> fitted probe
    groups: dict[str, list[str]] = field(default_factory=dict)

    def ood_mean(self, metric: str = "accuracy", among: list[str] | None = None) -> float:
        """Mean over cells with train != test (both in `among`, default all)."""
        values = getattr(self, metric)
        keep = [i for i, g in enumerate(self.generators) if among is None or g in among]
        cells = [values[i, j] for i in keep for j in keep if i != j]
        return float(np.mean(cells)) if cells else float("nan")

    def table(self, metric: str = "accuracy") -> pd.DataFrame:
        """The matrix with an "avg" column (each row's mean over the other generators) and an
        "avg" row (each column's mean over the other generators); the corner is the OOD mean."""
        values = getattr(self, metric)
        g = len(self.generators)
        off = ~np.eye(g, dtype=bool)
        df = pd.DataFrame(values, index=self.generators, columns=self.generators)
        df["avg"] = [values[i][off[i]].mean() if g > 1 else np.nan for i in range(g)]
        col = [values[:, j][off[:, j]].mean() if g > 1 else np.nan for j in range(g)]
        df.loc["avg"] = [*col, self.ood_mean(metric)]
        df.index.name = "train \\ test"
        return df

    def group_table(self, metric: str = "accuracy") -> pd.DataFrame:
        """Mean of each (train group, test group) block over its cells with train != test."""
        values = getattr(self, metric)
        rows = []
        for a, ga in self.groups.items():
            for b, gb in self.groups.items():
                cells = [values[self.generators.index(i), self.generators.index(j)] for i in ga for j in gb if i != j]
                rows.append({"train_group": a, "test_group": b, metric: float(np.mean(cells)) if cells else np.nan, "cells": len(cells)})
        return pd.DataFrame(rows)

    def long(self) -> pd.DataFrame:
        return pd.DataFrame([{"train": a, "test": b, "accuracy": self.accuracy[i, j], "auc": self.auc[i, j]}
                             for i, a in enumerate(self.generators) for j, b in enumerate(self.generators)])

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "condition": self.condition, "train_condition": self.train_condition,
                "features": self.features, "ood_accuracy": round(self.ood_mean("accuracy"), 2),
                "ood_auc": round(self.ood_mean("auc"), 2),
                "in_domain_accuracy": round(float(np.mean(np.diag(self.accuracy))), 2)}


def parse_groups(text: str | None, generators: list[str]) -> dict[str, list[str]]:
    """'gan=tconv,shuffle;diffusion=ldm,flux16,vq' -> groups, every name checked."""
    if not text:
        return {}
    groups: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, eq, members = part.partition("=")
        names = [m.strip() for m in members.split(",") if m.strip()]
        if not eq or not name.strip() or not names:
            raise ProbeError(f"--groups: expected NAME=gen,gen;NAME=gen,..., got {part!r}")
        for m in names:
            if m not in generators:
                raise ProbeError(f"--groups: generator {m!r} of group {name.strip()!r} is not among {', '.join(generators)}")
        groups[name.strip()] = names
    return groups


def check_generators(generators: list[str], what: str = "a transfer matrix") -> None:
    if len(generators) < 2:
        raise ProbeError(f"{what} needs at least two generators (train on one, test on the others); "
                         f"these embeddings have {len(generators)}: {', '.join(generators) or 'none'}")


def transfer_matrix(splits: Splits, method: str = "lr", *, generators: list[str] | None = None, features: np.ndarray | None = None,
                    train_splits: Splits | None = None, groups: dict[str, list[str]] | None = None,
                    progress: Callable[[str], None] | None = None, grid: dict[str, tuple[Any, ...]] | None = None) -> Matrix:
    """Train on each generator's training split (under `train_splits`' condition, default the
    same), test on every generator's test split (under `splits`' condition)."""
    gens = generators or splits.emb.generators
    check_generators(gens)
    if method not in METHODS:
        raise ProbeError(f"unknown probe method {method!r}; known: {', '.join(METHODS)}")
    train_splits = train_splits or splits
    trains, tests = {}, {}
    for g in gens:  # every problem built and checked once, before the first fit
        trains[g] = train_splits.problem(g, "train", features).check(f"generator {g!r}, training split ({train_splits.condition})")
        tests[g] = splits.problem(g, "test", features).check(f"generator {g!r}, test split ({splits.condition})")
    acc, area = np.zeros((len(gens), len(gens))), np.zeros((len(gens), len(gens)))
    probes: dict[str, Any] = {}
    for i, g in enumerate(gens):
        if progress:
            progress(g)
        probe = fit_method(method, trains[g], train_splits.seed, grid)
        probes[g] = probe
        for j, h in enumerate(gens):
            test = tests[h]
            logits = probe.logits(test.x)
            acc[i, j], area[i, j] = accuracy(logits, test.y), auc(logits, test.y)
    dim = splits.emb.dim if features is None else len(features)
    return Matrix(list(gens), acc, area, method, splits.condition, train_splits.condition, dim, probes, groups or {})
