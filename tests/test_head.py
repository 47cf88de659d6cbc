"""refit_head: frozen backbone, zero-init head, clamp, gate, BN handling, early stopping."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench.api import BenchError, DetectorInfo
from detectors.head import refit_head
from detectors.resnet import build_res50nodown


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _model(seed: int = 0):
    torch.manual_seed(seed)
    model = build_res50nodown("mini")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
        torch.nn.init.normal_(model.head.weight, 0, 1.0)
    return model


def _batches(n_batches: int, seed: int, separable: bool = True, size: int = 24):
    """Random images; fakes get a brightness offset, so the pooled features separate them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.tensor([0, 1, 0, 1, 0, 1], dtype=torch.float32)
        x = torch.randn(6, 3, size, size, generator=g)
        if separable:
            x = x + 1.5 * y.view(-1, 1, 1, 1)
        out.append((x, y))
    return out


def _backbone_params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("backbone.fc.")}


def _bn_buffers(model):
    return {n: b.detach().clone() for n, b in model.named_buffers() if "running" in n}


def test_nonneg_refit_keeps_weights_positive_and_backbone_frozen():
    model = _model()
    before, bn_before = _backbone_params(model), _bn_buffers(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    # a non-negative head first has to learn a negative bias before any image reads "real"
    res = refit_head(model, _batches(3, 1), _batches(2, 2), nonneg=True, lr=5e-2, max_epochs=6, progress=False)
    w = model.head.weight
    assert (w >= 0).all() and (w > 0).any()
    assert res.history[0]["epoch"] == 0 and res.history[0]["val_bacc"] == pytest.approx(0.5)  # zero head: all "real"
    assert res.best_score > 0.5
    for n, p in _backbone_params(model).items():
        assert torch.equal(p, before[n]), n
    for n, b in _bn_buffers(model).items():
        assert torch.equal(b, bn_before[n]), n  # freeze_bn=True: statistics untouched
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_without_nonneg_weights_go_negative():
    model = _model()
    refit_head(model, _batches(3, 1), _batches(2, 2), nonneg=False, lr=1e-2, max_epochs=4, progress=False)
    assert (model.head.weight < 0).any()  # so the clamp in the test above is doing work


def test_gate_zeroes_channels():
    model = _model()
    gate = torch.ones(model.num_features)
    gate[::3] = 0
    refit_head(model, _batches(3, 1), _batches(2, 2), gate=gate, lr=1e-2, max_epochs=3, progress=False)
    assert torch.equal(model.gate.gate, gate)
    assert torch.all(model.head.weight[0, gate == 0] == 0)  # zero features get zero gradient from zero init
    with torch.no_grad():
        assert torch.all(model.pooled(_batches(1, 5)[0][0])[:, gate == 0] == 0)


def test_freeze_bn_false_lets_statistics_drift():
    model = _model()
    bn_before = _bn_buffers(model)
    res = refit_head(model, _batches(3, 1), _batches(2, 2), freeze_bn=False, lr=1e-2, max_epochs=3, progress=False)
    assert res.best_epoch > 0
    changed = [n for n, b in _bn_buffers(model).items() if not torch.equal(b, bn_before[n])]
    assert changed  # the official Stay-Positive loop's model.train() behaviour


def test_extra_loader_is_cycled_and_used():
    model = _model()
    used = []

    class Extra:
        def __init__(self):
            self.batches = _batches(2, 7)

        def __iter__(self):
            for b in self.batches:
                used.append(1)
                yield b

    res = refit_head(model, _batches(5, 1), _batches(1, 2), extra_loader=Extra(), lr=1e-2, max_epochs=2, progress=False)
    assert len(used) == 10  # one extra batch per step, restarted when exhausted
    # the extra stream shapes the head: the same refit without it learns a different one
    plain = _model()
    res_plain = refit_head(plain, _batches(5, 1), _batches(1, 2), lr=1e-2, max_epochs=2, progress=False)
    assert res.best_epoch > 0 and res_plain.best_epoch > 0  # neither restored the zero head
    assert not torch.allclose(model.head.weight, plain.head.weight)


def test_extra_loss_is_added_to_the_main_loss():
    """First step on the zero head: every logit is 0, so each BCE term is exactly ln 2 and the
    recorded loss is main + extra = 2 ln 2 (ln 2 alone would mean the extra term is dropped)."""
    model = _model()
    res = refit_head(model, _batches(1, 1), _batches(1, 2), extra_loader=_batches(1, 7), lr=1e-2,
                     max_epochs=1, progress=False)
    assert res.history[1]["steps"] == 1
    assert res.history[1]["train_loss"] == pytest.approx(2 * np.log(2), rel=1e-6)
    plain = refit_head(_model(), _batches(1, 1), _batches(1, 2), lr=1e-2, max_epochs=1, progress=False)
    assert plain.history[1]["train_loss"] == pytest.approx(np.log(2), rel=1e-6)


def test_refit_stops_after_lr_schedule():
    """Validation that never improves: 5 epochs per lr (1e-4, 1e-5, 1e-6), then stop."""
    model = _model()
    x = torch.zeros(4, 3, 24, 24)
    val = [(x, torch.tensor([0.0, 1.0, 0.0, 1.0]))]  # identical images, both labels: bacc stays 0.5
    res = refit_head(model, _batches(1, 1), val, max_epochs=100, progress=False)
    assert res.stop_reason == "lr below min_lr" and res.epochs == 15
    lrs = [h["lr"] for h in res.history]
    assert lrs[:6] == [1e-4] * 6  # history holds the lr each epoch trained with
    assert lrs[6] == pytest.approx(1e-5) and lrs[11] == pytest.approx(1e-6)
    assert res.best_epoch == 0 and torch.all(model.head.weight == 0)  # the best (initial) head restored


def test_decomposition_identity(tmp_path):
    from PIL import Image

    from bench.api import ImageRecord
    from detectors.decomposition import decompose, plot_decomposition

    model = _model().eval()
    rng = np.random.default_rng(0)
    recs = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
        recs.append(ImageRecord(str(path), i % 2, "set a" if i < 2 else "b"))
    df = decompose(model, recs)
    assert isinstance(df, pd.DataFrame) and len(df) == 4
    # independently of decompose: the model's own logits, and eq. 1 from its pooled features
    from detectors.preprocess import ImageNetNormalize

    x = torch.stack([ImageNetNormalize()(Image.open(r.path).convert("RGB")) for r in recs])
    with torch.no_grad():
        logits, pooled = model(x).double(), model.pooled(x).double()
    w = model.head.weight.detach().double().reshape(-1)
    np.testing.assert_allclose(df["logit"], logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(df["fake_score"], (pooled * w.clamp(min=0)).sum(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(df["real_score"], (pooled * (-w).clamp(min=0)).sum(1).numpy(), rtol=1e-6)
    assert (df["fake_score"] >= 0).all() and (df["real_score"] >= 0).all()
    with torch.no_grad():
        model.head.weight.clamp_(min=0)  # a Stay-Positive head has no real evidence
    assert (decompose(model, recs)["real_score"] == 0).all()
    files = plot_decomposition(df, tmp_path / "plots", title="test")
    assert [f.name for f in files] == ["decomposition_b.png", "decomposition_set_a.png"] and all(f.stat().st_size > 0 for f in files)
    # an unreadable image is skipped and recorded, not fatal; without `errors` it raises
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    errors: dict[str, str] = {}
    more = decompose(model, [*recs, ImageRecord(str(bad), 1, "b")], errors=errors)
    assert len(more) == 4 and list(errors) == [str(bad)]
    with pytest.raises(BenchError, match="bad.png"):
        decompose(model, [ImageRecord(str(bad), 1, "b")])


def test_decomposition_needs_a_linear_head_resnet():
    from detectors.decomposition import decompose

    class Other:
        info = DetectorInfo("npr", "NPR", "CNN")

    with pytest.raises(BenchError, match="'npr'"):
        decompose(Other(), [])
