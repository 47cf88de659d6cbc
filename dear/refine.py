"""REFINE: re-learn the linear head of the gated detector on its training data plus inpaints.

The loop itself is `detectors.head.refit_head` (shared with Stay-Positive); DEAR's part is what
goes in: the pruned gate, no sign constraint, and one batch of augmented inpainted composites
per step whose target is 1 if the inpainted region survived the crop and 0 otherwise
(dahyedahye/dear `pipelines/corvi_mask_gated.py`, `CorviMaskGatedDetector.combined_update`,
`dear/dataset/inpaint_dataset.py`). Batches are 64 main + 64 inpaint (`configs/*_mask_gated.yaml`).

Validation follows the official configs for both variants: val reals vs val unpaired fakes
(`val_fake_types: ['ldm']` in `configs/rajan_mask_gated.yaml` too), at native resolution
through the detector's test preprocessing (as in `detectors.training`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import torch
from torch.utils.data import DataLoader

from detectors.head import RefitResult, refit_head
from detectors.resnet import GatedResNet

BaseKind = Literal["corvi", "rajan"]


def refine(
    model: GatedResNet,
    gate: torch.Tensor,
    train_loader: Iterable,
    inpaint_loader: Iterable,
    val_loader: Iterable,
    **options: Any,
) -> RefitResult:
    """Write `gate` into the model, zero the head and refit it (BCE main + BCE inpaint): the
    shared `detectors.head.refit_head` with the gate and the inpainted batches; `options` are
    its own (freeze_bn, lr, patience, delta, min_lr, max_epochs, steps_per_epoch, device,
    progress). `freeze_bn=False` replicates the official loop, which calls `train()` every
    epoch so the frozen backbone's BatchNorm statistics drift during the refit."""
    return refit_head(model, train_loader, val_loader, nonneg=False, gate=gate, extra_loader=inpaint_loader, **options)


@dataclass(frozen=True)
class RefineData:
    """Folders the refit reads: the base detector's training data, validation, diagnostic set.

    `train_fake` holds unpaired fakes (Corvi) or same-name reconstructions of `train_real`
    (Rajan, synced pairs); `kind` says which."""

    kind: BaseKind
    train_real: Path
    train_fake: Path
    val_real: Path
    val_fake: Path
    diag: Path  # a diagnostic set in a layout `dear.dissect.diagnostic_pairs` reads

    @classmethod
    def from_world(cls, world: str | Path, kind: BaseKind) -> "RefineData":
        w = Path(world)
        fake = "recon" if kind == "rajan" else "fake"
        return cls(kind, w / "train" / "real", w / "train" / fake, w / "val" / "real", w / "val" / "fake", w / "diag")


def refine_loaders(
    data: RefineData,
    *,
    batch_size: int = 64,
    inpaint_batch_size: int = 64,
    crop: int = 96,
    seed: int = 0,
    val_batch_size: int = 16,
    num_workers: int = 0,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, inpaint, val) loaders built from the shared training code.

    Train uses `detectors.training`'s datasets and augmentation exactly as the base detector was
    trained (Rajan: synced real/recon pairs, `batch_size` pairs per step); inpaint uses
    `dear.dissect.DiagnosticImages` with targets; val is deterministic full images."""
    from dear.dissect import diagnostic_loader, diagnostic_pairs
    from detectors.preprocess import ImageNetNormalize
    from detectors.training import af_augmentation, labeled_items, paired_items, train_loader, validation_loader

    if data.kind not in ("corvi", "rajan"):
        raise ValueError(f"unknown base kind {data.kind!r}; use 'corvi' or 'rajan'")
    paired = data.kind == "rajan"
    items = (paired_items if paired else labeled_items)(data.train_real, data.train_fake)
    train = train_loader(items, af_augmentation(crop=crop), batch_size, paired=paired, seed=seed, num_workers=num_workers)
    inpaint = diagnostic_loader(diagnostic_pairs(data.diag), targets=True, batch_size=inpaint_batch_size,
                                seed=seed + 1, crop=crop, num_workers=num_workers)
    val = validation_loader(labeled_items(data.val_real, data.val_fake), ImageNetNormalize(), val_batch_size, num_workers)
    return train, inpaint, val
