"""Training data: image folders listed, loaded and batched for the training loops.

Folders come as a `bench.api.TrainingData` (train/val reals and fakes, paired or not); the
AIGI-mini world lays them out (`suites.mini.layout`), and any folder of the same shape works.
Rajan's pairs (AniSundar18/AlignedForensics utils/cap_dset.py) match a real and its
reconstruction by file name and sit in the same batch, reals first (`collate_pairs`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from bench.api import BenchError, TrainingData
from bench.images import is_image_file, load_image


def load_rgb(path: str | Path) -> Image.Image:
    """An image as the runner reads it (`bench.images.load_image`: EXIF orientation applied,
    16-bit data rescaled, alpha dropped), so training, dissection and the score decomposition
    see the pixels that the benchmark scores. Raises BadImageError naming the file."""
    return load_image(str(path))


def list_folder_images(folder: str | Path) -> list[Path]:
    """The images directly in `folder`, sorted. Flat on purpose: Rajan's pairs match a real and
    its reconstruction by file name (`suites.listing.list_images` is the recursive listing)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchError(f"{folder}: no such image folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def labeled_items(real_dir: str | Path, fake_dir: str | Path) -> list[tuple[Path, int]]:
    """(path, label) for every image of a real folder (0) and a fake folder (1)."""
    items = [(p, 0) for p in list_folder_images(real_dir)] + [(p, 1) for p in list_folder_images(fake_dir)]
    if not items:
        raise BenchError(f"{real_dir}, {fake_dir}: no images")
    return items


def paired_items(real_dir: str | Path, fake_dir: str | Path) -> list[tuple[Path, Path]]:
    """(real, reconstruction) pairs matched by file stem, as AlignedForensics' CapDataset does."""
    fakes = {p.stem: p for p in list_folder_images(fake_dir)}
    reals = list_folder_images(real_dir)
    missing = [p.name for p in reals if p.stem not in fakes]
    if missing:
        raise BenchError(f"{fake_dir}: no reconstruction for {len(missing)} real image(s), e.g. {missing[0]}")
    if not reals:
        raise BenchError(f"{real_dir}: no images")
    return [(p, fakes[p.stem]) for p in reals]


class LabeledImages(Dataset):
    """(tensor, label) from (path, label) items and a transform PIL -> tensor."""

    def __init__(self, items: Sequence[tuple[Path, int]], transform: Callable[[Any], torch.Tensor]):
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        return self.transform(load_rgb(path)), label


class PairedImages(Dataset):
    """(real, fake) tensors made by ONE call of a v2 transform, so both share every parameter."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], transform: Callable[..., Any]):
        self.pairs, self.transform = list(pairs), transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        real, fake = self.pairs[i]
        a, b = load_rgb(real), load_rgb(fake)
        if a.size != b.size:
            raise BenchError(f"{fake}: size {b.size} differs from its real {real} {a.size}")
        return self.transform(a, b)


def collate_pairs(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """B pairs -> one batch [reals; fakes] with labels [0]*B + [1]*B (official order)."""
    reals = torch.stack([r for r, _ in batch])
    fakes = torch.stack([f for _, f in batch])
    labels = torch.cat([torch.zeros(len(batch)), torch.ones(len(batch))])
    return torch.cat([reals, fakes]), labels


def train_loader(
    items: Sequence[tuple[Path, Any]],
    transform: Callable[..., Any],
    batch_size: int,
    *,
    paired: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """Shuffled training batches through `transform`, in the order drawn from `seed`.

    `items` are (path, label) pairs, or with `paired=True` (real, reconstruction) pairs batched
    as [reals; fakes] (Rajan's synced batches, `collate_pairs`). The last partial batch is
    dropped (as the official loaders do) unless the set is no bigger than one batch, which a
    small world can be: it would otherwise yield no batch at all."""
    if paired:
        ds: Dataset = PairedImages(items, transform)
    else:
        ds = LabeledImages(items, transform)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen, collate_fn=collate_pairs if paired else None,
                      num_workers=num_workers, drop_last=len(ds) > batch_size)


class ValidationSet:
    """Full images at native resolution through a test preprocessing, as (images, labels)
    batches: loaded one by one (in `num_workers` processes) and grouped by the one batcher
    (`bench.batching`), so only images of equal size share a batch. Deterministic order.
    `prepare` finishes each batch as a detector's `prepare` does (uint8 pixels -> input)."""

    def __init__(self, items: Sequence[tuple[Path, int]], transform: Callable[[Any], torch.Tensor], batch_size: int = 16,
                 num_workers: int = 0, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.images = LabeledImages(items, transform)
        self.batch_size, self.num_workers, self.prepare = batch_size, num_workers, prepare

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from bench.batching import batches_of

        loader = DataLoader(self.images, batch_size=None, num_workers=self.num_workers)
        for batch in batches_of(loader, self.batch_size, tensor=lambda item: item[0]):
            x = torch.stack([x for x, _ in batch])
            yield (self.prepare(x) if self.prepare is not None else x), torch.tensor([y for _, y in batch])


def validation_loader(items: Sequence[tuple[Path, int]], transform: Callable[[Any], torch.Tensor], batch_size: int = 16,
                      num_workers: int = 0, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ValidationSet:
    """Deterministic (images, labels) batches of full images through a test preprocessing."""
    return ValidationSet(items, transform, batch_size, num_workers, prepare)


def training_loaders(data: TrainingData, augmentation: Callable[..., Any], val_preprocess: Callable[[Any], torch.Tensor],
                     batch_size: int, *, seed: int = 0, num_workers: int = 0, val_batch_size: int = 16,
                     extra_items: Sequence[tuple[Path, Any]] = (),
                     val_prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[DataLoader, ValidationSet]:
    """(train, validation) of `data`: shuffled augmented batches (Rajan's synced pairs when
    `data.paired`; `extra_items` are appended, e.g. DEAR's composites for the Fig. 8 ablation),
    and the full validation images through the detector's test preprocessing (and its
    `prepare`, `val_prepare`, when that preprocessing stops at uint8 pixels)."""
    items = (paired_items if data.paired else labeled_items)(data.train_real, data.train_fake) + list(extra_items)
    train = train_loader(items, augmentation, batch_size, paired=data.paired, seed=seed, num_workers=num_workers)
    val = validation_loader(labeled_items(data.val_real, data.val_fake), val_preprocess, val_batch_size, num_workers, val_prepare)
    return train, val
