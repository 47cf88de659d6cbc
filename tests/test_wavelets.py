"""The torch Haar transform (WaRPAD's high-frequency part) against a 2-level Haar computed by hand."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detectors.wavelets import haar_dwt2, haar_highpass, haar_idwt2

# One nonzero pixel per 2x2 block, each in another corner, so every band's sign is exercised.
X = torch.tensor([[1.0, 0, 0, 0],
                  [0, 0, 0, 2],
                  [0, 4, 0, 0],
                  [0, 0, 8, 0]]).view(1, 1, 4, 4)  # fmt: skip


def test_two_level_haar_by_hand():
    """Blocks [[a, b], [c, d]]: LL (a+b+c+d)/2, bands (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2.
    Level 1: a=1 (top-left) -> all .5; d=2 -> (1, -1, -1, 1); b=4 -> (2, 2, -2, -2);
    c=8 -> (4, -4, 4, -4). Level 2 on LL1 = [[.5, 1], [2, 4]]: LL 3.75, bands -2.25, -1.25, .75."""
    yl, yh = haar_dwt2(X, levels=2)
    assert yl.shape == (1, 1, 1, 1) and yh[0].shape == (1, 1, 3, 2, 2) and yh[1].shape == (1, 1, 3, 1, 1)
    assert yl.item() == pytest.approx(3.75)
    lh, hl, hh = yh[0][0, 0]
    assert lh.tolist() == [[0.5, -1.0], [2.0, -4.0]]
    assert hl.tolist() == [[0.5, -1.0], [-2.0, 4.0]]
    assert hh.tolist() == [[0.5, 1.0], [-2.0, -4.0]]
    assert yh[1][0, 0, :, 0, 0].tolist() == pytest.approx([-2.25, -1.25, 0.75])
    # orthonormal: the energy is kept (1 + 4 + 16 + 64 = 85)
    energy = yl.pow(2).sum() + sum(b.pow(2).sum() for b in yh)
    assert energy.item() == pytest.approx(85.0)
    # zeroing the one low-pass coefficient removes the 4x4 mean (15/16) and nothing else
    torch.testing.assert_close(haar_highpass(X, levels=2), X - 15 / 16)


def test_inverse_and_closed_form_on_a_patch():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    yl, yh = haar_dwt2(x, levels=2)
    torch.testing.assert_close(haar_idwt2(yl, yh), x)
    # Haar J=2 with the low-pass zeroed = x minus its 4x4 block means (checked against
    # pytorch_wavelets 1.3.0 in the facts sheet)
    blockmean = F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")
    torch.testing.assert_close(haar_highpass(x, levels=2), x - blockmean)
    # a None band set counts as zeros, as in pytorch_wavelets' DWTInverse
    torch.testing.assert_close(haar_idwt2(yl, [None, yh[1]]), haar_idwt2(yl, [torch.zeros_like(yh[0]), yh[1]]))


def test_sizes_not_divisible_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        haar_dwt2(torch.zeros(1, 1, 6, 8), levels=2)
