"""What makes a feature gate valid, in numpy alone: DEAR's pruning command checks gates without
importing torch or a model (`bench dear prune` works on a RAD vector only)."""
from __future__ import annotations

from typing import Any

import numpy as np


def gate_problem(gate: Any) -> str | None:
    """Why `gate` (a numpy array or CPU tensor) is not a keep/drop gate, or None: every value must
    be exactly 0 or 1. NaN compares unequal to both, so it is refused too."""
    g = np.asarray(gate, dtype=np.float64).reshape(-1)
    bad = ~((g == 0) | (g == 1))
    if bad.any():
        return f"gate values must be exactly 0 or 1; {int(bad.sum())} of {g.size} are not (e.g. {g[bad][0]})"
    return None
