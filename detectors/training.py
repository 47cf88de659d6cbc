"""Training of the CNN detectors: augmentation, datasets, the loop, early stopping, mini weights.

The recipe is AlignedForensics' (AniSundar18/AlignedForensics training_code: utils/processing.py,
utils/dataset.py, utils/cap_dset.py, utils/training.py, train.py, flags of script_train.sh), which
also trains res50nodown the Corvi way (the ICASSP 2023 flag set in processing.py):
- augmentation on the full image, in this order: RandomResizedCrop(256, scale (0.08, 1), ratio
  (0.75, 4/3)) p 0.2; ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8; RandomGrayscale p 0.2; one 48x48
  cutout filled with 128 p 0.2; Gaussian noise of variance U(10, 50) on the 0-255 scale p 0.2;
  Gaussian blur sigma U(0, 3) p 0.5; JPEG quality U{30..100} p 0.5; rotation by k*90 degrees;
  horizontal flip; then a 96x96 random crop (symmetric padding if needed); ImageNet mean/std;
- BCE-with-logits, Adam(lr 1e-4, betas (0.9, 0.999)), a validation before training and after
  every epoch, balanced accuracy at logit > 0, early stopping (delta 0.001; patience 10 for the
  base detectors, `--earlystop_epoch 10` in script_train.sh, and 5 for the Stay-Positive refit
  line there and for DEAR), lr / 10 when patience runs out, stop once lr < 1e-6, keep the best
  weights;
- Rajan's "batched syncing": each real and its reconstruction get the same augmentation (the
  official code reseeds every RNG identically before each) and sit in the same batch.
We express the augmentation with torchvision.transforms.v2 and pass the pair (or an image and a
tv_tensors.Mask, for DEAR) through one call, so all drawn parameters are shared; the custom noise
transform draws one seed per call, so a pair of equal size also gets identical noise, as the
reseeded official code does.

JPEG in the augmentation goes through PIL only, where the official flags (`--cmp_method cv2,pil`)
pick OpenCV or PIL per image: both encode with libjpeg's standard tables and 4:2:0 chroma at a
given quality, and OpenCV is not worth a dependency for that coin.

Validation is deterministic here: full images at native resolution (the test condition) through
the detector's own test preprocessing, instead of the official re-use of the random training
processing on the validation split.

NPR (chuangchuangtan/NPR-DeepfakeDetection data/datasets.py, networks/trainer.py, train.py, README)
trains on unpaired ProGAN data with Resize(256) -> RandomCrop(224) -> flip, Adam(beta1 0.9) at
lr 2e-4, batch 32, lr x 0.8 every 10 epochs, and keeps the last model: `TrainConfig.npr()`.
"""
from __future__ import annotations

import copy
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from bench.api import BenchError
from bench.images import is_image_file, load_image, upright_size
from detectors import MINI_DETECTORS
from detectors.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageNetNormalize, ResizeNormalize

# --------------------------------------------------------------------------- early stopping


@dataclass
class Decision:
    """What the trainer does after one validation score."""

    improved: bool  # keep these weights as the best so far
    lr: float  # learning rate to use from now on
    stop: bool


@dataclass
class EarlyStopping:
    """AlignedForensics' EarlyStopping plus its lr schedule (utils/__init__.py, train.py).

    The first score initialises the best. A score <= best + delta counts down; at zero the lr
    is divided by `factor` and the count restarts, and training stops once the lr falls below
    `min_lr` (from 1e-4: 1e-5, 1e-6, then stop)."""

    patience: int = 5
    delta: float = 1e-3
    lr: float = 1e-4
    min_lr: float = 1e-6
    factor: float = 10.0
    best_score: float | None = None
    count_down: int = field(init=False)

    def __post_init__(self) -> None:
        self.count_down = self.patience

    def step(self, score: float) -> Decision:
        if self.best_score is None or score > self.best_score + self.delta:
            self.best_score = float(score)
            self.count_down = self.patience
            return Decision(True, self.lr, False)
        self.count_down -= 1
        if self.count_down > 0:
            return Decision(False, self.lr, False)
        self.lr /= self.factor
        if self.lr < self.min_lr:
            return Decision(False, self.lr, True)
        self.count_down = self.patience
        return Decision(False, self.lr, False)


# --------------------------------------------------------------------------- augmentation


def _is_image(inpt: Any) -> bool:
    return isinstance(inpt, (Image.Image, tv_tensors.Image))


def _to_array(inpt: Any) -> np.ndarray:
    """HWC uint8 array of a PIL image or a CHW uint8 tv_tensors.Image."""
    if isinstance(inpt, Image.Image):
        return np.array(inpt.convert("RGB"))
    return inpt.permute(1, 2, 0).contiguous().numpy().copy()


def _from_array(arr: np.ndarray, like: Any) -> Any:
    if isinstance(like, Image.Image):
        return Image.fromarray(arr)
    return tv_tensors.wrap(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), like=like)


class RandomRot90(v2.Transform):
    """Rotate counter-clockwise by k * 90 degrees, k uniform in {0..3}, with probability p
    (PIL's rotate(90 k, expand=True) as in the official code); geometric, so masks too."""

    def __init__(self, p: float = 1.0):
        super().__init__()
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        k = int(torch.randint(0, 4, ()).item()) if float(torch.rand(())) < self.p else 0
        return {"k": k}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        k = params["k"]
        if k == 0:
            return inpt
        if isinstance(inpt, Image.Image):
            return inpt.rotate(90 * k, expand=True)
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return tv_tensors.wrap(torch.rot90(inpt, k, dims=(-2, -1)), like=inpt)
        return inpt


class Cutout(v2.Transform):
    """One size x size hole filled with `fill`, centred uniformly and clipped at the border
    (albumentations' Cutout with num_holes=1 as used by AlignedForensics); images only."""

    def __init__(self, size: int = 48, fill: int = 128, p: float = 0.2):
        super().__init__()
        self.size, self.fill, self.p = size, fill, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"box": None}
        h, w = v2.query_size(flat_inputs)
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        top, left = max(cy - self.size // 2, 0), max(cx - self.size // 2, 0)
        return {"box": (top, min(top + self.size, h), left, min(left + self.size, w))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["box"] is None or not _is_image(inpt):
            return inpt
        t, b, l, r = params["box"]
        arr = _to_array(inpt)
        arr[t:b, l:r] = self.fill
        return _from_array(arr, inpt)


class GaussianNoise(v2.Transform):
    """Additive N(0, var) noise per pixel and channel, var ~ U(var_range) on the 0-255 scale,
    clipped and truncated to uint8 (albumentations GaussNoise); images only. One seed is drawn
    per call, so equal-size inputs of one call get the same noise field."""

    def __init__(self, var_range: tuple[float, float] = (10.0, 50.0), p: float = 0.2):
        super().__init__()
        self.var_range, self.p = var_range, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"sigma": None}
        lo, hi = self.var_range
        var = lo + (hi - lo) * float(torch.rand(()))
        return {"sigma": math.sqrt(var), "seed": int(torch.randint(0, 2**62, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["sigma"] is None or not _is_image(inpt):
            return inpt
        arr = _to_array(inpt)
        noise = np.random.default_rng(params["seed"]).normal(0.0, params["sigma"], arr.shape)
        return _from_array(np.clip(arr + noise, 0, 255).astype(np.uint8), inpt)


class RandomGaussianBlur(v2.Transform):
    """scipy.ndimage.gaussian_filter per channel with sigma ~ U(sigma_range), probability p,
    as the official data_augment_blur; images only."""

    def __init__(self, sigma_range: tuple[float, float] = (0.0, 3.0), p: float = 0.5):
        super().__init__()
        self.sigma_range, self.p = sigma_range, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"sigma": None}
        lo, hi = self.sigma_range
        return {"sigma": lo + (hi - lo) * float(torch.rand(()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["sigma"] is None or not _is_image(inpt):
            return inpt
        from scipy.ndimage import gaussian_filter

        arr = _to_array(inpt)
        for c in range(arr.shape[2]):
            gaussian_filter(arr[:, :, c], output=arr[:, :, c], sigma=params["sigma"])
        return _from_array(arr, inpt)


class RandomJPEG(v2.Transform):
    """JPEG round trip through PIL at quality ~ U{lo..hi}, probability p; images only."""

    def __init__(self, quality: tuple[int, int] = (30, 100), p: float = 0.5):
        super().__init__()
        self.quality, self.p = quality, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.p:
            return {"quality": None}
        return {"quality": int(torch.randint(self.quality[0], self.quality[1] + 1, ()))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["quality"] is None or not _is_image(inpt):
            return inpt
        buf = io.BytesIO()
        Image.fromarray(_to_array(inpt)).save(buf, format="JPEG", quality=params["quality"])
        buf.seek(0)
        with Image.open(buf) as im:
            return _from_array(np.array(im.convert("RGB")), inpt)


class SymmetricPadCrop(v2.RandomCrop):
    """`v2.RandomCrop(size, pad_if_needed=True, padding_mode="symmetric")` that also pads masks
    much smaller than the crop. torchvision pads a PIL image through `np.pad(mode="symmetric")`,
    which repeats the mirror as often as needed, but its tensor kernel (used for a
    `tv_tensors.Mask`) fails once the pad exceeds the side (a 40 px diagnostic pair at crop 96).
    Masks are padded here with the same `np.pad`, so they stay aligned with their image; the
    drawn parameters, and so every training run, are those of `v2.RandomCrop`."""

    def __init__(self, size: int):
        super().__init__(size, pad_if_needed=True, padding_mode="symmetric")

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) and params["needs_pad"]:
            left, top, right, bottom = params["padding"]
            widths = [(0, 0)] * (inpt.ndim - 2) + [(top, bottom), (left, right)]
            inpt = tv_tensors.wrap(torch.from_numpy(np.pad(inpt.numpy(), widths, mode="symmetric")), like=inpt)
            params = {**params, "needs_pad": False}
        return super().transform(inpt, params)


def _to_model_input() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def af_augmentation(crop: int = 96, resize: int = 256) -> v2.Compose:
    """The AlignedForensics / Corvi training processing (see the module docstring).

    It works on PIL images like the official one (torchvision's PIL kernels; tensor ColorJitter
    is ~50x slower); one call with several inputs shares every drawn parameter."""
    return v2.Compose(
        [
            v2.RandomApply(
                [v2.RandomResizedCrop(resize, scale=(0.08, 1.0), ratio=(0.75, 1.0 / 0.75), interpolation=v2.InterpolationMode.BILINEAR)],
                p=0.2,
            ),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            Cutout(48, 128, p=0.2),
            GaussianNoise((10.0, 50.0), p=0.2),
            RandomGaussianBlur((0.0, 3.0), p=0.5),
            RandomJPEG((30, 100), p=0.5),
            RandomRot90(p=1.0),
            v2.RandomHorizontalFlip(),
            SymmetricPadCrop(crop),
            *_to_model_input(),
        ]
    )


def npr_augmentation(load: int = 256, crop: int = 224) -> v2.Compose:
    """NPR's training processing: Resize(load, load) (PIL bilinear) -> RandomCrop(crop) -> flip."""
    return v2.Compose([v2.Resize((load, load)), v2.RandomCrop(crop), v2.RandomHorizontalFlip(), *_to_model_input()])


# --------------------------------------------------------------------------- datasets


def load_rgb(path: str | Path) -> Image.Image:
    """An image as the runner reads it (`bench.images.load_image`: EXIF orientation applied,
    16-bit data rescaled, alpha dropped), so training, dissection and the score decomposition
    see the pixels that the benchmark scores. Raises BadImageError naming the file."""
    return load_image(str(path))


def list_folder_images(folder: str | Path) -> list[Path]:
    """The images directly in `folder`, sorted. Flat on purpose: Rajan's pairs match a real and
    its reconstruction by file name (`suites.sources.list_images` is the recursive listing)."""
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

    def sizes(self) -> list[tuple[int, int]]:
        """(W, H) of every image as `__getitem__` will load it (`upright_size`)."""
        return [upright_size(path) for path, _ in self.items]


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


class SameSizeBatchSampler(Sampler[list[int]]):
    """Deterministic batches of images of equal size (native-resolution validation)."""

    def __init__(self, sizes: Sequence[tuple[int, int]], batch_size: int):
        groups: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(sizes):
            groups.setdefault(tuple(s), []).append(i)
        self.batches = [idx[s : s + batch_size] for idx in groups.values() for s in range(0, len(idx), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


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


def validation_loader(items: Sequence[tuple[Path, int]], transform: Callable[[Any], torch.Tensor], batch_size: int = 16, num_workers: int = 0) -> DataLoader:
    """Deterministic loader of full images, batched by size, through a test preprocessing."""
    ds = LabeledImages(items, transform)
    return DataLoader(ds, batch_sampler=SameSizeBatchSampler(ds.sizes(), batch_size), num_workers=num_workers)


# --------------------------------------------------------------------------- evaluation


def channels_last(x: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """A (B, C, H, W) batch on `device` in channels-last layout: same numbers, and the
    full-resolution stride-1 stems run ~1.5-2x faster on CPU."""
    return x.to(device).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) over a loader of (x, y) batches, model in eval mode."""
    was_training = model.training
    model.eval()
    ys, zs = [], []
    for x, y in loader:
        zs.append(model(channels_last(x, device)).float().cpu().reshape(-1))
        ys.append(torch.as_tensor(y).float().reshape(-1))
    model.train(was_training)
    return torch.cat(ys).numpy(), torch.cat(zs).numpy()


def balanced_accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean of real and fake accuracy at logit > 0 (sklearn's balanced_accuracy_score)."""
    labels, pred = np.asarray(labels) > 0.5, np.asarray(logits) > 0
    recalls = [float(np.mean(pred[labels == c] == c)) for c in (False, True) if np.any(labels == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


# --------------------------------------------------------------------------- training loop


@dataclass
class TrainConfig:
    """Hyper-parameters of `train_detector`; defaults are AlignedForensics' (Corvi/Rajan)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 64  # samples per batch; a paired sample is a (real, recon) pair, so 2x images
    schedule: str = "earlystop"  # "earlystop" (AF) or "step" (NPR: lr *= step_factor every step_every epochs)
    patience: int = 10  # script_train.sh --earlystop_epoch 10 (base detectors); the Stay-Positive refit uses 5
    delta: float = 1e-3
    min_lr: float = 1e-6
    step_every: int = 10
    step_factor: float = 0.8
    keep: str = "best"  # "best" (AF) or "last" (NPR)
    max_epochs: int = 1000
    max_steps: int | None = None  # cap on optimizer steps (CPU budgets)
    steps_per_epoch: int | None = None  # steps between validations; None = one pass over the data
    crop: int = 96
    drop_rate: float = 0.5  # AF resnet_mod default dropout before the head
    seed: int = 0
    num_workers: int = 0
    val_batch_size: int = 16
    device: str = "cpu"
    progress: bool = True

    @classmethod
    def npr(cls, **kw: Any) -> "TrainConfig":
        base = dict(lr=2e-4, batch_size=32, schedule="step", step_every=10, step_factor=0.8, keep="last", max_epochs=50, crop=224, drop_rate=0.0)
        return cls(**{**base, **kw})


@dataclass
class TrainResult:
    best_score: float
    best_epoch: int
    epochs: int
    steps: int
    stop_reason: str
    wall_s: float
    history: list[dict[str, float]]


def epoch_batches(loader: Iterable, steps: int | None) -> Iterator:
    """The batches of one "epoch": a pass over `loader`, or exactly `steps` batches, starting
    new (reshuffled) passes as needed. On a small world one pass is a handful of steps, so
    `steps` sets how often validation and early stopping run."""
    if steps is None:
        yield from loader
        return
    it = iter(loader)
    for _ in range(steps):
        try:
            yield next(it)
        except StopIteration:
            it = iter(loader)
            yield next(it)


def progress_bar(it: Iterable, enabled: bool, **kw: Any) -> Iterable:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, **kw)


def train_detector(model: nn.Module, train_data: DataLoader, val_data: Iterable, config: TrainConfig = TrainConfig()) -> TrainResult:
    """Train `model` (logits (B,) from (B, 3, H, W)) on (x, y) batches; see the module docstring.

    Validates before training and after each epoch; returns the history and leaves the kept
    weights (best or last) in `model`, in eval mode."""
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    device = config.device
    model.to(device=device, memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, betas=config.betas)
    loss_fn = nn.BCEWithLogitsLoss()
    stopper = EarlyStopping(config.patience, config.delta, config.lr, config.min_lr)
    history: list[dict[str, float]] = []
    best_state, best_score, best_epoch, steps, reason = None, -math.inf, 0, 0, "max_epochs"
    for epoch in range(config.max_epochs + 1):
        losses = []
        if epoch > 0:
            model.train()
            n = config.steps_per_epoch or len(train_data)
            bar = progress_bar(epoch_batches(train_data, config.steps_per_epoch), config.progress, total=n, desc=f"epoch {epoch}", leave=False)
            for x, y in bar:
                if config.max_steps is not None and steps >= config.max_steps:
                    break
                loss = loss_fn(model(channels_last(x, device)), y.to(device).float())
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                losses.append(loss.item())
            if config.schedule == "step" and epoch % config.step_every == 0:
                for g in opt.param_groups:
                    g["lr"] *= config.step_factor
        labels, logits = predict(model, val_data, device)
        score = balanced_accuracy(labels, logits)
        lr = opt.param_groups[0]["lr"]
        history.append({"epoch": epoch, "steps": steps, "lr": lr, "train_loss": float(np.mean(losses)) if losses else float("nan"), "val_bacc": score})
        if config.progress:
            print(f"epoch {epoch}: steps {steps} lr {lr:.1e} loss {history[-1]['train_loss']:.4f} val bacc {score:.4f}", flush=True)
        stop = False
        if config.schedule == "earlystop":
            d = stopper.step(score)
            for g in opt.param_groups:
                g["lr"] = d.lr
            improved, stop = d.improved, d.stop
            reason = "lr below min_lr" if stop else reason
        else:
            improved = score > best_score
        if improved:
            best_score, best_epoch = score, epoch
            if config.keep == "best":
                best_state = copy.deepcopy(model.state_dict())
        if config.max_steps is not None and steps >= config.max_steps:
            stop, reason = True, "max_steps"
        if stop:
            break
    if config.keep == "best" and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_score, best_epoch, history[-1]["epoch"], steps, reason, time.perf_counter() - t0, history)


# --------------------------------------------------------------------------- AIGI-mini weights


def world_loaders(detector: str, world: Path, config: TrainConfig) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders on an AIGI-mini world for one detector.

    corvi/npr: train/real vs train/fake (unpaired); rajan: train/real with train/recon of the
    same name, synced; validation pairs val/real with val/fake, or val/recon for rajan."""
    base = detector.removesuffix("-plus")
    paired = base == "rajan"
    fakes = "recon" if paired else "fake"
    if base == "npr":
        train_tf, val_tf = npr_augmentation(crop=config.crop), ResizeNormalize((256, 256))
    else:
        train_tf, val_tf = af_augmentation(crop=config.crop), ImageNetNormalize()
    items = (paired_items if paired else labeled_items)(world / "train" / "real", world / "train" / fakes)
    train = train_loader(items, train_tf, config.batch_size, paired=paired, seed=config.seed, num_workers=config.num_workers)
    val = validation_loader(labeled_items(world / "val" / "real", world / "val" / fakes), val_tf, config.val_batch_size, config.num_workers)
    return train, val


def mini_config(detector: str, **overrides: Any) -> TrainConfig:
    """The recipe and CPU budget of the bundled weights.

    NPR: its official recipe (it trains from scratch, lr 2e-4), capped at 20 epochs. Corvi and
    Rajan: the AlignedForensics recipe, except lr 1e-3 instead of 1e-4 (the official 1e-4
    fine-tunes ImageNet weights; from scratch the mini net barely moves at 1e-4 in a CPU
    budget: val bacc 0.63 vs 0.87 after 75 steps), a validation every 25 steps (one pass over
    AIGI-mini's 320 training images is only 5 steps) and at most 30 such epochs. Rajan takes
    32 pairs per batch, half of Corvi's 64 images, as script_train.sh does in sync mode.
    CPU caps of the bundled weights: Rajan 12 epochs, NPR 20 of its 50.
    Corvi and Rajan also use patience 5 instead of the official 10: a CPU "epoch" here is 25
    steps, and at most 30 (12) of them fit the budget, so 10 would leave no room for the lr
    decays that follow a stall. Stay-Positive refits: the official patience 5, lr 1e-2 instead
    of the official 1e-4, validation every 25 steps, at most 20 epochs. A non-negative head starting from zero must first grow a bias of about -2
    before any image reads "real"; the official 1e-4 gets there over epochs of ~200k images.
    On cached corvi.mini features (val bacc of the unconstrained head: 0.85) a clamped head
    reaches val bacc 0.50 / 0.43 / 0.71 after 500 steps at lr 1e-4 / 1e-3 / 1e-2, and
    0.40 / 0.66 / 0.73 after 3000."""
    base = {
        "npr": TrainConfig.npr(max_epochs=20),
        "corvi": TrainConfig(lr=1e-3, patience=5, steps_per_epoch=25, max_epochs=30),
        "rajan": TrainConfig(lr=1e-3, patience=5, steps_per_epoch=25, max_epochs=12, batch_size=32),
        "corvi-plus": TrainConfig(lr=1e-2, patience=5, steps_per_epoch=25, max_epochs=20),
        "rajan-plus": TrainConfig(lr=1e-2, patience=5, steps_per_epoch=25, max_epochs=20, batch_size=32),
    }[detector]
    return replace(base, **overrides)


def train_mini(detector: str, world: Path, out: Path, config: TrainConfig | None = None, *, summary_path: Path | None = None) -> Path:
    """Train `<detector>.mini` on an AIGI-mini world and save `<out>/<detector>.mini.safetensors`.

    corvi and rajan train the mini res50nodown from scratch (the official ones start from
    ImageNet weights, which do not exist for the mini width); npr trains the mini NPR with its
    own recipe; corvi-plus / rajan-plus refit the head of `<out>/corvi.mini.safetensors` /
    `rajan.mini...` with Stay-Positive's non-negative head on the data the base was trained on.
    With `config=None` the CPU budget of `mini_config` is used. Returns the file written;
    `summary_path` receives the training history as JSON."""
    from bench.weights import save_state
    from detectors.head import refit_head
    from detectors.npr import NPR_ARCHS, NPRNet
    from detectors.resnet import build_res50nodown, load_resnet_checkpoint

    if detector not in MINI_DETECTORS:
        raise BenchError(f"train_mini: unknown detector {detector!r}; known: {', '.join(MINI_DETECTORS)}")
    world, out = Path(world), Path(out)
    config = config or mini_config(detector)
    target = out / f"{detector}.mini.safetensors"
    torch.manual_seed(config.seed)
    train, val = world_loaders(detector, world, config)
    if detector.endswith("-plus"):
        base_file = out / f"{detector.removesuffix('-plus')}.mini.safetensors"
        if not base_file.is_file():
            bundled = Path(__file__).parent / "weights" / base_file.name
            raise BenchError(f"train_mini({detector!r}): {base_file} is missing; train the base first "
                             f"(bench train {detector.removesuffix('-plus')} --out {out}) or copy the bundled {bundled} there")
        model = load_resnet_checkpoint(base_file)
        result = refit_head(
            model, train, val, nonneg=True, lr=config.lr, patience=config.patience, delta=config.delta, min_lr=config.min_lr,
            max_epochs=config.max_epochs, steps_per_epoch=config.steps_per_epoch, device=config.device, progress=config.progress,
        )
        summary = asdict(result)
        if result.best_epoch == 0:  # the zero head (every logit 0, "all real") was never beaten
            warnings.warn(f"train_mini({detector!r}): the refit head never beat the zero head on validation, so {target.name} "
                          f"scores every image 0; give it more steps or a larger lr (val bacc: {[round(h['val_bacc'], 3) for h in result.history]})",
                          stacklevel=2)
    else:
        if detector == "npr":
            model = NPRNet(NPR_ARCHS["mini"])
        else:
            model = build_res50nodown("mini", drop_rate=config.drop_rate)
        summary = asdict(train_detector(model, train, val, config))
    save_state(model.state_dict(), target)
    if summary_path is not None:
        summary.update(detector=detector, file=str(target), world=str(world), config=asdict(config))
        Path(summary_path).write_text(json.dumps(summary, indent=1, default=str))
    return target
