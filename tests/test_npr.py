"""NPR: the official raw state dict loads and matches an independent functional forward."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.registry import create_detector
from detectors.npr import NPR_ARCHS, NPRDetector, NPRNet, load_npr_checkpoint, npr, npr_residual
from detectors.preprocess import ResizeNormalize
from detectors.resnet import BadCheckpointError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


PLANES, BLOCKS = (64, 128), (3, 4)


def official_npr_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the names/shapes of NPR.pth (conv1, bn1, layer1, layer2, fc1)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name, cout, cin, k):
        sd[name] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(1.0 / (cin * k * k))

    def bn(name, c):
        sd[f"{name}.weight"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(5)

    conv("conv1.weight", 64, 3, 3)
    bn("bn1", 64)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip(PLANES, BLOCKS), 1):
        for j in range(blocks):
            p = f"layer{i}.{j}"
            conv(f"{p}.conv1.weight", planes, inplanes, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2.weight", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3.weight", planes * 4, planes, 1)
            bn(f"{p}.bn3", planes * 4)
            if j == 0:
                conv(f"{p}.downsample.0.weight", planes * 4, inplanes, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    sd["fc1.weight"] = torch.randn(1, 512, generator=g) / math.sqrt(512)
    sd["fc1.bias"] = torch.randn(1, generator=g)
    return sd


def reference_npr(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """NPR with plain functional ops in float64; the residual by explicit index arithmetic."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    h, w = x.shape[-2:]
    x = x[..., : h // 2 * 2, : w // 2 * 2]
    up = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    x = (x - up) * 2.0 / 3.0

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-5)

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=1), "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for i, blocks in enumerate(BLOCKS, 1):
        for j in range(blocks):
            p = f"layer{i}.{j}"
            stride = 2 if (i > 1 and j == 0) else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            idt = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1") if j == 0 else x
            x = F.relu(out + idt)
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


def test_npr_spec_and_preprocess():
    assert npr.info.display_name == "NPR" and npr.info.family == "CNN" and npr.info.input.size == (256, 256)
    assert npr.default_weights == "mini" and {w.tag for w in npr.weights} == {"official", "mini"}
    arr = np.random.default_rng(0).integers(0, 256, (300, 411, 3), dtype=np.uint8)
    t = ResizeNormalize((256, 256))(Image.fromarray(arr))
    assert t.shape == (3, 256, 256)
    small = NPRNet(NPR_ARCHS["mini"]).eval()
    assert small.size == "mini" and small.num_features == 128
    with torch.no_grad():
        assert small(t[None]).shape == (1,)
