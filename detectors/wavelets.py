"""The orthonormal 2-D Haar wavelet transform in torch (WaRPAD's high-frequency direction).

WaRPAD (sungikchoi/WaRPAD @ 59f2b382171e579f2b7e180165b327f10332152b, `final_imgn.py`) takes
`pytorch_wavelets.DWTForward(J=2, wave='haar')`, zeroes the low-pass band and inverts with
`DWTInverse(wave='haar')`. We write the transform here instead of depending on
`pytorch-wavelets` 1.3.0: its last commit is from 2022 (fbcotter/pytorch_wavelets @
9a0c507f04f43c5397e384bb6be8340169b2fd9a), it needs PyWavelets at run time without declaring it,
and its package import needs `pkg_resources` (setuptools). Its license (MIT) would have allowed it.

Conventions are those of pytorch_wavelets with PyWavelets' 'haar' filters (dec_lo = [1, 1]/√2,
dec_hi = [-1, 1]/√2), measured there: on each 2x2 block [[a, b], [c, d]],

    LL = (a + b + c + d) / 2    band 0 = (a + b - c - d) / 2  (top minus bottom)
    band 1 = (a - b + c - d) / 2  (left minus right)    band 2 = (a - b - c + d) / 2

`haar_dwt2` returns `(yl, yh)` laid out as `DWTForward` does: `yh[j]` is (N, C, 3, H/2^(j+1),
W/2^(j+1)), j = 0 the finest level. For sides divisible by 2^levels every padding mode of
pytorch_wavelets gives these same numbers (Haar needs no padding there); other sizes are refused.
"""
from __future__ import annotations

import torch


def _check(x: torch.Tensor, levels: int) -> None:
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    h, w = x.shape[-2:]
    step = 2**levels
    if h % step or w % step:
        raise ValueError(f"a {levels}-level Haar transform needs sides divisible by {step}, got {h}x{w}")


def haar_dwt2(x: torch.Tensor, levels: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(N, C, H, W) -> (yl, [yh_0, ..., yh_{levels-1}]), the orthonormal Haar analysis."""
    _check(x, levels)
    yh = []
    ll = x
    for _ in range(levels):
        a, b = ll[..., 0::2, 0::2], ll[..., 0::2, 1::2]
        c, d = ll[..., 1::2, 0::2], ll[..., 1::2, 1::2]
        yh.append(torch.stack(((a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2), dim=-3))
        ll = (a + b + c + d) / 2
    return ll, yh


def haar_idwt2(yl: torch.Tensor, yh: list[torch.Tensor | None]) -> torch.Tensor:
    """The inverse of `haar_dwt2`; a `None` band set counts as zeros (as in `DWTInverse`)."""
    ll = yl
    for bands in reversed(yh):
        if bands is None:
            bands = ll.new_zeros((*ll.shape[:-2], 3, *ll.shape[-2:]))
        lh, hl, hh = bands.unbind(dim=-3)
        out = ll.new_empty((*ll.shape[:-2], 2 * ll.shape[-2], 2 * ll.shape[-1]))
        out[..., 0::2, 0::2] = (ll + lh + hl + hh) / 2
        out[..., 0::2, 1::2] = (ll + lh - hl - hh) / 2
        out[..., 1::2, 0::2] = (ll - lh + hl - hh) / 2
        out[..., 1::2, 1::2] = (ll - lh - hl + hh) / 2
        ll = out
    return ll


def haar_highpass(x: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """What is left of `x` when the level-`levels` low-pass band is zeroed: WaRPAD's
    `idwt((zeros_like(yl), yh))`. For Haar this equals x minus its 2^levels block means."""
    yl, yh = haar_dwt2(x, levels)
    return haar_idwt2(torch.zeros_like(yl), yh)
