"""The one linear-head refit shared by Stay-Positive (Corvi+, Rajan+) and DEAR.

Stay-Positive (AniSundar18/AlignedForensics training_code/utils/training.py, commit 0d707b14;
flags `--fix_backbone --stay_positive clamp --final_dropout 0.0` in script_train.sh): backbone
frozen, fc weight and bias set to zero, Adam(lr 1e-4, betas (0.9, 0.999)) on fc only, fc.weight
clamped to >= 0 after every optimizer step (bias free), validation and early stopping as in
training (patience 5, delta 0.001, lr / 10, stop below 1e-6), best weights kept.
DEAR (dahyedahye/dear pipelines/corvi_mask_gated.py, dear/detector/corvi_mask_gated_detector.py)
runs the same loop on a channel-gated model, adding per step the BCE of one batch of inpainted
images (`extra_loader`, cycled) to the BCE of the main batch, without the clamp.

BatchNorm: both official loops let BN drift. Stay-Positive calls model.train() at every step;
DEAR's `freeze_backbone` puts BN in eval once ("keep BN in eval"), but its pipeline calls
`detector.train()`, i.e. `model.train()`, at the start of every epoch, which undoes that. So in
both, the frozen backbone's BN running statistics keep changing during the "linear" refit and its
features use batch statistics. `freeze_bn=True` (our default, a deliberate deviation) keeps BN
in eval mode, so the refit really is linear on fixed features: the features that RAD dissected,
in eval mode, are the ones the head is fitted on. `freeze_bn=False` reproduces the official drift
(`--bn-drift` on the command line).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from detectors.resnet import GatedResNet
from detectors.training import EarlyStopping, TrainResult, balanced_accuracy, channels_last, epoch_batches, predict, progress_bar

RefitResult = TrainResult  # same record: history of (epoch, steps, lr, train_loss, val_bacc)


def _cycle(loader: Iterable) -> Iterator:
    while True:
        yield from loader


def refit_head(
    model: GatedResNet,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    nonneg: bool = False,
    gate: torch.Tensor | None = None,
    extra_loader: Iterable | None = None,
    freeze_bn: bool = True,
    lr: float = 1e-4,
    patience: int = 5,
    delta: float = 1e-3,
    min_lr: float = 1e-6,
    max_epochs: int = 1000,
    steps_per_epoch: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> RefitResult:
    """Re-learn `model.fc` from zero on a frozen backbone; loaders yield (images, labels).

    `gate` (C,) is written into `model.gate` first; `steps_per_epoch` (default one pass over
    `train_loader`) sets how many steps run between validations. Validation (balanced accuracy at logit > 0)
    runs before training and after each epoch; the best head (and, with freeze_bn=False, the
    BN statistics of that moment) is restored at the end. Backbone `requires_grad` flags are
    restored too, so the model is left as found except for head, gate and (maybe) BN stats."""
    t0 = time.perf_counter()
    model.to(device=device, memory_format=torch.channels_last)
    if gate is not None:
        model.gate.set_(gate)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    fc = model.fc
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.zero_()
    for p in fc.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(fc.parameters(), lr=lr, betas=(0.9, 0.999))
    loss_fn = nn.BCEWithLogitsLoss()
    stopper = EarlyStopping(patience, delta, lr, min_lr)
    extra = _cycle(extra_loader) if extra_loader is not None else None
    history: list[dict[str, float]] = []
    best_state, best_epoch, steps, reason = None, 0, 0, "max_epochs"

    def logits(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pooled = model.pooled(channels_last(x, device))
        return fc(pooled).squeeze(1)  # no dropout: Stay-Positive and DEAR refit with dropout 0

    try:
        for epoch in range(max_epochs + 1):
            losses = []
            if epoch > 0:
                n = steps_per_epoch or len(train_loader)
                for x, y in progress_bar(epoch_batches(train_loader, steps_per_epoch), progress, total=n, desc=f"head epoch {epoch}", leave=False):
                    model.train(not freeze_bn)
                    loss = loss_fn(logits(x), torch.as_tensor(y).float().to(device))
                    if extra is not None:
                        xe, ye = next(extra)
                        loss = loss + loss_fn(logits(xe), torch.as_tensor(ye).float().to(device))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if nonneg:
                        with torch.no_grad():
                            fc.weight.clamp_(min=0)
                    steps += 1
                    losses.append(loss.item())
            labels, z = predict(model, val_loader, device)
            score = balanced_accuracy(labels, z)
            history.append({"epoch": epoch, "steps": steps, "lr": opt.param_groups[0]["lr"],
                            "train_loss": float(np.mean(losses)) if losses else math.nan, "val_bacc": score})
            if progress:
                print(f"head epoch {epoch}: lr {history[-1]['lr']:.1e} loss {history[-1]['train_loss']:.4f} val bacc {score:.4f}", flush=True)
            d = stopper.step(score)
            if d.improved:
                best_state, best_epoch = copy.deepcopy(model.state_dict()), epoch
            for g in opt.param_groups:
                g["lr"] = d.lr
            if d.stop:
                reason = "lr below min_lr"
                break
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best = float(stopper.best_score) if stopper.best_score is not None else math.nan
    return RefitResult(best, best_epoch, history[-1]["epoch"], steps, reason, time.perf_counter() - t0, history)
