"""The training loop shared by every detector this project trains, and its early stopping.

AlignedForensics' loop (AniSundar18/AlignedForensics training_code utils/training.py, train.py,
utils/__init__.py; flags of script_train.sh): BCE-with-logits, Adam(lr 1e-4, betas (0.9, 0.999)),
a validation before training and after every epoch, balanced accuracy at logit > 0, early
stopping (delta 0.001; patience 10 for the base detectors, `--earlystop_epoch 10`, and 5 for the
Stay-Positive refit line and for DEAR), lr / 10 when patience runs out, stop once lr < 1e-6, keep
the best weights. NPR's (chuangchuangtan/NPR-DeepfakeDetection networks/trainer.py, train.py):
Adam(beta1 0.9) at lr 2e-4, batch 32, lr x 0.8 every 10 epochs, keep the last model
(`TrainConfig.npr()`).

Validation is deterministic here: full images at native resolution (the test condition) through
the detector's own test preprocessing (`detectors.data.ValidationSet`), instead of the official
re-use of the random training processing (96-px crops) on the validation split.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn


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



def channels_last(x: torch.Tensor, device: str = "cpu", enabled: bool = True) -> torch.Tensor:
    """A (B, C, H, W) batch on `device` in channels-last layout: same numbers, and the
    full-resolution stride-1 stems run ~1.5-2x faster on CPU. `enabled=False` keeps the default
    layout, which depthwise convolutions need (FerretNet: 2.8 s instead of 7-14 s a step on CPU)."""
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if enabled else x


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: str = "cpu", layout: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) over a loader of (x, y) batches, model in eval mode (channels-last
    inputs unless `layout=False`)."""
    was_training = model.training
    model.eval()
    ys, zs = [], []
    for x, y in loader:
        zs.append(model(channels_last(x, device, layout)).float().cpu().reshape(-1))
        ys.append(torch.as_tensor(y).float().reshape(-1))
    model.train(was_training)
    return torch.cat(ys).numpy(), torch.cat(zs).numpy()


def balanced_accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean of real and fake accuracy at logit > 0 (sklearn's balanced_accuracy_score)."""
    labels, pred = np.asarray(labels) > 0.5, np.asarray(logits) > 0
    recalls = [float(np.mean(pred[labels == c] == c)) for c in (False, True) if np.any(labels == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


@dataclass
class TrainConfig:
    """Hyper-parameters of `train_detector`; defaults are AlignedForensics' (Corvi/Rajan)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0  # Adam's L2 term (FerretNet: 5e-4)
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
    channels_last: bool = True  # memory layout of model and batches (False for depthwise nets)
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

    @classmethod
    def ladeda(cls, **kw: Any) -> "TrainConfig":
        """LaDeDa's (barcavia/RealTime-DeepfakeDetection-in-the-RealWorld README command, train.py,
        options/): Adam lr 2e-4, beta1 0.9, batch 32, 224 crops, early stopping on validation
        accuracy with patience 15 keeping the best model (the official lr decay on a stall is
        x0.9; ours divides by 10, which a CPU budget never reaches). Default memory layout: a
        channels-last training step of the unpadded LaDeDa aborted inside torch on this CPU."""
        base = dict(lr=2e-4, batch_size=32, patience=15, crop=224, drop_rate=0.0, channels_last=False)
        return cls(**{**base, **kw})

    @classmethod
    def ferretnet(cls, **kw: Any) -> "TrainConfig":
        """FerretNet's configs/cfgs/FerretNet-*-Median-3.yaml: Adam lr 2e-4, betas (0.937, 0.999),
        weight decay 5e-4, batch 32, no lr scheduler, 224 crops, 100 epochs; the last model is kept."""
        base = dict(lr=2e-4, betas=(0.937, 0.999), weight_decay=5e-4, batch_size=32, schedule="step", step_factor=1.0,
                    keep="last", max_epochs=100, crop=224, drop_rate=0.0, channels_last=False)
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


def fit(
    model: nn.Module,
    train_data: Iterable,
    val_data: Iterable,
    config: TrainConfig,
    *,
    params: Iterable[nn.Parameter] | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra: Iterator | None = None,
    after_step: Callable[[], None] | None = None,
    train_mode: bool = True,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], None] | None = None,
    label: str = "epoch",
) -> TrainResult:
    """The one training loop: every detector's training and every head refit run through it.

    Steps Adam on `params` (default: every parameter that requires grad) with the BCE of
    `forward(x)` (default: the model) on (x, y) batches, plus the BCE of one batch of `extra` per
    step when given (DEAR's inpainted stream); `after_step` runs after each optimizer step
    (Stay-Positive's clamp). The model is in train mode while stepping when `train_mode`, else in
    eval mode (a linear refit on fixed features). Validation (balanced accuracy at logit > 0,
    through the model itself) runs before training and after each epoch; early stopping or NPR's
    step schedule follow `config`. `snapshot()` / `restore(state)` save and bring back the kept
    weights (default: the whole state dict). Returns the history; the model is left with the kept
    weights (best or last), in eval mode."""
    t0 = time.perf_counter()
    device = config.device
    forward = forward or model
    opt = torch.optim.Adam(list(params) if params is not None else [p for p in model.parameters() if p.requires_grad],
                           lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    snapshot = snapshot or (lambda: copy.deepcopy(model.state_dict()))
    restore = restore or model.load_state_dict
    loss_fn = nn.BCEWithLogitsLoss()
    stopper = EarlyStopping(config.patience, config.delta, config.lr, config.min_lr)
    history: list[dict[str, float]] = []
    best_state, best_score, best_epoch, steps, reason = None, -math.inf, 0, 0, "max_epochs"
    for epoch in range(config.max_epochs + 1):
        losses = []
        if epoch > 0:
            n = config.steps_per_epoch or len(train_data)  # type: ignore[arg-type]
            bar = progress_bar(epoch_batches(train_data, config.steps_per_epoch), config.progress, total=n, desc=f"{label} {epoch}", leave=False)
            for x, y in bar:
                if config.max_steps is not None and steps >= config.max_steps:
                    break
                model.train(train_mode)
                loss = loss_fn(forward(channels_last(x, device, config.channels_last)), torch.as_tensor(y).to(device).float())
                if extra is not None:
                    xe, ye = next(extra)
                    loss = loss + loss_fn(forward(channels_last(xe, device, config.channels_last)), torch.as_tensor(ye).to(device).float())
                opt.zero_grad()
                loss.backward()
                opt.step()
                if after_step is not None:
                    after_step()
                steps += 1
                losses.append(loss.item())
            if config.schedule == "step" and epoch % config.step_every == 0:
                for g in opt.param_groups:
                    g["lr"] *= config.step_factor
        labels, logits = predict(model, val_data, device, config.channels_last)
        score = balanced_accuracy(labels, logits)
        lr = opt.param_groups[0]["lr"]
        history.append({"epoch": epoch, "steps": steps, "lr": lr, "train_loss": float(np.mean(losses)) if losses else float("nan"), "val_bacc": score})
        if config.progress:
            print(f"{label} {epoch}: steps {steps} lr {lr:.1e} loss {history[-1]['train_loss']:.4f} val bacc {score:.4f}", flush=True)
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
                best_state = snapshot()
        if config.max_steps is not None and steps >= config.max_steps:
            stop, reason = True, "max_steps"
        if stop:
            break
    if config.keep == "best" and best_state is not None:
        restore(best_state)
    model.eval()
    return TrainResult(float(best_score), best_epoch, history[-1]["epoch"], steps, reason, time.perf_counter() - t0, history)


def train_detector(model: nn.Module, train_data: Iterable, val_data: Iterable, config: TrainConfig = TrainConfig()) -> TrainResult:
    """Train a whole detector (logits (B,) from (B, 3, H, W)) from `config.seed`: `fit` on every
    trainable parameter, in train mode."""
    torch.manual_seed(config.seed)
    model.to(device=config.device, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    return fit(model, train_data, val_data, config)
