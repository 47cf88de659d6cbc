"""WaRPAD's cost with a random-weight DINOv2 ViT-L/14: the official architecture, so the same
compute as the real weights, which are not on a fresh machine (`bench speed --detectors
warpad.official` measures the real thing where they are). A benchmark: the scores of a random
backbone mean nothing.

    python benchmarks/warpad_speed.py [--device cuda] [--batch-size 4] [--batches 3] [--precision fp32]

Prints one `bench speed` row: preprocessing images/s (one CPU thread; the resize to 896x896),
forward images/s (16 patches x 2 ViT-L/14 passes per image), peak memory.
"""
from __future__ import annotations

import argparse

from tabulate import tabulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, default=1024, help="side of the square noise images (resized to 896)")
    args = parser.parse_args()

    from bench.devices import resolve_device
    from bench.registry import detector_spec
    from bench.speed import measure

    det = detector_spec("warpad").build_tiny(arch="vitl14")
    row = measure(det, size=(args.size, args.size), batch_size=args.batch_size, batches=args.batches, warmup=args.warmup,
                  device=resolve_device(args.device), precision=args.precision)
    print(tabulate([row.as_row()], headers="keys", floatfmt=".2f"))


if __name__ == "__main__":
    main()
