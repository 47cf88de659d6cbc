"""The data feed of a run: each (image, condition) read, decoded and post-processed once, for
every detector that needs it, in DataLoader workers.

Work is cut into chunks of images in order of size (so equal shapes meet), and a worker turns a
chunk into, per detector, blocks of same-shape tensors stacked there: one array per block
crosses the process boundary, not one per image, and detectors whose preprocessing stops at
8-bit pixels send a quarter of the bytes (they normalise on the device, `Detector.prepare`).
Per-image failures come back named (a file that cannot be read fails for every detector that
wanted it; a preprocessing that refuses an image, for that detector alone); they never stop
the feed. Post-processing is seeded per image from its decoded pixels (`bench.images.pixel_digest`).
"""
from __future__ import annotations

import random
from typing import Any, Callable, NamedTuple, Sequence

from bench.api import BadImageError, Transform, derive_seed
from bench.store import params_json, sha256_bytes


class WorkItem(NamedTuple):
    """One image under one condition, and the detectors (indices) that need its score."""

    path: str
    sha: str
    cond: int
    dets: tuple[int, ...]


class Block(NamedTuple):
    """Same-shape tensors of one detector, stacked in a worker: rows of `tensor` are `items`."""

    det: int
    tensor: Any
    items: list[int]


class Chunk(NamedTuple):
    """What a worker returns for a chunk of work (a NamedTuple of lists and tensors, so the
    DataLoader pins its tensors)."""

    blocks: list[Block]
    params: dict[int, str]  # work item -> JSON of the post-processing values drawn
    failures: list[tuple[int, int, str]]  # (work item, detector or -1 for all of its detectors, reason)


def plan_chunks(work: Sequence[WorkItem], sizes: dict[str, tuple[int, int]], chunk_size: int) -> list[list[int]]:
    """Work indices in chunks of `chunk_size`, ordered by condition and then by the image's
    decoded size (unknown sizes last), so that images of one shape travel together."""
    order = sorted(range(len(work)), key=lambda i: (work[i].cond, sizes.get(work[i].sha, (1 << 30, 1 << 30)), i))
    return [order[i : i + chunk_size] for i in range(0, len(order), chunk_size)]


class FeedDataset:
    """Chunks of work -> `Chunk`s; runs in DataLoader workers (picklable: no model in it)."""

    def __init__(self, work: Sequence[WorkItem], chunks: list[list[int]], transforms: Sequence[Transform | None], seed: int,
                 preprocessors: Sequence[Callable[[Any], Any]]):
        self.work, self.chunks, self.transforms = list(work), chunks, list(transforms)
        self.seed, self.preprocessors = seed, list(preprocessors)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, c: int) -> Chunk:
        import torch

        groups: dict[tuple[int, tuple[int, ...]], tuple[list[Any], list[int]]] = {}
        params: dict[int, str] = {}
        failures: list[tuple[int, int, str]] = []
        for i in self.chunks[c]:
            item = self.work[i]
            try:
                image, drawn = self._image(item)
            except BadImageError as exc:
                failures.append((i, -1, exc.reason))
                continue
            except OSError as exc:
                failures.append((i, -1, f"cannot read the file ({exc.strerror or exc})"))
                continue
            except Exception as exc:  # a transform rejecting one image: record it, go on
                failures.append((i, -1, f"{type(exc).__name__}: {exc}"))
                continue
            params[i] = drawn
            for d in item.dets:
                try:
                    tensor = self.preprocessors[d](image)
                except Exception as exc:  # this detector's preprocessing refuses the image
                    failures.append((i, d, f"{type(exc).__name__}: {exc}"))
                    continue
                tensors, items = groups.setdefault((d, tuple(tensor.shape)), ([], []))
                tensors.append(tensor)
                items.append(i)
        blocks = [Block(d, torch.stack(tensors), items) for (d, _), (tensors, items) in groups.items()]
        return Chunk(blocks, params, failures)

    def _image(self, item: WorkItem) -> tuple[Any, str]:
        from bench.files import read_bytes  # lazy: keeps the core importable on its own
        from bench.images import decode_image

        data = read_bytes(item.path)
        if sha256_bytes(data) != item.sha:
            raise BadImageError(item.path, "the file changed during the run; run again")
        return show(decode_image(data, item.path), self.transforms[item.cond], self.seed)


def show(image: Any, transform: Transform | None, seed: int) -> tuple[Any, str]:
    """A decoded image as a condition shows it, and the drawn parameters as stored JSON: the
    chain seeded from the run's seed, the chain's name and the image's pixels; unchanged and
    "{}" without a chain. The feed and `bench.export` both use this, so saved copies are the
    pixels that were scored."""
    from bench.images import pixel_digest

    if transform is None:
        return image, "{}"
    image, drawn = transform(image, random.Random(derive_seed(seed, transform.name, pixel_digest(image))))
    return image, params_json(drawn)


def identity(x: Any) -> Any:
    return x
