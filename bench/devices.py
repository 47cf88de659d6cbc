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
