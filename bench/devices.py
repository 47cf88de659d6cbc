"""Where a forward pass runs and how it computes (fp32, tf32 or bf16), and what that means for
cached scores.

A device is checked before any work: "gpu", or "cuda" on a machine without a usable GPU, is a
one-line error naming what is there, not a traceback per detector after the data is loaded.

Why the precision is explicit: on Ampere and newer GPUs PyTorch runs fp32 convolutions on TF32 tensor
cores by default (`torch.backends.cudnn.conv.fp32_precision == "tf32"`, formerly
`torch.backends.cudnn.allow_tf32 = True`), which keeps 10 mantissa bits of each input, so GPU
logits drift from CPU ones and "the same table on another machine" silently stops holding
(`bench compare` measures by how much). Here fp32 means IEEE fp32 unless the user asks
for `tf32` (fast, PyTorch's GPU default) or `bf16` (autocast, fastest).

Scores computed at another precision are other numbers, so they are cached under their own key:
the weights digest plus "+tf32" or "+bf16". fp32 keeps the bare digest. On CPU every precision
runs as fp32: TF32 does not exist there, and bf16 autocast on CPUs without bf16 units is
slower than fp32 (corvi.mini on this project's 2-core machine, no avx512_bf16: 1.70 s against
0.24 s for a batch of 8 at 192x192), so it would only cost accuracy.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from bench.api import BenchError

PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")


def resolve_device(device: str | None = None) -> str:
    """`device` checked against this machine ("cuda" when None and a GPU is usable, else "cpu")."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BenchError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise BenchError(f"device {device!r}: no usable CUDA GPU here (torch {torch.__version__}, {build}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise BenchError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"device {device!r}: MPS is not available here; use --device cpu")
    return str(parsed)


def effective_precision(precision: str, device: str) -> str:
    """The precision a forward on `device` really runs at: `precision` on CUDA, fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise BenchError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision if str(device).startswith("cuda") else "fp32"


def cache_suffix(precision: str) -> str:
    """What an effective precision adds to a detector's cache key ("" for fp32)."""
    return "" if precision == "fp32" else f"+{precision}"


@contextlib.contextmanager
def tf32_enabled(enabled: bool) -> Iterator[None]:
    """Allow or forbid TF32 in cuDNN convolutions and CUDA matmuls for the block, then restore.

    Uses the `fp32_precision` settings of PyTorch >= 2.9 where they exist ("tf32" / "ieee"),
    else the older `allow_tf32` flags; PyTorch refuses a mix of the two, so only one is touched.
    The flags are process-wide and only read by CUDA kernels, so this is safe without a GPU."""
    import torch

    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        saved = (conv.fp32_precision, matmul.fp32_precision)
        mode = "tf32" if enabled else "ieee"
        conv.fp32_precision, matmul.fp32_precision = mode, mode
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
        return
    saved_flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved_flags


@contextlib.contextmanager
def compute_precision(precision: str, device: str) -> Iterator[str]:
    """Run the block's forwards at `precision` on `device`; yields the effective precision.

    fp32: TF32 off. tf32: TF32 on. bf16: autocast to bfloat16 (TF32 off for what stays fp32).
    On CPU nothing changes and the block runs in fp32."""
    import torch

    effective = effective_precision(precision, device)
    if not str(device).startswith("cuda"):
        yield effective
        return
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if effective == "bf16" else contextlib.nullcontext()
    with tf32_enabled(effective == "tf32"), autocast:
        yield effective


def offload(detector: object | None, device: str) -> None:
    """Move a detector that is done back to the CPU and return its GPU memory, so a run over many
    detectors holds one of them on the GPU at a time (None: one that failed to build, whose
    partial allocations are returned all the same). Does nothing off CUDA."""
    if not str(device).startswith("cuda"):
        return
    import torch

    if detector is not None:
        try:
            detector.to("cpu")  # type: ignore[attr-defined]
        except Exception:  # a plugin that cannot move: its memory goes when the run ends
            pass
    torch.cuda.empty_cache()


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread, then restore the setting: what a DataLoader worker does, and
    what makes CPU results bit-reproducible across machines with different core counts."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a SLURM or container limit)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """DataLoader workers when none are asked for: one per available CPU, at most 8 (decoding
    and post-processing scale with cores; past 8 the main process, not the workers, limits)."""
    return max(1, min(MAX_DEFAULT_WORKERS, available_cpus()))


CUDA_PIXEL_BUDGET = 16 * 1024 * 1024  # DEAR's official loader: about 16 x 1024^2 / (W x H) images a batch
CPU_PIXEL_BUDGET = 4 * 1024 * 1024  # keeps a 1024 x 1024 batch of the full ResNet-50 nodown within a few GB of RAM


def pixel_budget(device: str) -> int:
    """Default pixels per batch: native-resolution images larger than budget / batch size go
    in smaller batches (`bench.batching.ShapeBatcher.size_for`)."""
    return CUDA_PIXEL_BUDGET if str(device).startswith("cuda") else CPU_PIXEL_BUDGET


_TUNED = False
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
KEEP_BYTES = 1 << 30  # freed heap kept for reuse, at most: about one large forward's activations


MALLOC_VARIABLE = "AIGI_BENCH_MALLOC"  # "keep": trade memory for speed on CPU (see tune_allocator)


def tune_allocator() -> bool:
    """When `AIGI_BENCH_MALLOC=keep`, let glibc keep large freed blocks for reuse, once per
    process (True when applied). Off by default, because it raises the peak.

    By default glibc serves every allocation above its mmap threshold (at most 32 MiB) with a
    fresh mmap and returns it to the kernel on free, so each CPU forward of a CNN re-faults every
    page of its large activations (on 2 cores the main job spent 76 of its 180 CPU-seconds in
    the kernel). Serving them from the heap (M_MMAP_MAX = 0, what `MALLOC_MMAP_MAX_=0` does)
    and trimming the heap only above 1 GiB of free space (M_TRIM_THRESHOLD) keeps those pages
    mapped between forwards: measured on 2 cores, Corvi and NPR on the post-processed mini
    suite ran 1.3-1.45x faster, but peaked 0.7-2 GB higher, since freed blocks of one image
    size fit the next image's activations only in part (README, *Runs*: Memory). glibc's own
    dynamic mmap threshold, a fixed 32 MiB threshold and smaller trim thresholds were no
    faster than the default. Elsewhere than glibc: nothing."""
    global _TUNED
    if _TUNED:
        return True
    import os

    if os.environ.get(MALLOC_VARIABLE, "").strip().lower() != "keep":
        return False
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    _TUNED = ok
    return ok
