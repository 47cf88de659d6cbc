"""How far end-to-end scoring is from the model's own limit, on whatever device is here.

    python benchmarks/speed_ratios.py [--detectors npr.mini,corvi.mini] [--size 256] [--images 96]
                                      [--device cpu|cuda] [--precision fp32|bf16] [--repeats 3]
    python benchmarks/speed_ratios.py --feed      # main-process cost per image of the data feed
    python benchmarks/speed_ratios.py --scaling   # harness time for 2,000 and 20,000 small images
    python benchmarks/speed_ratios.py --allocator # forwards with glibc's defaults and with AIGI_BENCH_MALLOC=keep

Side by side, in one process, per detector:
- model-only: `forward` on a batch already on the device (prepared as the detector wants it), the limit;
- end-to-end: `bench run` from image files on disk (decode, preprocess, batch, score, store), fresh cache;
- official-style loop: PIL decode per image, float preprocessing, batch 1, fp32, as the papers' test scripts;
and the two ratios (end-to-end / model-only, end-to-end / official loop). With several
detectors, the end-to-end run scores them all in one pass (one decode per image). Images/s are
medians over `--repeats`, with min and max. A benchmark, never a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def noise_folder(root: Path, n: int, size: tuple[int, int], seed: int = 0) -> Path:
    """A folder suite of `n` seeded noise PNGs (half real, half one fake set)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / ("real" if i % 2 == 0 else "fake/noise")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)).save(folder / f"{i:06d}.png", compress_level=1)
    return root


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def model_only(det: Any, size: tuple[int, int], batch: int, device: str, precision: str, batches: int = 5) -> float:
    import torch

    from bench.devices import compute_precision

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8))
    x = det.prepare(torch.stack([det.preprocess()(image)] * batch).to(device))
    times = []
    with torch.inference_mode(), compute_precision(precision, device):
        for i in range(batches + 1):
            _sync(device)
            t0 = time.perf_counter()
            det.forward(x)
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def official_loop(det: Any, files: list[Path], device: str) -> float:
    """Per image: PIL open + convert, the float preprocessing, batch 1, fp32."""
    import torch

    prep = det.preprocess()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for f in files:
            image = Image.open(f).convert("RGB")
            x = det.prepare(prep(image)[None].to(device))
            det.forward(x)
    _sync(device)
    return len(files) / (time.perf_counter() - t0)


def end_to_end(names: list[str], root: Path, out: Path, device: str, precision: str, batch: int, workers: int | None) -> float:
    from bench.runner import RunConfig, run

    t0 = time.perf_counter()
    res = run(RunConfig(suite="folder", data_root=str(root), detectors=names, out=out, device=device, precision=precision,
                        batch_size=batch, workers=workers), progress=False)
    wall = time.perf_counter() - t0
    return len(res.scores) / wall


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def ratios(args: argparse.Namespace) -> None:
    """One table row per detector and worker count; the model-only limit and the official loop
    are measured once per detector (they use no workers). On CUDA, the peak memory the
    detector's forwards allocated."""
    import torch

    from bench.devices import resolve_device
    from bench.registry import create_detector

    device = resolve_device(args.device)
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    workers = [None if w in ("", "auto") else int(w) for w in str(args.workers or "auto").split(",")]
    cuda = device.startswith("cuda")
    with tempfile.TemporaryDirectory() as tmp:
        root = noise_folder(Path(tmp) / "data", args.images, (args.size, args.size))
        files = sorted(root.rglob("*.png"))
        print(f"device {device}, {args.images} images of {args.size}x{args.size}, batch {args.batch_size}, precision {args.precision}\n")
        print("| detector | workers | model-only img/s | end-to-end img/s | official loop img/s | e2e / model | e2e / official |"
              + (" peak GPU MiB |" if cuda else ""))
        print("|---|---|---|---|---|---|---|" + ("---|" if cuda else ""))
        for name in names:
            det = create_detector(name).to(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            limit = [model_only(det, (args.size, args.size), args.batch_size, device, args.precision) for _ in range(args.repeats)]
            peak = f" {torch.cuda.max_memory_allocated(device) / 2**20:.0f} |" if cuda else ""
            loop = [] if args.no_official else [official_loop(det, files, device) for _ in range(args.repeats)]
            for w in workers:
                e2e = [end_to_end([name], root, Path(tmp) / f"out-{name}-{w}-{r}", device, args.precision, args.batch_size, w)
                       for r in range(args.repeats)]
                m, e = statistics.median(limit), statistics.median(e2e)
                loop_text, loop_ratio = (_stats(loop), f"{e / statistics.median(loop):.2f}") if loop else ("-", "-")
                print(f"| {name} | {w if w is not None else 'default'} | {_stats(limit)} | {_stats(e2e)} | "
                      f"{loop_text} | {e / m:.2f} | {loop_ratio} |{peak}")
        if len(names) > 1:
            for w in workers:
                e2e = [end_to_end(names, root, Path(tmp) / f"out-all-{w}-{r}", device, args.precision, args.batch_size, w)
                       for r in range(args.repeats)]
                print(f"| all {len(names)} in one pass | {w if w is not None else 'default'} | | {_stats(e2e)} (scores/s) | | | |"
                      + (" |" if cuda else ""))


def feed_cost(args: argparse.Namespace) -> None:
    """Main-process CPU per image while receiving the feed: one float32 item at a time (the
    runner before this change) against chunks of uint8 blocks assembled in the workers."""
    import torch
    from torch.utils.data import DataLoader

    from bench.feed import FeedDataset, WorkItem, identity, plan_chunks
    from bench.store import sha256_bytes
    from detectors.preprocess import ImageNetNormalize, Pixels

    with tempfile.TemporaryDirectory() as tmp:
        for size in (256, 512):
            root = noise_folder(Path(tmp) / f"d{size}", args.images, (size, size))
            files = sorted(root.rglob("*.png"))
            work = [WorkItem(str(f), sha256_bytes(f.read_bytes()), 0, (0,)) for f in files]

            class PerItem(torch.utils.data.Dataset):
                def __len__(self) -> int:
                    return len(files)

                def __getitem__(self, i: int) -> torch.Tensor:
                    return ImageNetNormalize()(Image.open(files[i]).convert("RGB"))

            for label, loader in (
                ("float32, one item at a time", DataLoader(PerItem(), batch_size=None, num_workers=2, collate_fn=identity)),
                ("uint8 blocks, chunks of 32", DataLoader(FeedDataset(work, plan_chunks(work, {}, 32), [None], 0, [Pixels()]),
                                                          batch_size=None, num_workers=2, collate_fn=identity)),
            ):
                runs = []
                for _ in range(args.repeats):
                    t0 = time.process_time()
                    for _ in loader:
                        pass
                    runs.append(1000 * (time.process_time() - t0) / len(files))
                print(f"{size} px, {label}: main-process CPU {_stats(runs)} ms/image")


def scaling(args: argparse.Namespace) -> None:
    """Harness time (hashing, store lookups, assembly, tables) for many small images, with a
    detector that costs nothing, so what grows is the harness."""
    import torch

    from bench.api import Detector, DetectorInfo
    from bench.metrics import evaluate
    from bench.runner import RunConfig, run

    class Mean(Detector):
        info = DetectorInfo("mean", "Mean", "CNN")
        weights, fingerprint = "mean.bench", "mean-bench-1"

        def preprocess(self) -> Any:
            from detectors.preprocess import Pixels

            return Pixels()

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return batch.float().mean(dim=(1, 2, 3)) / 255 - 0.5

    with tempfile.TemporaryDirectory() as tmp:
        for n in (2000, 20000):
            root = noise_folder(Path(tmp) / f"d{n}", n, (16, 16))
            from suites.folder import FolderSource

            suite = FolderSource().load(str(root))
            out = Path(tmp) / f"o{n}"
            t0 = time.perf_counter()
            first = run(RunConfig(suite="folder", out=out, batch_size=256), detectors=[Mean()], suite=suite, progress=False)
            t1 = time.perf_counter()
            again = run(RunConfig(suite="folder", out=out, batch_size=256), detectors=[Mean()], suite=suite, progress=False)
            t2 = time.perf_counter()
            evaluate(again.scores)
            t3 = time.perf_counter()
            print(f"{n} images: first run {t1 - t0:.1f} s ({1e3 * (t1 - t0) / n:.2f} ms/image), rerun from the cache "
                  f"{t2 - t1:.1f} s ({1e3 * (t2 - t1) / n:.2f} ms/image), metrics {t3 - t2:.2f} s; {len(first.scores)} scores")


def allocator(args: argparse.Namespace) -> None:
    """The same `bench speed` forwards in two fresh processes: glibc's defaults, then tuned."""
    import os

    for label, extra in (("glibc defaults", {"AIGI_BENCH_MALLOC": ""}), ("AIGI_BENCH_MALLOC=keep (bench.devices.tune_allocator)",
                                                                        {"AIGI_BENCH_MALLOC": "keep"})):
        code = ("import resource, statistics, time, torch\nfrom bench.devices import tune_allocator\n"
                "from bench.registry import create_detector\nfrom bench.speed import measure\ntune_allocator()\n"
                f"names = {args.detectors.split(',')!r}\n"
                "for n in names:\n    r = measure(create_detector(n), size=(512, 512), batch_size=8, batches=5)\n"
                "    print(f'  {n}: forward {r.forward_img_s:.1f} img/s, peak RSS {r.peak_rss_mib:.0f} MiB')\n")
        print(label)
        subprocess.run([sys.executable, "-c", code], env={**os.environ, **extra}, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", default="npr.mini,corvi.mini")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", help="worker counts of the end-to-end runs, comma-separated ('auto': the "
                        "runner's default), e.g. auto,16 (default: auto)")
    parser.add_argument("--no-official", action="store_true", help="skip the official-style loop (it runs fp32 at "
                        "batch 1 whatever --precision says, so one precision's measurement serves both)")
    parser.add_argument("--device")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--feed", action="store_true", help="main-process cost per image of the data feed")
    parser.add_argument("--scaling", action="store_true", help="harness time for 2,000 and 20,000 small images")
    parser.add_argument("--allocator", action="store_true", help="forwards with and without the malloc tuning")
    args = parser.parse_args()
    logging.getLogger("bench").setLevel(logging.ERROR)  # the toy-weights warning of every run, not a measurement
    if args.feed:
        feed_cost(args)
    elif args.scaling:
        scaling(args)
    elif args.allocator:
        allocator(args)
    else:
        ratios(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
