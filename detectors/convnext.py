"""timm ConvNeXt trunks rebuilt from a checkpoint's shapes: DRCT's ConvNeXt-B and AIDE's
OpenCLIP ConvNeXt-XXL keep timm's parameter names (stem.0/1, stages.<i>.downsample,
stages.<i>.blocks.<j>.{gamma, conv_dw, norm, mlp.fc1, mlp.fc2}, head.norm, head.fc), so one
reader of depths and widths serves both."""
from __future__ import annotations

from typing import Mapping

import torch


def convnext_shape(state: Mapping[str, torch.Tensor], prefix: str = "") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(depths, dims) of the ConvNeXt whose keys start with `prefix`; KeyError if there is none."""
    depths, dims = [], []
    i = 0
    while f"{prefix}stages.{i}.blocks.0.conv_dw.weight" in state:
        blocks = {k[len(f"{prefix}stages.{i}.blocks."):].split(".", 1)[0] for k in state if k.startswith(f"{prefix}stages.{i}.blocks.")}
        depths.append(len(blocks))
        dims.append(int(state[f"{prefix}stages.{i}.blocks.0.conv_dw.weight"].shape[0]))
        i += 1
    if not depths:
        raise KeyError(f"{prefix}stages.0.blocks.0.conv_dw.weight")
    return tuple(depths), tuple(dims)


def build_convnext(depths: tuple[int, ...], dims: tuple[int, ...], num_classes: int, norm_eps: float | None = None):
    """A timm ConvNeXt (LayerNorm eps 1e-6 unless `norm_eps`; timm's convnext_xxlarge uses 1e-5)."""
    from timm.models.convnext import ConvNeXt

    kwargs = {} if norm_eps is None else {"norm_eps": norm_eps}
    return ConvNeXt(depths=depths, dims=dims, num_classes=num_classes, **kwargs)
