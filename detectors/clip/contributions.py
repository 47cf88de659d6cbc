"""Direct contributions to the CLS token: the residual stream written as a sum over the
embedding, every attention head of every block, and every MLP (Gandelsman, Efros & Steinhardt,
ICLR 2024, "Interpreting CLIP's Image Representation via Text-Based Decomposition";
yossigandelsman/clip_text_span prs_hook.py @ 4c1ae4a4).

In a pre-LN ViT the CLS residual after the last block is exactly

    r = e + sum_l (sum_h a_{l,h} + m_l)

with e the CLS input of block 0 (after ln_pre), a_{l,h} head h's attention output at the CLS
position through its slice of the output projection (the output bias shared evenly by the H
heads, and any layer scale applied), and m_l the MLP output. `decompose` reads e, the block
inputs and the MLP inputs off the library's own forward (hooks on the LayerNorms) and recomputes
only the per-head attention at the CLS query, so `Contributions.total()` reproduces the "residual"
tap of `Encoder.embed` (tested to 1e-5 on a tiny random ViT).

`project` maps every term through the final LayerNorm and the image projection the way
prs_hook.py does: the LayerNorm is linear once its standard deviation is fixed at that of the
whole sum, the mean and the LayerNorm bias are shared evenly among the 2L+1 terms (each head
getting 1/H of its layer's share), so the projected terms sum to the image embedding exactly.
Their token-level split (prs_hook keeps one term per source token) is summed over tokens here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from detectors.clip.encoders import BlockView, Encoder


@dataclass
class Contributions:
    """Terms whose sum is the CLS residual (or, after `project`, the embedding)."""

    embedding: torch.Tensor  # (B, D)
    heads: torch.Tensor  # (B, L, H, D)
    mlps: torch.Tensor  # (B, L, D)

    def total(self) -> torch.Tensor:
        return self.embedding + self.heads.sum(dim=(1, 2)) + self.mlps.sum(dim=1)

    def attention(self) -> torch.Tensor:
        """(B, L, D) attention output per block (its heads summed)."""
        return self.heads.sum(dim=2)


def head_outputs(block: "BlockView", h: torch.Tensor) -> torch.Tensor:
    """(B, H, D): each head's attention output at the CLS query, through its slice of the
    output projection, plus 1/H of the output bias, after the block's layer scale.
    `h` is the (B, N, D) output of the block's first LayerNorm."""
    b, n, d = h.shape
    heads = block.heads
    hd = d // heads
    q = block.linear("q", h[:, 0]).view(b, heads, hd)
    k = block.linear("k", h).view(b, n, heads, hd)
    v = block.linear("v", h).view(b, n, heads, hd)
    weights = (torch.einsum("bhc,bnhc->bhn", q, k) * hd**-0.5).softmax(dim=-1)
    per_head = torch.einsum("bhn,bnhc->bhc", weights, v)  # (B, H, hd)
    out = torch.einsum("bhc,ehc->bhe", per_head, block.out.weight.view(d, heads, hd))
    if block.out.bias is not None:
        out = out + block.out.bias / heads
    return block.scale1(out)


def decompose(encoder: "Encoder", x: torch.Tensor) -> Contributions:
    """The CLS residual of `x` (B, 3, H, W) split into embedding, per-head and MLP terms."""
    from detectors.clip.encoders import capture

    blocks = encoder.blocks
    with capture([b.ln1 for b in blocks]) as ln1, capture([b.ln2 for b in blocks]) as ln2, \
            capture([encoder.adapter.final_norm]) as (final,):
        encoder.adapter.forward(x)
    cls_in = [encoder.token0(s.input) for s in ln1]  # block inputs at CLS
    mid = [encoder.token0(s.input) for s in ln2]  # block input + attention output, at CLS
    last = final.input[:, 0] if final.input.dim() == 3 else final.input
    outs = cls_in[1:] + [last]
    heads = torch.stack([head_outputs(b, encoder.tokens(s.output)) for b, s in zip(blocks, ln1)], dim=1)
    mlps = torch.stack([o - m for o, m in zip(outs, mid)], dim=1)
    return Contributions(cls_in[0], heads, mlps)


def project(encoder: "Encoder", c: Contributions, *, through_projection: bool = True) -> Contributions:
    """Every term through the final LayerNorm, linearised at the total's statistics, and the
    image projection (when there is one and `through_projection`), sharing the mean and the
    LayerNorm bias evenly as prs_hook.py does: the projected terms sum to the "embed" tap (to the
    "cls" tap without the projection)."""
    norm = encoder.adapter.final_norm
    total = c.total()
    mean = total.mean(dim=-1, keepdim=True)
    std = (total.var(dim=-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
    n_layers, n_heads = c.heads.shape[1:3]
    terms = 2 * n_layers + 1
    proj = encoder.adapter.projection if through_projection else None

    def through(t: torch.Tensor, share: int) -> torch.Tensor:
        extra = (1,) * (t.dim() - 2)
        m, s = mean.view(-1, *extra, 1), std.view(-1, *extra, 1)
        y = norm.weight * (t - m / share) / s + norm.bias / share
        return y @ proj if proj is not None else y

    return Contributions(through(c.embedding, terms), through(c.heads, terms * n_heads), through(c.mlps, terms))
