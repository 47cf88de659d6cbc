"""Stay-Positive's score decomposition (Rajan & Lee, ICML 2025, eq. 1) for ResNet detectors.

With pooled, gated features f >= 0 (post-ReLU averages, gate in [0, 1]) and head (w, b), the
logit splits into evidence for "fake" and evidence for "real":
    fake_score = sum_{w_i > 0} w_i f_i,   real_score = -sum_{w_i < 0} w_i f_i,
    logit = b + fake_score - real_score.
A Stay-Positive head (w >= 0) has real_score = 0: nothing in an image can push it towards real,
so real-image features cannot be used to hide a fake. Plotting real_score against fake_score per
image set shows how much a detector leans on real features.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch

from bench.api import BenchError, DetectorInfo, ImageRecord
from bench.batching import batches_of
from detectors.data import load_rgb
from detectors.resnet import GatedResNet, ResNetDetector

COLUMNS = ["path", "set", "label", "bias", "fake_score", "real_score", "logit", "n_pos", "n_neg"]


def decompose_pooled(model: GatedResNet, pooled: torch.Tensor) -> pd.DataFrame:
    """Eq. 1 for (B, C) pooled features; columns bias, fake_score, real_score, logit."""
    w = model.head.weight.detach().reshape(-1).double()
    b = float(model.head.bias.detach().reshape(-1)[0])
    contrib = pooled.detach().double() * w
    fake = contrib.where(w > 0, 0.0).sum(1)  # a Python scalar: no tensor on another device
    real = -contrib.where(w < 0, 0.0).sum(1)
    return pd.DataFrame({
        "bias": b,
        "fake_score": fake.cpu().numpy(),
        "real_score": real.cpu().numpy(),
        "logit": (b + fake - real).cpu().numpy(),
        "n_pos": int((w > 0).sum()),
        "n_neg": int((w < 0).sum()),
    })


def decompose(
    detector: GatedResNet | ResNetDetector,
    records: Iterable[ImageRecord],
    *,
    tile: bool = True,
    device: str = "cpu",
    atol: float = 1e-3,
    errors: dict[str, str] | None = None,
    batch_size: int = 16,
) -> pd.DataFrame:
    """One row per image (in the order of `records`): path, set, label, bias, fake_score,
    real_score, logit.

    Images go through the detector's own test path (its preprocessing, native resolution,
    tiling when the detector tiles; a bare model gets `tile`), in same-shape batches of
    `batch_size` (`bench.batching`); each row's logit is checked against the detector's output
    (`atol` absolute, plus 1e-4 relative) so the table cannot drift from what is scored.
    An image that cannot be read is skipped and its reason put in `errors` (path -> reason)
    when given; without `errors` it raises."""
    if isinstance(detector, GatedResNet):
        detector = ResNetDetector(detector, DetectorInfo("model", "model", "CNN"), tile=tile)
    if not isinstance(detector, ResNetDetector):
        name = getattr(getattr(detector, "info", None), "name", type(detector).__name__)
        raise BenchError(f"the decomposition needs a ResNet detector with a linear head on pooled features "
                         f"(corvi, rajan, their + variants, dear-*), not {name!r}")
    detector.to(device)
    model = detector.model.eval()
    prep = detector.preprocess()

    def loaded() -> Iterable[tuple[int, ImageRecord, torch.Tensor]]:
        for i, rec in enumerate(records):
            try:
                yield i, rec, prep(load_rgb(rec.path))
            except BenchError as exc:
                if errors is None:
                    raise
                errors[rec.path] = str(exc)

    rows: list[tuple[int, pd.DataFrame]] = []
    with torch.inference_mode():
        for batch in batches_of(loaded(), batch_size, tensor=lambda item: item[2]):
            x = detector.prepare(torch.stack([t for _, _, t in batch]).to(device))
            table = decompose_pooled(model, detector.pooled(x))
            direct = detector.forward(x).double().cpu().numpy()
            for j, (i, rec, _) in enumerate(batch):
                got = float(table["logit"].iloc[j])
                if abs(got - direct[j]) > atol + 1e-4 * abs(direct[j]):
                    raise AssertionError(f"{rec.path}: decomposition {got:.6f} != detector logit {direct[j]:.6f}")
                row = table.iloc[[j]].reset_index(drop=True)
                row.insert(0, "label", rec.label)
                row.insert(0, "set", rec.set)
                row.insert(0, "path", rec.path)
                rows.append((i, row))
    rows.sort(key=lambda r: r[0])
    return pd.concat([r for _, r in rows], ignore_index=True)[COLUMNS] if rows else pd.DataFrame(columns=COLUMNS)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "set"


def plot_decomposition(df: pd.DataFrame, out_dir: str | Path, *, title: str = "", sets: Sequence[str] | None = None) -> list[Path]:
    """One PNG per image set: real_score vs fake_score scatter coloured by label, with the
    decision line logit = 0, and histograms of real_score per label. Returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name in sets if sets is not None else sorted(df["set"].unique()):
        part = df[df["set"] == name]
        if part.empty:
            continue
        fig, (ax, hx) = plt.subplots(1, 2, figsize=(10, 4.2))
        for label, colour, text in ((0, "tab:blue", "real"), (1, "tab:red", "fake")):
            sel = part[part["label"] == label]
            if len(sel):
                ax.scatter(sel["real_score"], sel["fake_score"], s=10, alpha=0.6, c=colour, label=f"{text} ({len(sel)})")
                hx.hist(sel["real_score"], bins=30, alpha=0.5, color=colour, label=text)
        bias = float(part["bias"].iloc[0])
        lo = float(min(part["real_score"].min(), part["fake_score"].min(), 0.0))
        hi = float(max(part["real_score"].max(), part["fake_score"].max() + abs(bias), 1e-6))
        xs = torch.linspace(lo, hi, 2).numpy()
        ax.plot(xs, xs - bias, "k--", lw=1, label="logit = 0")
        ax.set_xlabel("real score  (-sum of w_i f_i, w_i < 0)")
        ax.set_ylabel("fake score  (sum of w_i f_i, w_i > 0)")
        ax.legend(fontsize=8)
        hx.set_xlabel("real score")
        hx.set_ylabel("images")
        hx.legend(fontsize=8)
        fig.suptitle(f"{title} {name}".strip())
        fig.tight_layout()
        path = out_dir / f"decomposition_{_slug(name)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files
