"""Reading official checkpoints: the wrappings their loaders accept, and strict loading into a
model built on the meta device. Shared by every family of `detectors/` (ResNets, NPR, the CLIP
heads), so each official wrapping is handled in one place."""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

import torch
from torch import nn

from bench.api import BenchError


M = TypeVar("M", bound=nn.Module)


class BadCheckpointError(BenchError):
    """A weights file was read but does not hold the network it is supposed to."""


def unwrap_checkpoint(obj: Any, where: str, marker: str) -> dict[str, torch.Tensor]:
    """The state dict inside an official checkpoint, in the order the official loaders look.

    DMimageDetection get_method_here.def_model and ClipBased/AlignedForensics load_weights try
    'model' (dropping a DataParallel 'module.' prefix), then 'state_dict', then 'net', then a
    raw state dict. `marker` is a key a raw state dict of this network must hold."""
    if not isinstance(obj, Mapping):
        raise BadCheckpointError(f"{where}: expected a state dict, found {type(obj).__name__}")
    for key in ("model", "state_dict", "net"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    else:
        if not any(k == marker or k.endswith("." + marker) for k in obj):
            shown = ", ".join(sorted(map(str, obj))[:8])
            raise BadCheckpointError(f"{where}: no 'model', 'state_dict' or 'net' entry and no {marker!r} key (keys: {shown})")
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BadCheckpointError(f"{where}: entries that are not tensors: {', '.join(bad[:5])}")
    return state


def assign_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Strictly load `state` into a model built on the meta device (no wasted random init),
    as float32. Checkpoints saved before torch 0.4.1 lack BatchNorm `num_batches_tracked`,
    which eval does not use: those are filled with 0 rather than refusing the file."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    for k in model.state_dict():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros((), dtype=torch.long)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise BadCheckpointError(f"{where}: does not match {type(model).__name__}: {str(exc).splitlines()[0][:300]} ...") from None
    return model.eval()


def load_strict(state: dict[str, torch.Tensor], where: str, network: str, read_arch: Callable[[dict[str, torch.Tensor]], Any],
                make: Callable[[Any], M]) -> M:
    """The network of an unwrapped state dict: `read_arch(state)` reads its depths and widths off
    the shapes (raising KeyError for a missing key, ValueError for a shape that is not this
    network's), `make(arch)` builds it on the meta device, and `assign_state` loads it strictly.
    Either failure is a BadCheckpointError saying the file is not a `network` checkpoint."""
    try:
        arch = read_arch(state)
    except KeyError as exc:
        raise BadCheckpointError(f"{where}: not {network} checkpoint (missing {exc.args[0]!r})") from None
    except ValueError as exc:
        raise BadCheckpointError(f"{where}: not {network} checkpoint ({exc})") from None
    with torch.device("meta"):
        model = make(arch)
    return assign_state(model, state, where)
