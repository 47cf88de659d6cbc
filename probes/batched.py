"""Many L2-regularised logistic regressions without intercept, fitted at once in torch.

Greedy feature removal (Gaintseva et al., arXiv 2406.15035, Sec. 5) needs d fits per step and
about d^2/2 in all (300k for d = 768), and head selection one fit per attention head: one
scikit-learn fit after another is far too slow. Here k models share one full-batch loop on CPU
or GPU: the objective of each is scikit-learn's (C * sum of log-losses + |w|^2 / 2, written as
its mean over n rows), minimised by Jacobi-preconditioned accelerated gradient descent with a
safe step (the logistic Hessian is at most X'X / 4n + I / Cn everywhere, its largest eigenvalue
found by power iteration) and adaptive momentum restarts (O'Donoghue & Candes 2015). Each model
can start from a given weight (warm starts: removal starts every candidate from the current
solution). Convex and smooth, so it reaches scikit-learn's optimum (tested against it).

A `Design` says how the k models read the data: `Masked` (one feature matrix, a 0/1 feature mask
per model: removal) or `Blocks` (each model its own (n, e) block: one attention head each).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


class Design:
    """k linear models on n rows: logits (n, k) = lin(W) for weights W (k, d)."""

    n: int
    k: int
    d: int

    def lin(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """(k, d) gradient of sum(r * lin(W)) with respect to W, for r (n, k)."""
        raise NotImplementedError

    def diag(self) -> torch.Tensor:
        """(k, d) diagonal of each model's X'X / n (0 where a feature is masked)."""
        raise NotImplementedError

    def mask(self) -> torch.Tensor:
        """(k, d) 1 where a weight is free, 0 where it is held at 0."""
        return torch.ones(self.k, self.d, dtype=self.dtype, device=self.device)


@dataclass
class Masked(Design):
    """One (n, d) matrix; model j uses the features where `masks[j]` is 1."""

    x: torch.Tensor
    masks: torch.Tensor

    def __post_init__(self) -> None:
        self.n, self.d = self.x.shape
        self.k = self.masks.shape[0]
        self.masks = self.masks.to(self.x.dtype)
        self.dtype, self.device = self.x.dtype, self.x.device

    def lin(self, w: torch.Tensor) -> torch.Tensor:
        return self.x @ (w * self.masks).T

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        return (r.T @ self.x) * self.masks

    def diag(self) -> torch.Tensor:
        return (self.x**2).mean(dim=0).unsqueeze(0) * self.masks

    def mask(self) -> torch.Tensor:
        return self.masks


@dataclass
class Blocks(Design):
    """(n, k, e): model j reads block j (e features)."""

    x: torch.Tensor

    def __post_init__(self) -> None:
        self.n, self.k, self.d = self.x.shape
        self.dtype, self.device = self.x.dtype, self.x.device

    def lin(self, w: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nke,ke->nk", self.x, w)

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nk,nke->ke", r, self.x)

    def diag(self) -> torch.Tensor:
        return (self.x**2).mean(dim=0)


def _largest_eigenvalue(design: Design, precond: torch.Tensor, lam: float, iters: int = 30) -> torch.Tensor:
    """(k,) upper estimate of the largest eigenvalue of P^1/2 (X'X / 4n + lam I) P^1/2 per model."""
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(design.k, design.d, generator=g, dtype=torch.float64).to(design.device, design.dtype) * design.mask()
    root = precond.sqrt()
    est = torch.ones(design.k, dtype=design.dtype, device=design.device)
    for _ in range(iters):
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
        u = root * v
        hv = root * (design.adjoint(design.lin(u)) / (4 * design.n) + lam * u * design.mask())
        est = (hv * v).sum(dim=1)
        v = hv
    return est * 1.05 + 1e-12  # power iteration approaches from below: a margin keeps the step safe


def loss_of(design: Design, w: torch.Tensor, y: torch.Tensor, lam: float = 0.0) -> torch.Tensor:
    """(k,) mean log-loss of each model (plus lam |w|^2 / 2), y in {0, 1}."""
    z = design.lin(w)
    yy = y.to(z.dtype).unsqueeze(1)
    return torch.nn.functional.binary_cross_entropy_with_logits(z, yy.expand_as(z), reduction="none").mean(0) + \
        0.5 * lam * (w**2).sum(1)


def fit(design: Design, y: torch.Tensor, C: float, w0: torch.Tensor | None = None, *, iters: int = 300,
        tol: float = 1e-7) -> torch.Tensor:
    """(k, d) weights minimising each model's mean log-loss + |w|^2 / (2 C n), from `w0`
    (default zeros); stops early when every gradient is below `tol` (max abs, preconditioned)."""
    n = design.n
    lam = 1.0 / (C * n)
    mask = design.mask()
    precond = 1.0 / (design.diag() / 4 + lam)
    step = (1.0 / _largest_eigenvalue(design, precond, lam)).unsqueeze(1)
    w = (w0.clone() if w0 is not None else torch.zeros(design.k, design.d, dtype=design.dtype, device=design.device)) * mask
    yy = y.to(design.dtype).unsqueeze(1)
    prev, momentum = w.clone(), torch.ones(design.k, 1, dtype=design.dtype, device=design.device)
    t = torch.ones_like(momentum)
    for _ in range(iters):
        look = w + momentum * (w - prev)
        grad = (design.adjoint(torch.sigmoid(design.lin(look)) - yy) / n + lam * look) * mask
        new = look - step * precond * grad
        restart = ((grad * (new - w)).sum(1, keepdim=True) > 0)  # moving uphill: drop the momentum
        t_next = (1 + torch.sqrt(1 + 4 * t**2)) / 2
        momentum = torch.where(restart, torch.zeros_like(t), (t - 1) / t_next)
        t = torch.where(restart, torch.ones_like(t), t_next)
        prev, w = w, new
        if float((precond * grad).abs().max()) < tol:
            break
    return w
