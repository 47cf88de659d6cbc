"""DISSECT: score every channel of one layer by its Regional Activation Discrepancy (RAD).

RAD_k = mean of channel k inside the inpainted region - mean of channel k in the background,
on partially inpainted images whose mask is known. Facts followed (dahyedahye/dear,
`dear/detector/corvi_mask_gated_detector.py`, `compute_rad_scores`; `dear/dataset/inpaint_dataset.py`):

- scored in eval mode on UNgated features (gate forced to ones), by default the layer4 output;
- the mask is binarised (> 0.5) and bilinearly resized (align_corners=False, not re-binarised) to
  the feature map; masked and background means each divide by (area + 1e-6);
- only samples whose mask survived the random crop are used; a batch contributes the mean over
  its usable samples; the result is the mean over batches (batches with none are skipped, but
  still count toward `max_batches`, as in the official loop);
- the data is the shuffled training inpaint loader WITH training augmentations applied jointly to
  image and mask (crop 96 etc.), 100 batches of 64.
"""
from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.api import BenchError, MissingDataError
from dear.rad import DissectError, RADResult

EPS = 1e-6


# --------------------------------------------------------------------------- scoring


def find_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """`model.get_submodule`, also by a unique dotted suffix ("layer4" finds "backbone.layer4"),
    with an error that lists the closest module names, or the full names a shared suffix
    ("conv1") could mean."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    by_suffix = [n for n in modules if n.endswith(f".{name}")]
    if len(by_suffix) == 1:
        return modules[by_suffix[0]]
    if by_suffix:
        more = f" and {len(by_suffix) - 5} more" if len(by_suffix) > 5 else ""
        raise DissectError(f"layer {name!r} is ambiguous in {type(model).__name__}: it ends {len(by_suffix)} module names, "
                           f"e.g. {', '.join(by_suffix[:5])}{more}; give the full name")
    close = difflib.get_close_matches(name, list(modules), n=5, cutoff=0.4)
    top = [n for n in modules if n and "." not in n.removeprefix("backbone.")]
    raise DissectError(
        f"{type(model).__name__} has no module {name!r}; closest: {', '.join(close) or 'none'} "
        f"(top-level: {', '.join(top[:20])})"
    )


class _Captured(Exception):
    """Raised by the hook to skip the rest of the forward once the layer output is in hand."""


def layer_activations(model: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Output of module `layer` for input `x` (the forward stops right after it)."""
    module = find_module(model, layer)
    out: list[torch.Tensor] = []

    def hook(_m, _inp, output):
        out.append(output[0] if isinstance(output, (tuple, list)) else output)
        raise _Captured

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not out:
        raise DissectError(f"module {layer!r} was not called by {type(model).__name__}.forward")
    return out[0]


@contextlib.contextmanager
def ungated(model: torch.nn.Module) -> Iterator[None]:
    """Within the block the model's channel gate (if any) reads all ones; restored afterwards,
    also on error. RAD is scored on UNgated features (official `compute_rad_scores`), so a
    pruned model can be dissected again, and the analyses read activations the same way."""
    buf = getattr(getattr(model, "gate", None), "gate", None)
    if not isinstance(buf, torch.Tensor):
        yield
        return
    saved = buf.detach().clone()
    buf.fill_(1.0)
    try:
        yield
    finally:
        buf.copy_(saved)


def rad_batch(feat: torch.Tensor, mask: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per-sample RAD (B, C) from features (B, C, h, w) and full-size masks (B, 1, H, W)."""
    if feat.dim() != 4:
        raise DissectError(f"RAD needs a (B, C, h, w) feature map, got shape {tuple(feat.shape)}")
    m = (mask.float() > 0.5).float()
    if m.dim() == 3:
        m = m.unsqueeze(1)
    m = F.interpolate(m, size=feat.shape[-2:], mode="bilinear", align_corners=False)
    bg = 1.0 - m
    inside = (feat * m).sum(dim=(2, 3)) / (m.sum(dim=(2, 3)) + eps)
    outside = (feat * bg).sum(dim=(2, 3)) / (bg.sum(dim=(2, 3)) + eps)
    return inside - outside


@torch.no_grad()
def rad_scores(
    model: torch.nn.Module,
    loader: Iterable[Sequence[torch.Tensor]],
    layer: str = "backbone.layer4",
    max_batches: int | None = 100,
    device: str = "cpu",
    *,
    eps: float = EPS,
    detector: str = "",
    data: str = "",
    progress: bool = False,
) -> RADResult:
    """RAD of every channel of `layer`; `loader` yields (images, masks, valid) batches.

    `valid[i]` is False when sample i's mask did not survive the crop; such samples are skipped.
    """
    find_module(model, layer)  # fail before touching any data
    was_training = model.training
    model.eval().to(device)
    total: torch.Tensor | None = None
    n_batches = n_samples = 0
    it = enumerate(loader)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=max_batches, desc="RAD", leave=False)
    try:
        with ungated(model):
            for b, batch in it:
                if max_batches is not None and b >= max_batches:
                    break
                if len(batch) != 3:
                    raise DissectError(f"RAD loader batches must be (images, masks, valid), got {len(batch)} items")
                x, mask, valid = batch
                valid = torch.as_tensor(valid, dtype=torch.bool).reshape(-1)
                if not bool(valid.any()):
                    continue
                x, mask = x[valid].to(device), mask[valid].to(device)
                per_sample = rad_batch(layer_activations(model, x, layer), mask, eps).double()
                total = per_sample.mean(0) if total is None else total + per_sample.mean(0)
                n_batches += 1
                n_samples += int(valid.sum())
    finally:
        model.train(was_training)
    if total is None:
        raise DissectError(f"no usable diagnostic sample in {data or 'the loader'}: every mask was empty after cropping")
    return RADResult((total / n_batches).cpu().numpy(), n_samples, n_batches, layer, detector, data,
                     {"eps": eps, "max_batches": max_batches})


# --------------------------------------------------------------------------- diagnostic data


OFFICIAL_INPAINT_DIR, OFFICIAL_MASK_DIR = "lsun_inpaint_sd", "lsun_inpaint_mask"


def diagnostic_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(composite, mask) pairs of a diagnostic set, sorted by composite name, in either layout:

    - ours (`bench dear diagnose`, AIGI-mini's diag/): <root>/images/X and <root>/masks/X;
    - DEAR's released one, with <root> its `data/train/fake` folder: <root>/lsun_inpaint_sd/
      {stem}_inpaint.png and <root>/lsun_inpaint_mask/{stem}_mask.png (dahyedahye/dear
      docs/DATASET.md, scripts/inpaint_data_gen/commands.sh and gen_*.py, which write them, and
      dear/dataset/inpaint_dataset.py, which pairs them by stem; folder names from
      configs/*_mask_gated.yaml). The official loader silently skips a composite without its
      mask; here that is an error, as in our layout."""
    from detectors.data import list_folder_images

    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if images_dir.is_dir() and masks_dir.is_dir():
        images = list_folder_images(images_dir)
        pairs = [(p, masks_dir / p.name) for p in images]
    elif (root / OFFICIAL_INPAINT_DIR).is_dir() and (root / OFFICIAL_MASK_DIR).is_dir():
        images_dir, masks_dir = root / OFFICIAL_INPAINT_DIR, root / OFFICIAL_MASK_DIR
        images = sorted(p for p in images_dir.iterdir() if p.name.endswith("_inpaint.png"))
        pairs = [(p, masks_dir / (p.name.removesuffix("_inpaint.png") + "_mask.png")) for p in images]
    else:
        raise MissingDataError(
            f"{root}: not a diagnostic set; expected images/ and masks/ (same file names) or DEAR's "
            f"{OFFICIAL_INPAINT_DIR}/ ({{stem}}_inpaint.png) and {OFFICIAL_MASK_DIR}/ ({{stem}}_mask.png)")
    if not pairs:
        raise MissingDataError(f"{images_dir}: no images")
    missing = [m.name for _, m in pairs if not m.is_file()]
    if missing:
        raise MissingDataError(f"{masks_dir}: no mask for {len(missing)} image(s), e.g. {missing[0]}")
    return pairs


def read_mask(path: str | Path) -> np.ndarray:
    """Binary (H, W) uint8 0/1 mask from an L/RGB PNG (> 127 is inside), turned upright by its
    EXIF orientation as its image is (`bench.images.load_image`), so the two stay aligned.

    Every diagnostic image has an inpainted region, so a mask with no pixel inside is refused:
    it is a mask stored another way (grey 0-100, in an alpha channel), which would otherwise be
    read as empty and dropped from RAD and the refit without a word."""
    from PIL import ImageOps

    try:
        with Image.open(path) as im:
            mask = (np.asarray(ImageOps.exif_transpose(im).convert("L")) > 127).astype(np.uint8)
    except Exception as exc:
        raise DissectError(f"{path}: cannot read mask ({type(exc).__name__}: {exc})") from exc
    if not mask.any():
        raise DissectError(f"{path}: no mask pixel above 127; masks must be binary 0/255 L-mode PNGs, 255 = inpainted "
                           "(as bench dear diagnose writes)")
    return mask


class DiagnosticImages(torch.utils.data.Dataset):
    """Inpainted composites with their masks, augmented JOINTLY by the training augmentation.

    The image and a `tv_tensors.Mask` pass through one call of the v2 pipeline
    (`detectors.augment.af_augmentation`), so crops, rotations and flips agree while colour,
    noise, blur and JPEG touch the image only (dahyedahye/dear `dear/dataset/inpaint_dataset.py`
    does the same by reseeding). A sample is "valid" when some mask pixel survived the crop.

    `targets=False` yields (image, mask [1, H, W] float 0/1, valid) for RAD;
    `targets=True` yields (image, target) with target = 1.0 if valid else 0.0 for the refit.
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], transform: Callable[..., Any] | None = None, *, targets: bool = False):
        from detectors.augment import af_augmentation

        self.pairs = list(pairs)
        if not self.pairs:
            raise MissingDataError("diagnostic set is empty")
        self.transform = transform if transform is not None else af_augmentation()
        self.targets = targets

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        from detectors.data import load_rgb

        image_path, mask_path = self.pairs[i]
        image, mask = load_rgb(image_path), read_mask(mask_path)
        if mask.shape != (image.height, image.width):
            raise BenchError(f"{mask_path}: mask size {mask.shape[::-1]} differs from its image {image.size}")
        x, m = self.transform(image, tv_tensors.Mask(torch.from_numpy(mask)[None]))
        m = (m.as_subclass(torch.Tensor) > 0).float()
        valid = bool(m.any())
        if self.targets:
            return x.as_subclass(torch.Tensor), float(valid)
        return x.as_subclass(torch.Tensor), m, valid


def diagnostic_loader(
    pairs: Sequence[tuple[Path, Path]],
    *,
    targets: bool = False,
    batch_size: int = 64,
    seed: int = 0,
    repeats: int = 1,
    crop: int = 96,
    num_workers: int = 0,
    normalization: Any = None,
) -> torch.utils.data.DataLoader:
    """Shuffled loader over the diagnostic set with the training augmentation (crop `crop`),
    ending with the model's `normalization` (default ImageNet's, the ResNets').

    `repeats` > 1 walks the set that many times per pass (fresh augmentation each time): the
    official set has ~6400+ images for 100 batches of 64, a mini set far fewer."""
    from detectors.augment import af_augmentation
    from detectors.preprocess import IMAGENET

    augmentation = af_augmentation(crop=crop, normalization=normalization or IMAGENET)
    ds: torch.utils.data.Dataset = DiagnosticImages(pairs, augmentation, targets=targets)
    if repeats > 1:
        ds = torch.utils.data.ConcatDataset([ds] * repeats)
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen, num_workers=num_workers)
