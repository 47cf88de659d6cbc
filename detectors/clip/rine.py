"""RINE (Koutlis & Papadopoulos, ECCV 2024): intermediate CLS tokens of every CLIP block,
weighted per block, under an MLP.

Facts from mever-team/rine @ 9b7fd585, src/models.py (`Model`, `Hook`) and src/utils.py
(`get_our_trained_model`, `get_transforms`):
- forward hooks on every module of `clip.visual` whose name contains "ln_2": the 24 LayerNorms
  before each block's MLP on OpenAI CLIP ViT-L/14; OpenAI CLIP runs sequence-first, so the
  stacked outputs are indexed `[0]` for the CLS token -> g (B, 24, 1024) (our "ln2" tap, which
  picks token 0 in either layout), cast to float;
- `proj1` = Dropout, then nproj x [Linear(1024 first, else d, d), ReLU, Dropout] (Linear layers at
  indices 1, 4, 7, ...); `alpha` (1, 24, d), softmax over the 24 blocks per channel ("TIE");
  z = sum over blocks of softmax(alpha) * proj1(g); `proj2` = Dropout, nproj x [Linear(d, d),
  ReLU, Dropout]; `head` = Linear(d, d), ReLU, Dropout, Linear(d, d), ReLU, Dropout, Linear(d, 1);
  every Dropout p = 0.5 (inactive at test time); the logit is `head(proj2(z))`;
- released settings: 1class (nproj 4, d 1024), 2class (4, 128), 4class (2, 1024), ldm (4, 1024),
  files ckpt/model_{setting}_trainable.pth holding only the trainable tensors (`alpha`,
  `proj1.*`, `proj2.*`, `head.*`; inspected: 2class alpha (1, 24, 128), proj1.1.weight (128, 1024)
  ... head.6.weight (1, 128)), assigned one by one by name; we load them strictly instead, and
  read nproj and d off the shapes;
- test: CenterCrop(224), ToTensor, CLIP mean/std; sigmoid > 0.5 = fake. (Their Synthbuster/LDM
  evaluation averages the logits of TenCrop(224): not reproduced, one center crop is scored.)
- `clip.load` on CUDA keeps OpenAI CLIP in fp16, so the official GPU features are fp16 rounded;
  ours are fp32 (CPU `clip.load` also gives fp32).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from bench.weights import load_state
from detectors.checkpoint import BadCheckpointError, unwrap_checkpoint
from detectors.clip.encoders import Encoder


def _mlp(first: int, width: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Dropout()]
    for i in range(n):
        layers += [nn.Linear(first if i == 0 else width, width), nn.ReLU(), nn.Dropout()]
    return nn.Sequential(*layers)


class RineHead(nn.Module):
    """The trainable part of RINE, parameter names as in the official checkpoints."""

    def __init__(self, blocks: int, width: int, proj_dim: int, nproj: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.randn(1, blocks, proj_dim))
        self.proj1 = _mlp(width, proj_dim, nproj)
        self.proj2 = _mlp(proj_dim, proj_dim, nproj)
        self.head = nn.Sequential(nn.Linear(proj_dim, proj_dim), nn.ReLU(), nn.Dropout(),
                                  nn.Linear(proj_dim, proj_dim), nn.ReLU(), nn.Dropout(), nn.Linear(proj_dim, 1))

    def embedding(self, g: torch.Tensor) -> torch.Tensor:
        """(B, blocks, width) CLS tokens -> (B, proj_dim) z (what RINE's contrastive loss reads)."""
        z = (torch.softmax(self.alpha, dim=1) * self.proj1(g.float())).sum(dim=1)
        return self.proj2(z)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(g)).squeeze(1)


class RineModel(nn.Module):
    """Frozen encoder's "ln2" tap under a RineHead: (B, 3, 224, 224) -> (B,) logits."""

    def __init__(self, encoder: Encoder, head: RineHead):
        super().__init__()
        self.encoder, self.rine = encoder, head
        self.normalization = encoder.normalization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rine(self.encoder.embed(x, "ln2"))


def rine_head(path_or_state: str | os.PathLike | dict, *, blocks: int, width: int, where: str | None = None) -> RineHead:
    """A RineHead from a *_trainable.pth (or its state), its nproj and d read off the shapes and
    checked against the encoder's `blocks` and `width`."""
    if isinstance(path_or_state, dict):
        where, obj = where or "checkpoint", path_or_state
    else:
        where, obj = where or str(path_or_state), load_state(path_or_state)
    state = unwrap_checkpoint(obj, where, "alpha")
    try:
        alpha = state["alpha"]
        nproj = len([k for k in state if k.startswith("proj1.") and k.endswith(".weight")])
        first = state["proj1.1.weight"]
    except KeyError as exc:
        raise BadCheckpointError(f"{where}: not a RINE checkpoint (missing {exc.args[0]!r})") from None
    if alpha.dim() != 3 or alpha.shape[0] != 1:
        raise BadCheckpointError(f"{where}: alpha has shape {tuple(alpha.shape)}, expected (1, blocks, d)")
    if alpha.shape[1] != blocks or first.shape[1] != width:
        raise BadCheckpointError(f"{where}: made for {alpha.shape[1]} blocks of width {first.shape[1]}, but the backbone has "
                                 f"{blocks} blocks of width {width}")
    with torch.device("meta"):
        head = RineHead(blocks, width, int(alpha.shape[2]), nproj)
    try:
        head.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise BadCheckpointError(f"{where}: does not match RINE (nproj {nproj}, d {alpha.shape[2]}): "
                                 f"{str(exc).splitlines()[0][:300]}") from None
    return head.eval()
