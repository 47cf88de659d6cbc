"""DEAR checkpoints in the official format, and base checkpoints loaded for dissection.

Official format (dahyedahye/dear, `dear/detector/corvi_mask_gated_detector.py`, `save`/`load`):
``{"model": state_dict}`` of a GatedResNet, i.e. keys ``backbone.<resnet keys>`` (including
``backbone.fc.weight`` [1, C] and ``backbone.fc.bias`` [1]) plus the buffer ``gate.gate`` [C].
Ours are written with plain tensors only, so `torch.load(weights_only=True)` reads them, and
read through `bench.weights.load_state`. Parsing of every accepted layout lives in
`detectors.resnet.load_resnet_checkpoint`; this module only checks and writes the DEAR layout.
"""
from __future__ import annotations

from pathlib import Path

import torch

from bench.api import BenchError
from bench.weights import load_state, save_state
from detectors.gates import gate_problem
from detectors.resnet import GatedResNet, load_resnet_checkpoint

GATE_KEY = "gate.gate"


class DearCheckpointError(BenchError):
    pass


def dear_state(model: GatedResNet) -> dict[str, dict[str, torch.Tensor]]:
    """The official checkpoint dict: {"model": {"backbone.*": ..., "gate.gate": [C]}}."""
    state: dict[str, torch.Tensor] = {}
    for key, value in model.backbone.state_dict().items():
        state[f"backbone.{key}"] = value.detach().cpu().clone().contiguous()
    gate = model.gate.gate.detach().cpu().float().clone().reshape(-1)
    if gate.numel() != model.num_features:
        raise DearCheckpointError(f"gate has {gate.numel()} channels, model has {model.num_features}")
    state[GATE_KEY] = gate
    for k in ("backbone.fc.weight", "backbone.fc.bias"):
        if k not in state:
            raise DearCheckpointError(f"model has no {k}: not a ResNet with a 1-logit fc head")
    return {"model": state}


def save_dear(model: GatedResNet, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".pth":
        raise DearCheckpointError(f"{path}: DEAR checkpoints are .pth files (official format)")
    save_state(dear_state(model), path)
    return path


def check_dear_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The inner state dict of a DEAR checkpoint, after checking its layout."""
    raw = load_state(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise DearCheckpointError(f"{path}: expected {{'model': state_dict}} (official DEAR format)")
    state = raw["model"]
    if GATE_KEY not in state:
        raise DearCheckpointError(f"{path}: no '{GATE_KEY}' entry; this is a base checkpoint, not a DEAR one")
    stray = [k for k in state if k != GATE_KEY and not k.startswith("backbone.")]
    if stray:
        raise DearCheckpointError(f"{path}: unexpected keys {stray[:5]} (DEAR keys are backbone.* and {GATE_KEY})")
    g = state[GATE_KEY]
    if not isinstance(g, torch.Tensor) or g.dim() != 1:
        shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise DearCheckpointError(f"{path}: '{GATE_KEY}' must be a 1-D tensor of 0/1 values, got {shape}")
    problem = gate_problem(g)
    if problem:
        raise DearCheckpointError(f"{path}: '{GATE_KEY}': {problem}")
    return state


def load_dear(path: str | Path) -> GatedResNet:
    """A GatedResNet with its DEAR gate from an official-format checkpoint (the file is read once)."""
    state = check_dear_file(path)
    model = load_resnet_checkpoint({"model": state}, where=str(path))
    if not torch.equal(model.gate.gate.detach().cpu().float(), state[GATE_KEY].float()):
        raise DearCheckpointError(f"{path}: gate was not restored by load_resnet_checkpoint")
    return model


def load_base(path: str | Path) -> GatedResNet:
    """A base (Corvi/Rajan-format) checkpoint as a GatedResNet with the gate all ones.

    The official loader prefixes "backbone." when missing and keeps the gate at ones
    (`CorviMaskGatedDetector.load`); a gate found in the file is reset, since DEAR re-derives it.
    """
    model = load_resnet_checkpoint(path)
    with torch.no_grad():
        model.gate.gate.fill_(1.0)
    return model
