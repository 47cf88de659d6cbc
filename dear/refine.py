"""REFINE: re-learn the linear head of the gated detector on its training data plus inpaints.

The loop itself is `detectors.head.refit_head` (shared with Stay-Positive); DEAR's part is what
goes in: the pruned gate, no sign constraint, and one batch of augmented inpainted composites
per step whose target is 1 if the inpainted region survived the crop and 0 otherwise
(dahyedahye/dear `pipelines/corvi_mask_gated.py`, `CorviMaskGatedDetector.combined_update`,
`dear/dataset/inpaint_dataset.py`). Batches are 64 main + 64 inpaint (`configs/*_mask_gated.yaml`).

Validation follows the official configs for both variants: val reals vs val unpaired fakes
(`val_fake_types: ['ldm']` in `configs/rajan_mask_gated.yaml` too), at native resolution
through the detector's test preprocessing (`detectors.data.ValidationSet`). The official loop
validates on augmented 96-px crops instead; the README lists this among the deviations.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from bench.api import BenchError, LinearHeadModel, TrainingData
from dear.config import BaseKind
from detectors.head import RefitResult, refit_head


def refine(
    model: LinearHeadModel,
    gate: Any,
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


def world_data(world: str | Path, kind: BaseKind) -> TrainingData:
    """What DEAR refits a `kind` base on in an AIGI-mini world: the base's own training data
    (Rajan: synced real/reconstruction pairs), validation on the unpaired fakes for both kinds,
    and the world's diagnostic set."""
    from suites.mini.layout import WorldLayout

    return WorldLayout(Path(world)).training_data(paired=kind == "rajan", val_paired=False)


def kind_of(data: TrainingData) -> BaseKind:
    """The base kind whose training `data` reproduces: paired reconstructions are Rajan's."""
    return "rajan" if data.paired else "corvi"


def refine_loaders(
    data: TrainingData,
    *,
    batch_size: int = 64,
    inpaint_batch_size: int = 64,
    crop: int = 96,
    seed: int = 0,
    val_batch_size: int = 16,
    num_workers: int = 0,
    normalization: Any = None,
) -> tuple[Any, Any, Any]:
    """(train, inpaint, val) loaders built from the shared training code.

    Train uses `detectors.data`'s datasets and `detectors.augment`'s augmentation exactly as the
    base detector was trained (Rajan: synced real/recon pairs, `batch_size` pairs per step),
    ending with the model's `normalization` (default ImageNet's); inpaint uses
    `dear.dissect.DiagnosticImages` with targets; val is deterministic full images."""
    from dear.dissect import diagnostic_loader, diagnostic_pairs
    from detectors.augment import af_augmentation
    from detectors.data import training_loaders
    from detectors.preprocess import IMAGENET, Normalize

    if data.diag is None:
        raise BenchError(f"DEAR's refit needs a diagnostic set; the training data of {data.train_real} names none")
    normalization = normalization or IMAGENET
    train, val = training_loaders(data, af_augmentation(crop=crop, normalization=normalization), Normalize(*normalization),
                                  batch_size, seed=seed, num_workers=num_workers, val_batch_size=val_batch_size)
    inpaint = diagnostic_loader(diagnostic_pairs(data.diag), targets=True, batch_size=inpaint_batch_size,
                                seed=seed + 1, crop=crop, num_workers=num_workers, normalization=normalization)
    return train, inpaint, val
