"""AEROBLADE's distances against references computed another way: the lpips package (LPIPS,
on a random VGG trunk: no download), scikit-image (PSNR, SSIM) and a float64 numpy/scipy MS-SSIM."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.api import BenchError
from detectors.distances import LPIPS_NAMES, LpipsVgg, MsSsim, Psnr, Ssim, similarity_from_name


def _pair(shape=(2, 3, 64, 48), seed=0, noise=0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 8-bit images in [0, 1], the second a noisy copy (positively correlated everywhere)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some local structure
    y = (x + noise * torch.randn(shape, generator=g)).clamp(0, 1)
    return (x * 255).round() / 255, (y * 255).round() / 255


@pytest.fixture(scope="module")
def lpips_reference():
    """lpips' own LPIPS on a random VGG trunk, with its trunk and linear layers."""
    lpips = pytest.importorskip("lpips")
    torch.manual_seed(0)
    model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)  # random trunk: no download
    # the trunk in torchvision's vgg16().features layout ("0.weight", ...) and the linear layers
    features = {k: v for i in range(1, 6) for k, v in getattr(model.net, f"slice{i}").state_dict().items()}
    lins = {k: v for k, v in model.state_dict().items() if k.startswith("lin")}
    return model, features, lins


@pytest.mark.filterwarnings("ignore::UserWarning")  # lpips calls torchvision's deprecated `pretrained=`
def test_lpips_layers_match_the_lpips_package(lpips_reference):
    """Layer k >= 1 is lpips' spatial average of lin_{k-1} (the map AEROBLADE keeps un-upsampled);
    layer 0 the mean of its spatial (upsampled, summed) output; negated."""
    model, features, lins = lpips_reference
    x, y = _pair()
    with torch.no_grad():
        _, per_layer = model(x, y, retPerLayer=True, normalize=True)
        model.spatial = True  # read at each call: the upsampled maps, summed
        try:
            total = model(x, y, normalize=True).mean(dim=(1, 2, 3))
        finally:
            model.spatial = False
        for layer in range(6):
            want = -(total if layer == 0 else per_layer[layer - 1].flatten())
            got = LpipsVgg(layer, features, lins)(x, y)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert (got < 0).all(), "negated: a distance becomes a similarity"
    assert torch.allclose(LpipsVgg(2, features, lins)(x, x), torch.zeros(2)), "an image is at distance 0 from itself"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lpips_trunk_stops_at_the_layer_and_loads_strictly(lpips_reference):
    _, features, lins = lpips_reference
    assert len(LpipsVgg(2, features, lins).slices) == 2 and len(LpipsVgg(0, features, lins).slices) == 5
    broken = dict(features)
    broken.pop("28.bias")
    with pytest.raises(RuntimeError, match="28.bias"):
        LpipsVgg(2, broken, lins)
    assert similarity_from_name("lpips_vgg_3", (features, lins)).name == "lpips_vgg_3"
    with pytest.raises(ValueError, match="VGG16"):
        similarity_from_name("lpips_vgg_2")
    assert set(LPIPS_NAMES) == {f"lpips_vgg_{i}" for i in range(6)}


def _uint8(t: torch.Tensor) -> np.ndarray:
    return (t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_psnr_matches_scikit_image():
    x, y = _pair()
    want = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0) for a, b in zip(x.double(), y.double())]
    np.testing.assert_allclose(Psnr()(x, y).numpy(), want, atol=1e-3)  # pyiqa adds 1e-8 to the MSE


def test_ssim_matches_scikit_image():
    """pyiqa's SSIM = scikit-image's with an 11x11 Gaussian (sigma 1.5), population covariance,
    data range 255, the borders cropped; RGB for `ssimc`, the rounded YIQ luma for `ssim`."""
    x, y = _pair(noise=0.08)
    a, b = _uint8(x), _uint8(y)
    opts = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    rgb = [structural_similarity(p.astype(np.float64), q.astype(np.float64), channel_axis=-1, **opts) for p, q in zip(a, b)]
    np.testing.assert_allclose(Ssim(luma=False)(x, y).numpy(), rgb, atol=1e-5)

    def luma(t):
        return np.round((t.astype(np.float64) / 255 @ np.array([0.299, 0.587, 0.114])) * 255)

    grey = [structural_similarity(luma(p), luma(q), **opts) for p, q in zip(a, b)]
    np.testing.assert_allclose(Ssim(luma=True)(x, y).numpy(), grey, atol=1e-5)
    torch.testing.assert_close(Ssim()(x, x), torch.ones(2))


def _ms_ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM as pyiqa defines it, in float64 with scipy: luma x255 rounded; per scale the
    Gaussian-window SSIM 'valid', cs clamped at 0; 2x2 average pooling that pads odd sides
    with a zero row/column on both ends (counted in the mean)."""
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    a = np.round((x.transpose(1, 2, 0) @ np.array([0.299, 0.587, 0.114])) * 255)
    b = np.round((y.transpose(1, 2, 0) @ np.array([0.299, 0.587, 0.114])) * 255)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cs_list = []
    for _ in range(5):
        def blur(t):
            return ndimage.gaussian_filter(t, 1.5, truncate=3.5)[5:-5, 5:-5]

        mu1, mu2 = blur(a), blur(b)
        s1, s2, s12 = blur(a * a) - mu1**2, blur(b * b) - mu2**2, blur(a * b) - mu1 * mu2
        cs = np.maximum((2 * s12 + c2) / (s1 + s2 + c2), 0)
        ssim = ((2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1)) * cs
        cs_list.append(cs.mean())

        def pool(t):
            ph, pw = t.shape[0] % 2, t.shape[1] % 2
            t = np.pad(t, ((ph, ph), (pw, pw)))
            h, w = (t.shape[0] // 2) * 2, (t.shape[1] // 2) * 2
            return t[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

        a, b = pool(a), pool(b)
    return float(np.prod(np.array(cs_list[:-1]) ** weights[:-1]) * ssim.mean() ** weights[-1])


def test_ms_ssim_matches_a_float64_reference():
    x, y = _pair(shape=(1, 3, 177, 190), noise=0.1)  # odd and even sides: the padding path
    want = _ms_ssim_reference(x[0].double().numpy(), y[0].double().numpy())
    assert MsSsim()(x, y).item() == pytest.approx(want, abs=1e-5)
    assert MsSsim.min_side == 161 and Ssim.min_side == 11, "the smallest sides the windows fit in"


def test_unknown_distance_suggests_close_names():
    with pytest.raises(BenchError, match="did you mean 'ssim', 'ssimc'"):
        similarity_from_name("ssimm")
