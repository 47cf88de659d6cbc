"""The one batcher: tensors meet in a batch only when their shapes are equal.

Pixels are never resized or padded to make a batch, so a native-resolution detector sees every
image at its own size. `ShapeBatcher` is what the runner, `Detector.score`, training validation
and the analyses all use; nothing else groups tensors by shape.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")

PENDING_BYTES = 256 * 2**20  # tensors held back waiting for a same-shape batch


def _tensor_of(item: Any) -> Any:
    return item.tensor


class ShapeBatcher(Generic[T]):
    """Groups items by the shape of their tensor and releases batches of one shape.

    A batch leaves when it holds `batch_size` items, or fewer when a `pixel_budget` caps
    batches of large images (`size_for`). When many shapes wait at once (post-processed images
    rarely share a size), the fullest bucket leaves early, so that what waits stays within
    `max_items` items (default 4 x batch_size) and `max_bytes` bytes. `tensor(item)` reads an
    item's tensor (default: its `.tensor`)."""

    def __init__(self, batch_size: int, *, max_items: int | None = None, max_bytes: int | None = None,
                 tensor: Callable[[T], Any] = _tensor_of, pixel_budget: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size, self.max_items = batch_size, max_items or 4 * batch_size
        self.max_bytes = PENDING_BYTES if max_bytes is None else max_bytes
        self.pixel_budget = pixel_budget
        self.tensor = tensor
        self._buckets: dict[tuple[int, ...], list[T]] = {}
        self._items = self._bytes = 0

    def _nbytes(self, item: T) -> int:
        t = self.tensor(item)
        return t.nelement() * t.element_size()

    def _pop(self, key: tuple[int, ...]) -> list[T]:
        items = self._buckets.pop(key)
        self._items -= len(items)
        self._bytes -= sum(map(self._nbytes, items))
        return items

    def size_for(self, shape: tuple[int, ...]) -> int:
        """Images of `shape` per batch: `batch_size`, fewer when their pixels would exceed the
        `pixel_budget` (large native-resolution images: DEAR's official loader batches about
        16 x 1024^2 / (W x H) images; at least 1)."""
        if self.pixel_budget is None or len(shape) < 2:
            return self.batch_size
        return max(1, min(self.batch_size, self.pixel_budget // max(1, shape[-1] * shape[-2])))

    def add(self, item: T) -> list[list[T]]:
        """Queue `item`; returns the batches that are ready (often none)."""
        key = tuple(self.tensor(item).shape)
        self._buckets.setdefault(key, []).append(item)
        self._items += 1
        self._bytes += self._nbytes(item)
        ready = []
        if len(self._buckets[key]) >= self.size_for(key):
            ready.append(self._pop(key))
        while self._items > self.max_items or self._bytes > self.max_bytes:
            ready.append(self._pop(max(self._buckets, key=lambda k: len(self._buckets[k]))))
        return ready

    def drain(self) -> list[list[T]]:
        """Every batch still waiting, in the order its shape first arrived."""
        return [self._pop(key) for key in list(self._buckets)]


def batches_of(items: Iterable[T], batch_size: int, **options: Any) -> Iterator[list[T]]:
    """Same-shape batches of `items` (a `ShapeBatcher` over a stream)."""
    batcher: ShapeBatcher[T] = ShapeBatcher(batch_size, **options)
    for item in items:
        yield from batcher.add(item)
    yield from batcher.drain()


def score_images(detector: Any, images: Iterable[Any], batch_size: int = 16) -> np.ndarray:
    """Logits of a detector for PIL images, in input order: its own preprocessing, then
    same-shape batches through its forward on its device (`Detector.score`)."""
    import torch

    prep = detector.preprocess()
    tensors = [(i, prep(im)) for i, im in enumerate(images)]
    out = np.empty(len(tensors), dtype=np.float64)
    with torch.inference_mode():
        for batch in batches_of(tensors, batch_size, tensor=lambda it: it[1]):
            x = detector.prepare(torch.stack([t for _, t in batch]).to(detector.device))
            out[[i for i, _ in batch]] = detector.forward(x).float().cpu().numpy().reshape(-1)
    return out
