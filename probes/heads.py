"""Attention-head selection (Gaintseva et al., arXiv 2406.15035, Sec. 6): the CLS representation
is split into each head's direct contribution E^{l,h} (Gandelsman et al., ICLR 2024; yossigandelsman/
clip_text_span prs_hook.py: attention-weighted, OV-projected values of each head into the residual
stream, mapped through the final LayerNorm linearised at the whole sum and the projection:
`probes.encoders.head_contributions`, tap "heads"). A probe per head is fitted on a training
generator and scored on a validation generator; the top heads' contributions are concatenated,
and the transfer matrix of a probe on them is reported without the validation generator.

Per-head probes are the paper's LR objective at a fixed C (default 1, scikit-learn's default),
fitted all at once (`probes.batched.Blocks`); ties in validation accuracy go to the lower
validation log-loss. The final probe runs the full grid (`probes.lr`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from probes.data import Splits
from probes.spec import ProbeError


@dataclass
class Selection:
    ranking: pd.DataFrame  # layer, head, accuracy, loss, rank
    top: list[tuple[int, int]]
    weights: np.ndarray  # (L*H, E): each head's probe, in the embedding space
    features: np.ndarray  # indices of the top heads' blocks in the flattened vector


def layout_of(manifest: dict, dim: int) -> tuple[int, int, int]:
    layout = manifest.get("layout")
    if manifest.get("encoder", {}).get("tap") != "heads" or not layout:
        raise ProbeError("head selection needs embeddings of tap 'heads' (bench probe embed --encoder clip:<key> --tap heads); "
                         f"these are tap {manifest.get('encoder', {}).get('tap')!r}")
    n_layers, n_heads, e = map(int, layout)
    if n_layers * n_heads * e != dim:
        raise ProbeError(f"layout {layout} does not match {dim} features")
    return n_layers, n_heads, e


def select(splits: Splits, train_gen: str, val_gen: str, layout: tuple[int, int, int], *, top: int = 3, C: float = 1.0,
           device: str = "cpu") -> Selection:
    import torch

    from probes.batched import Blocks, fit, loss_of

    n_layers, n_heads, e = layout
    k = n_layers * n_heads
    if not 1 <= top <= k:
        raise ProbeError(f"--top {top}: the encoder has {k} heads")
    train = splits.problem(train_gen, "train").check(f"generator {train_gen!r}, training split")
    val = splits.problem(val_gen, "test").check(f"generator {val_gen!r}, validation (test) split")
    xt = torch.as_tensor(train.x.reshape(len(train.y), k, e), dtype=torch.float64, device=device)
    xv = torch.as_tensor(val.x.reshape(len(val.y), k, e), dtype=torch.float64, device=device)
    w = fit(Blocks(xt), torch.as_tensor(train.y, device=device), C, iters=500)
    z = Blocks(xv).lin(w)
    yv = torch.as_tensor(val.y, device=device)
    acc = (((z > 0) == (yv.unsqueeze(1) == 1)).double().mean(0) * 100).cpu().numpy()
    loss = loss_of(Blocks(xv), w, yv).cpu().numpy()
    order = sorted(range(k), key=lambda i: (-acc[i], loss[i], i))
    ranking = pd.DataFrame({"layer": [i // n_heads for i in order], "head": [i % n_heads for i in order],
                            "accuracy": acc[order], "loss": loss[order], "rank": range(1, k + 1)})
    chosen = order[:top]
    features = np.concatenate([np.arange(i * e, (i + 1) * e) for i in chosen])
    return Selection(ranking, [(i // n_heads, i % n_heads) for i in chosen], w.cpu().numpy(), features)
