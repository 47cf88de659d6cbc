"""NPR: the official raw state dict loads and matches an independent functional forward."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.registry import create_detector
from detectors.catalog import npr
from detectors.npr import NPR_ARCHS, NPRDetector, NPRNet, load_npr_checkpoint, npr_residual
from detectors.preprocess import ResizeNormalize
from detectors.checkpoint import BadCheckpointError
from official_states import batch_norm, random_bottleneck_state, reference_stages


pytestmark = pytest.mark.usefixtures("one_torch_thread")


PLANES, BLOCKS = (64, 128), (3, 4)


def official_npr_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the names/shapes of NPR.pth (conv1, bn1, layer1, layer2, fc1)."""
    return random_bottleneck_state(3, PLANES, BLOCKS, "fc1", seed, counter=5)


def reference_npr(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """NPR with plain functional ops in float64; the residual by explicit index arithmetic."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    h, w = x.shape[-2:]
    x = x[..., : h // 2 * 2, : w // 2 * 2]
    up = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    x = (x - up) * 2.0 / 3.0
    x = F.relu(batch_norm(sd)(F.conv2d(x, sd["conv1.weight"], stride=2, padding=1), "bn1"))
    x = reference_stages(F.max_pool2d(x, 3, stride=2, padding=1), sd, BLOCKS)
    return F.linear(x.mean(dim=(2, 3)), sd["fc1.weight"], sd["fc1.bias"])[:, 0]


@pytest.fixture(scope="module")
def state():
    return official_npr_state()


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 45, 51)])
def test_official_npr_matches_reference(tmp_path, state, shape):
    path = tmp_path / "NPR.pth"
    torch.save(state, path)  # the official file is a raw state dict
    det = create_detector("npr.official", path=path)
    assert isinstance(det, NPRDetector) and det.weights == "npr.official" and det.model.size == "full"
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    got = det.forward(x)
    assert torch.allclose(got.double(), reference_npr(x, state), rtol=1e-4, atol=1e-4)


def test_npr_keys_are_official():
    keys = set(NPRNet().state_dict())
    assert keys == set(official_npr_state())
    assert not any(k.startswith(("layer3", "layer4", "fc.")) for k in keys)


def test_npr_residual_odd_sizes():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    r = npr_residual(x)
    assert r.shape == (2, 3, 4, 6)
    assert torch.all(r[..., ::2, ::2] == 0)  # the kept pixel of every 2x2 cell is its own copy
    assert torch.equal(r[..., 1, 1], x[..., 1, 1] - x[..., 0, 0])


def test_npr_wrapped_and_bad(tmp_path, state):
    assert load_npr_checkpoint({"model": {f"module.{k}": v for k, v in state.items()}}).size == "full"
    bad = tmp_path / "corvi_like.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1, 2048)}, bad)
    with pytest.raises(BadCheckpointError, match="corvi_like.pth"):
        load_npr_checkpoint(bad)


def test_runner_pixels_then_prepare_equal_the_float_preprocessing():
    """The runner ships uint8 pixels and normalises on the device: the same numbers, bit for bit,
    as the float preprocessing (resize, ToTensor, ImageNet mean/std)."""
    det = create_detector("npr.mini")
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    pixels = det.preprocess()(image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 256, 256)
    assert torch.equal(det.prepare(pixels[None])[0], ResizeNormalize((256, 256))(image))


def test_npr_spec_and_preprocess():
    assert npr.info.display_name == "NPR" and npr.info.family == "CNN" and npr.info.input.size == (256, 256)
    assert npr.default_weights == "mini" and {w.tag for w in npr.weights} == {"official", "mini"}
    arr = np.random.default_rng(0).integers(0, 256, (300, 411, 3), dtype=np.uint8)
    t = ResizeNormalize((256, 256))(Image.fromarray(arr))
    # the official test transform, written out: PIL bilinear to 256x256, /255, ImageNet mean/std
    resized = np.asarray(Image.fromarray(arr).resize((256, 256), Image.BILINEAR), dtype=np.float64) / 255.0
    ref = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert t.shape == (3, 256, 256)
    np.testing.assert_allclose(t.permute(1, 2, 0).numpy(), ref, atol=1e-5)
    small = NPRNet(NPR_ARCHS["mini"]).eval()
    assert small.size == "mini" and small.num_features == 128
    with torch.no_grad():
        assert small(t[None]).shape == (1,)


def test_npr_native_resolution_protocol():
    """resize=False: the official no_resize protocol, odd sizes cropped, cached under its own key."""
    default = create_detector("npr.mini")
    native = create_detector("npr.mini", resize=False)
    assert default.info.input.size == (256, 256) and native.info.input.native
    assert native.fingerprint == default.fingerprint + "+native"
    arr = np.random.default_rng(1).integers(0, 256, (45, 51, 3), dtype=np.uint8)
    x = native.prepare(native.preprocess()(Image.fromarray(arr))[None])
    assert x.shape == (1, 3, 45, 51)  # not resized; the model drops the odd row and column itself
    with torch.no_grad():
        expect = native.model(x[:, :, :44, :50])
    assert torch.allclose(native.forward(x), expect)
