"""How fast detectors score, and how much memory they take: a benchmark, never a test.

A run spends its time per image in two places, measured apart because they scale apart:

- the detector's own *preprocessing* (PIL image -> tensor), timed here on one CPU
  thread (the median of 3 passes); the runner spreads it over `--workers` DataLoader processes;
- the *forward* on the device: same-shape batches, under the run's precision
  (`bench.devices`) and `torch.inference_mode`, after warm-up batches, synchronised on CUDA
  so that queued kernels are counted.

Inputs are seeded noise images of one size: speed does not depend on the content, and no data
set is needed. Memory is the CUDA allocator's peak during the forwards (reset per detector)
and the process's peak RSS so far (cumulative: benchmark one detector per process to isolate it).
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from bench.api import BenchError, Detector
from bench.devices import compute_precision, effective_precision, offload, resolve_device, single_thread


@dataclass(frozen=True)
class SpeedResult:
    detector: str  # weights label, "corvi.mini"
    device: str
    hardware: str  # "NVIDIA H100 80GB HBM3", or "cpu, 2 threads": timings compare only on the same
    precision: str  # effective: CPU runs fp32 whatever was asked
    image_size: str  # "HxW" of the input images
    tensor_shape: str  # what the forward sees per image, "CxHxW"
    batch_size: int
    batches: int  # timed batches, after warm-up
    preprocess_img_s: float  # images per second, one CPU core
    forward_img_s: float  # images per second on the device (median batch time)
    forward_ms_per_batch: float  # median
    peak_cuda_mib: float | None  # None off CUDA
    peak_rss_mib: float  # process-wide peak so far

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def noise_images(size: tuple[int, int], count: int, seed: int = 0) -> list[Any]:
    """`count` seeded RGB noise images of `size` (H, W)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(count)]


PREPROCESS_PASSES = 3


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def measure(
    det: Detector, *, size: tuple[int, int] = (256, 256), batch_size: int = 32, batches: int = 10, warmup: int = 2,
    device: str = "cpu", precision: str = "fp32", seed: int = 0,
) -> SpeedResult:
    """Time `det`'s preprocessing (one thread) and forward on `batch_size` noise images of `size`."""
    import torch

    if batch_size < 1 or batches < 1 or warmup < 0:
        raise BenchError(f"need batch size >= 1, batches >= 1 and warm-up >= 0; got {batch_size}, {batches}, {warmup}")
    on_cuda = str(device).startswith("cuda")
    images = noise_images(size, batch_size, seed)
    prep = det.preprocess()
    # One thread, as in the runner's DataLoader workers; the median of 3 passes, since a single
    # pass on a busy machine can be an order of magnitude off.
    with single_thread():
        if warmup:  # first-call costs (lazy imports, allocator growth, caches) are not per-image costs
            for im in images:
                prep(im)
        passes = []
        for _ in range(PREPROCESS_PASSES):
            t0 = time.perf_counter()
            tensors = [prep(im) for im in images]
            passes.append(time.perf_counter() - t0)
    preprocess_s = statistics.median(passes)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise BenchError(f"{det.weights or det.info.name}: preprocessing gave tensors of several shapes {sorted(shapes)} for one input size")
    det.to(device)
    batch = det.prepare(torch.stack(tensors).to(device))
    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.inference_mode(), compute_precision(precision, device) as effective:
        for i in range(warmup + batches):
            start = time.perf_counter()
            out = det.forward(batch)
            if on_cuda:
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    if torch.as_tensor(out).numel() != batch_size:
        raise BenchError(f"{det.weights or det.info.name}: forward returned {torch.as_tensor(out).numel()} logits for {batch_size} images")
    median = statistics.median(times)
    return SpeedResult(
        detector=det.weights or det.info.name, device=str(device),
        hardware=torch.cuda.get_device_name(device) if on_cuda else f"{device}, {torch.get_num_threads()} threads",
        precision=effective,
        image_size=f"{size[0]}x{size[1]}", tensor_shape="x".join(map(str, shapes.pop())),
        batch_size=batch_size, batches=batches,
        preprocess_img_s=batch_size / preprocess_s, forward_img_s=batch_size / median, forward_ms_per_batch=1000 * median,
        peak_cuda_mib=torch.cuda.max_memory_allocated(device) / 2**20 if on_cuda else None,
        peak_rss_mib=_peak_rss_mib(),
    )  # fmt: skip


def measure_many(
    names: Sequence[str], *, device: str | None = None, precision: str = "fp32", **kwargs: Any,
) -> tuple[list[SpeedResult], dict[str, str]]:
    """Build and measure each named detector; a detector that fails is reported, the rest go on."""
    from bench import registry
    from bench.registry import check_detector_name, with_default_tag

    device = resolve_device(device)
    effective_precision(precision, device)  # an unknown precision fails before any detector is built
    for name in names:
        check_detector_name(name)
    results, errors = [], {}
    for name in map(with_default_tag, names):
        det = None
        try:
            det = registry.create_detector(name)
            results.append(measure(det, device=device, precision=precision, **kwargs))
        except Exception as exc:  # a missing weight file or an OOM must not hide the other detectors
            errors[name] = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
        finally:
            offload(det, device)  # give its GPU memory back before the next
    return results, errors
