"""How a run's time grows with the number of detectors, when the detectors cost nothing.

    python benchmarks/detector_growth.py [--images 200] [--size 256] [--counts 1,2,4,8] [--repeats 3]

k detectors that only average their pixels (each with its own fingerprint, so nothing is
shared through the cache) score a folder of seeded noise PNGs, original and post-processed
(the `rajan` chain), with 2 workers, from a fresh store each time. What remains is what the
harness does per (image, condition): read, decode, post-process, preprocess, batch, store.
Before the one-pass feed this grew with k (each detector had its own DataLoader); with it, the
decode and post-processing happen once for all k. The script uses only the API that both
versions share, so the same file measures an older checkout:

    PYTHONPATH=/path/to/old/checkout python benchmarks/detector_growth.py

A benchmark, never a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_ratios import noise_folder  # noqa: E402


def cheap_detectors(k: int) -> list[Any]:
    import torch
    from torchvision.transforms.functional import pil_to_tensor

    from bench.api import Detector, DetectorInfo

    class Mean(Detector):
        def __init__(self, i: int):
            self.info = DetectorInfo(f"mean{i}", f"Mean{i}", "CNN")
            self.weights, self.fingerprint = f"mean{i}.bench", f"mean-bench-{i}"

        def preprocess(self) -> Any:
            return pil_to_tensor

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return batch.float().mean(dim=(1, 2, 3)) / 255 - 0.5

    return [Mean(i) for i in range(k)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from bench.runner import RunConfig, run
    from suites.folder import FolderSource

    with tempfile.TemporaryDirectory() as tmp:
        root = noise_folder(Path(tmp) / "data", args.images, (args.size, args.size))
        suite = FolderSource().load(str(root))
        print(f"{args.images} images of {args.size}x{args.size}, original + post-processed, 2 workers; seconds, median (min-max)")
        for k in (int(c) for c in args.counts.split(",")):
            walls = []
            for r in range(args.repeats):
                out = Path(tmp) / f"out-{k}-{r}"
                t0 = time.perf_counter()
                run(RunConfig(suite="folder", out=out, post_process=True, workers=2), detectors=cheap_detectors(k), suite=suite,
                    progress=False)
                walls.append(time.perf_counter() - t0)
            print(f"{k} detector(s): {statistics.median(walls):.1f} s ({min(walls):.1f}-{max(walls):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
