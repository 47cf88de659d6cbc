"""The one linear-head refit on a frozen backbone: Stay-Positive, DEAR and linear probes call it.

It works on any `bench.api.LinearHeadModel` (a ResNet's pooled layer4 features, a CLIP
embedding, a timm model's pre-logits): the backbone is frozen, the head starts from zero, and
the options are the methods' differences.

Stay-Positive (AniSundar18/AlignedForensics training_code/utils/training.py, commit 0d707b14;
flags `--fix_backbone --stay_positive clamp --final_dropout 0.0` in script_train.sh): backbone
frozen, head weight and bias set to zero, Adam(lr 1e-4, betas (0.9, 0.999)) on the head only, its
weight clamped to >= 0 after every optimizer step (bias free), validation and early stopping as
in training (patience 5, delta 0.001, lr / 10, stop below 1e-6), best weights kept: `nonneg=True`.
DEAR (dahyedahye/dear pipelines/corvi_mask_gated.py, dear/detector/corvi_mask_gated_detector.py)
runs the same loop on a channel-gated model, adding per step the BCE of one batch of inpainted
images (`extra_loader`, cycled) to the BCE of the main batch, without the clamp: `gate=...`.

BatchNorm: both official loops let BN drift. Stay-Positive calls model.train() at every step;
DEAR's `freeze_backbone` puts BN in eval once ("keep BN in eval"), but its pipeline calls
`detector.train()`, i.e. `model.train()`, at the start of every epoch, which undoes that. So in
both, the frozen backbone's BN running statistics keep changing during the "linear" refit and its
features use batch statistics. `freeze_bn=True` (our default, a deliberate deviation) keeps the
model in eval mode, so the refit really is linear on fixed features: the features that RAD
dissected, in eval mode, are the ones the head is fitted on. `freeze_bn=False` reproduces the
official drift (`--bn-drift` on the command line).
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from bench.api import BenchError, LinearHeadModel
from detectors.fit import TrainResult
from detectors.gates import gate_problem

RefitResult = TrainResult  # same record: history of (epoch, steps, lr, train_loss, val_bacc)


class GateError(BenchError):
    """A feature gate that does not fit the model's features or is not a 0/1 vector."""


class FeatureGate(nn.Module):
    """Multiplies features by a fixed 0/1 vector along dim 1: channels of a (B, C, H, W) map or
    entries of a (B, D) embedding. A buffer, saved as "<module name>.gate" ("gate.gate" in
    DEAR's checkpoints); all ones is the plain detector, DEAR prunes by setting entries to 0.
    Since the gate is per channel and pooling is a mean, gating before or after pooling is
    the same."""

    def __init__(self, num_features: int):
        super().__init__()
        self.register_buffer("gate", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate.view(1, -1, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def set_(self, gate: Any) -> None:
        """Copy `gate` (D values, each exactly 0 or 1) into the buffer, on the buffer's device.

        A gate keeps or drops features; anything else (0.5, NaN) would refit a head that
        `dear.checkpoint.load_dear` then refuses, so it is refused here, before the refit."""
        gate = torch.as_tensor(np.asarray(gate) if not isinstance(gate, torch.Tensor) else gate, dtype=self.gate.dtype)
        gate = gate.detach().cpu().reshape(-1)
        if gate.numel() != self.gate.numel():
            raise GateError(f"gate has {gate.numel()} entries but the model's gated features have {self.gate.numel()}")
        problem = gate_problem(gate)
        if problem:
            raise GateError(problem)
        self.gate.copy_(gate.to(self.gate.device))


def _cycle(loader: Iterable) -> Iterator:
    while True:
        yield from loader


def refit_head(
    model: LinearHeadModel,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    nonneg: bool = False,
    gate: Any = None,
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
    """Re-learn `model.head` from zero on a frozen backbone; loaders yield (images, labels).

    `gate` (D,) is written into `model.gate` first; `nonneg` clamps the head's weight to >= 0
    after every step (Stay-Positive); `extra_loader` adds the BCE of one of its batches per step
    (DEAR's inpainted stream); `steps_per_epoch` (default one pass over `train_loader`) sets how
    many steps run between validations. Validation (balanced accuracy at logit > 0) runs before
    training and after each epoch; the best head (and, with freeze_bn=False, the BatchNorm
    statistics of that moment) is restored at the end. Backbone `requires_grad` flags are
    restored too, so the model is left as found except for head, gate and (maybe) BN stats."""
    if not isinstance(model, LinearHeadModel):
        raise BenchError(f"refit_head needs a frozen backbone under a linear head (bench.api.LinearHeadModel), "
                         f"not {type(model).__name__}")
    from detectors.fit import TrainConfig, fit

    model.to(device=device, memory_format=torch.channels_last)
    if gate is not None:
        model.gate.set_(gate)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    head: nn.Linear = model.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    for p in head.parameters():
        p.requires_grad_(True)

    def logits(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pooled = model.pooled(x)
        return head(pooled).squeeze(1)  # no dropout: Stay-Positive and DEAR refit with dropout 0

    def clamp() -> None:
        with torch.no_grad():
            head.weight.clamp_(min=0)

    # What the refit can change: the head, and with BN drifting the whole model's statistics.
    kept: nn.Module = head if freeze_bn else model  # type: ignore[assignment]
    config = TrainConfig(lr=lr, patience=patience, delta=delta, min_lr=min_lr, max_epochs=max_epochs,
                         steps_per_epoch=steps_per_epoch, device=device, progress=progress)
    try:
        return fit(model, train_loader, val_loader, config, params=head.parameters(), forward=logits,
                   extra=_cycle(extra_loader) if extra_loader is not None else None, after_step=clamp if nonneg else None,
                   train_mode=not freeze_bn, snapshot=lambda: copy.deepcopy(kept.state_dict()), restore=kept.load_state_dict,
                   label="head epoch")
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
