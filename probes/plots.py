"""The probe figures, drawn like `bench.plots` (a matplotlib `Figure` on the Agg renderer, no
pyplot): the transfer heat map (the paper's Table 4 as a picture), the score against the number
of features removed with the isotropy of the kept space (its Fig. 5). Each figure's data is
written beside it as CSV by the step that draws it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DPI = 150


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def heatmap(table: pd.DataFrame, title: str, path: Path, label: str = "accuracy (%)") -> Path:
    """A train x test table (with its avg row and column) as a heat map, values printed in the cells."""
    values = table.to_numpy(dtype=float)
    fig = _figure(1.2 + 0.75 * values.shape[1], 1.0 + 0.6 * values.shape[0])
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=min(50.0, np.nanmin(values)), vmax=100.0)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(i) for i in table.index])
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    ax.axhline(values.shape[0] - 1.5, color="white", lw=2)
    ax.axvline(values.shape[1] - 1.5, color="white", lw=2)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if v < 80 else "black")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path


def removal_curve(curves: dict[str, pd.DataFrame], title: str, path: Path) -> Path:
    """Out-of-domain accuracy against features removed, one line per direction, the cut marked;
    isotropy of the kept space on a second axis (columns removed, accuracy, isotropy)."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    twin = ax.twinx()
    for k, (name, df) in enumerate(curves.items()):
        color = f"C{k}"
        ax.plot(df["removed"], df["accuracy"], color=color, label=f"{name} accuracy")
        best = df["accuracy"].idxmax()
        ax.axvline(df.loc[best, "removed"], color=color, ls=":", lw=1)
        iso = df.dropna(subset=["isotropy"])
        twin.plot(iso["removed"], iso["isotropy"], color=color, ls="--", lw=1, label=f"{name} isotropy")
    ax.set_xlabel("features removed")
    ax.set_ylabel("out-of-domain accuracy (%)")
    twin.set_ylabel("isotropy of the kept space")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path
