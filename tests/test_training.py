"""Training pieces: early stopping schedule, synced augmentation, datasets, train_mini end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from bench.api import BenchError
from detectors.augment import SymmetricPadCrop, af_augmentation
from detectors.data import PairedImages, collate_pairs, labeled_items, paired_items, train_loader, validation_loader
from detectors.fit import EarlyStopping, TrainConfig, balanced_accuracy
from detectors.mini import MINI_RECIPES, train_mini
from suites.mini.layout import WorldLayout


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_early_stopping_schedule():
    """AlignedForensics semantics: delta 0.001, patience 5, lr / 10, stop once lr < 1e-6."""
    es = EarlyStopping(patience=5, delta=1e-3, lr=1e-4, min_lr=1e-6)
    assert es.step(0.50).improved  # first score initialises the best
    assert es.step(0.60).improved
    d = es.step(0.6009)  # not above best + delta: counts down
    assert not d.improved and d.lr == 1e-4 and es.count_down == 4
    assert es.step(0.70).improved and es.count_down == 5  # an improvement resets the count
    lrs, stops = [], []
    for _ in range(15):
        d = es.step(0.65)
        lrs.append(d.lr)
        stops.append(d.stop)
    assert lrs[:4] == [1e-4] * 4 and lrs[4] == pytest.approx(1e-5)
    assert lrs[9] == pytest.approx(1e-6) and not stops[9]  # 1e-6 is not below min_lr: continue
    assert stops.index(True) == 14 and lrs[14] < 1e-6
    assert es.best_score == 0.70


def test_balanced_accuracy():
    labels = np.array([0, 0, 0, 1])
    assert balanced_accuracy(labels, np.array([-1, -1, 1, 1])) == pytest.approx((2 / 3 + 1) / 2)
    assert balanced_accuracy(labels, np.zeros(4)) == pytest.approx(0.5)  # logit 0 is "real"


def _image(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_paired_augmentation_is_identical():
    """A real and an identical 'reconstruction' must come out equal under every draw: crops,
    flips, rotations, jitter, blur, JPEG, cutout and noise are all shared."""
    rng = np.random.default_rng(0)
    tf = af_augmentation(crop=96)
    torch.manual_seed(0)
    outs = []
    for _ in range(16):
        im = _image(rng, 128, 192)
        a, b = tf(im, im.copy())
        assert a.shape == (3, 96, 96) and torch.equal(a, b)
        outs.append(a)
    assert not torch.equal(outs[0], outs[1])


def test_augmentation_keeps_masks_aligned_and_binary():
    """DEAR passes (image, tv_tensors.Mask): geometry shared (crop, resize, flip, rot90 agree
    between the PIL and the tensor path), mask values untouched by photometric steps."""
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    tf = af_augmentation(crop=96)
    agreement = []
    for _ in range(16):
        blocks = rng.integers(0, 2, (8, 10), dtype=np.uint8)
        mask = torch.from_numpy(np.kron(blocks, np.ones((16, 16), dtype=np.uint8)))[None]
        img = Image.fromarray(mask[0].numpy() * 255).convert("RGB")
        x, m = tf(img, tv_tensors.Mask(mask))
        assert isinstance(m, tv_tensors.Mask) and m.shape[-2:] == x.shape[-2:] == (96, 96)
        assert set(m.unique().tolist()) <= {0, 1}
        gray = x.mean(0)
        if m.min() == m.max():
            continue
        thr = (gray[m[0] == 1].median() + gray[m[0] == 0].median()) / 2
        agreement.append(((gray > thr) == (m[0] == 1)).float().mean().item())
    assert len(agreement) >= 8 and np.mean(agreement) > 0.9, agreement


def test_training_reads_images_as_the_runner_does(tmp_path):
    """16-bit data is rescaled (PIL's convert("RGB") would clip it to white) and an unreadable
    file is a BadImageError naming it."""
    from bench.api import BadImageError
    from bench.images import load_image
    from detectors.data import load_rgb

    wide = np.full((8, 8), 32768, dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "sixteen.png")
    x = np.array(load_rgb(tmp_path / "sixteen.png"))
    assert x.shape == (8, 8, 3) and np.all(x == 128)
    assert np.array_equal(x, np.array(load_image(str(tmp_path / "sixteen.png"))))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(BadImageError, match="broken.png"):
        load_rgb(tmp_path / "broken.png")


def test_validation_batches_by_the_size_images_load_at(tmp_path):
    """A JPEG whose EXIF orientation (6) turns its 40x24 header into a 24x40 image loads
    upright (load_rgb), so it must not share a batch with a plain 40x24 image: batching by
    header size made default_collate fail with a traceback naming no file."""
    from detectors.preprocess import ImageNetNormalize
    from detectors.data import LabeledImages

    im = _image(np.random.default_rng(0), 24, 40)
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    im.save(tmp_path / "real" / "plain.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    im.save(tmp_path / "fake" / "turned.jpg", exif=exif)
    items = labeled_items(tmp_path / "real", tmp_path / "fake")
    ds = LabeledImages(items, ImageNetNormalize())
    assert [tuple(ds[i][0].shape) for i in range(2)] == [(3, 24, 40), (3, 40, 24)]
    shapes = sorted(tuple(x.shape) for x, _ in validation_loader(items, ImageNetNormalize(), batch_size=16))
    assert shapes == [(1, 3, 24, 40), (1, 3, 40, 24)]


def test_validation_loader_names_an_unreadable_image(tmp_path):
    from bench.api import BadImageError
    from detectors.preprocess import ImageNetNormalize

    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    _image(np.random.default_rng(0), 8, 8).save(tmp_path / "real" / "a.png")
    (tmp_path / "fake" / "b.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match=r"b\.png: not an image"):  # at the first validation, before any step
        list(validation_loader(labeled_items(tmp_path / "real", tmp_path / "fake"), ImageNetNormalize()))


def test_crop_pads_small_masks_like_their_image():
    """A 40 px image and mask at crop 96 (pad 56 > side): the mask is mirror-padded exactly as
    the PIL image is, where torchvision's tensor kernel would fail."""
    rng = np.random.default_rng(2)
    mask = torch.from_numpy(rng.integers(0, 2, (40, 40), dtype=np.uint8))[None]
    img = Image.fromarray(mask[0].numpy() * 255).convert("RGB")
    crop = SymmetricPadCrop(96)
    for seed in range(5):
        torch.manual_seed(seed)
        x, m = crop(img, tv_tensors.Mask(mask))
        assert isinstance(m, tv_tensors.Mask) and m.shape == (1, 96, 96) and x.size == (96, 96)
        assert torch.equal(torch.from_numpy(np.array(x)[..., 0] > 127)[None], m.bool())
        torch.manual_seed(seed)  # the same draw as v2.RandomCrop: training runs are unchanged
        ref = v2.RandomCrop(96, pad_if_needed=True, padding_mode="symmetric")(img)
        assert np.array_equal(np.array(ref), np.array(x))


def _write_world(root: Path, n: int = 4) -> Path:
    """A toy world in the AIGI-mini layout; fakes and reconstructions are brighter than reals,
    so even a barely trained network separates them."""
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (96, 128)]
    for split in ("train", "val"):
        for i in range(n):
            h, w = shapes[i % 2]
            real = Image.fromarray(rng.integers(0, 100, (h, w, 3), dtype=np.uint8))
            recon = Image.fromarray((np.asarray(real) + 150).astype(np.uint8))
            fake = Image.fromarray(rng.integers(150, 256, (h, w, 3), dtype=np.uint8))
            for sub, im in (("real", real), ("recon", recon), ("fake", fake)):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
                im.save(root / split / sub / f"{i:04d}.png")
    return root


def test_datasets_from_world_layout(tmp_path):
    world = _write_world(tmp_path / "w")
    items = labeled_items(world / "train" / "real", world / "train" / "fake")
    assert [y for _, y in items] == [0] * 4 + [1] * 4
    pairs = paired_items(world / "train" / "real", world / "train" / "recon")
    assert all(r.name == f.name for r, f in pairs)
    ds = PairedImages(pairs, af_augmentation(crop=32))
    x, y = collate_pairs([ds[0], ds[1]])
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]
    (world / "train" / "recon" / "0002.png").unlink()
    with pytest.raises(BenchError, match="no reconstruction"):
        paired_items(world / "train" / "real", world / "train" / "recon")


@pytest.mark.parametrize("paired", [False, True])
def test_train_loader_is_the_seeded_shuffled_loader(tmp_path, paired):
    """The one train-loader builder (world_loaders, DEAR refine, the inpaint ablation) gives the
    batches of a DataLoader shuffled by a generator seeded with `seed`, pairs collated as
    [reals; fakes], the last partial batch dropped unless the set fits in one batch."""
    from torch.utils.data import DataLoader

    from detectors.data import LabeledImages

    world = _write_world(tmp_path / "w", n=5)
    real, fake = world / "train" / "real", world / "train" / ("recon" if paired else "fake")
    items = paired_items(real, fake) if paired else labeled_items(real, fake)
    tf = af_augmentation(crop=16)
    ds = PairedImages(items, tf) if paired else LabeledImages(items, tf)
    reference = DataLoader(ds, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(7), drop_last=True,
                           collate_fn=collate_pairs if paired else None)
    torch.manual_seed(0)
    want = list(reference)
    torch.manual_seed(0)
    got = list(train_loader(items, tf, 3, paired=paired, seed=7))
    assert len(items) % 3 and len(got) == len(want) == len(items) // 3  # there is a partial batch, and it is dropped
    for (x, y), (rx, ry) in zip(got, want):
        assert torch.equal(x, rx) and torch.equal(torch.as_tensor(y), torch.as_tensor(ry))
    assert got[0][0].shape == ((6 if paired else 3), 3, 16, 16)
    whole = train_loader(items, tf, len(items), paired=paired, seed=7)
    assert len(list(whole)) == 1  # a set no bigger than one batch still gives a batch


def test_train_mini_end_to_end(tmp_path):
    """Every mini detector trains (one step) on the world layout and loads through the registry."""
    from bench.registry import create_detector
    from detectors.resnet import ARCHS, arch_of

    world = _write_world(tmp_path / "w")
    layout = WorldLayout(world)
    data = {name: layout.training_data(paired=recipe.paired) for name, recipe in MINI_RECIPES.items()}
    out = tmp_path / "weights"
    cfg = TrainConfig(batch_size=4, max_epochs=1, steps_per_epoch=1, crop=32, progress=False)
    head_cfg = TrainConfig(lr=0.1, batch_size=4, max_epochs=3, steps_per_epoch=2, crop=32, progress=False)
    for name in ("corvi", "rajan", "corvi-plus", "rajan-plus"):
        path = train_mini(name, data[name], out, head_cfg if name.endswith("plus") else cfg, summary_path=tmp_path / f"{name}.json")
        det = create_detector(f"{name}.mini", path=path)
        assert arch_of(det.model.state_dict()) == ARCHS["mini"]
        logits = det.score([Image.open(world / "val" / "real" / "0000.png")])
        assert logits.shape == (1,) and np.isfinite(logits).all()
    plus = create_detector("corvi-plus.mini", path=out / "corvi-plus.mini.safetensors")
    assert (plus.model.head.weight >= 0).all() and (plus.model.head.weight > 0).any()  # refit, not left at zero
    base = create_detector("corvi.mini", path=out / "corvi.mini.safetensors").model.state_dict()
    for k, v in plus.model.state_dict().items():  # the backbone (BN statistics included) is frozen
        if ".fc." not in f".{k}":
            assert torch.equal(v, base[k]), k
    npr_cfg = TrainConfig.npr(batch_size=4, max_epochs=1, steps_per_epoch=1, crop=224, progress=False)
    det = create_detector("npr.mini", path=train_mini("npr", data["npr"], out, npr_cfg))
    assert det.model.size == "mini"
    for name, recipe, arch in (("ferretnet", TrainConfig.ferretnet, "dim=32"), ("ladeda", TrainConfig.ladeda, "stem=8")):
        cfg_small = recipe(batch_size=4, max_epochs=1, steps_per_epoch=1, crop=32, progress=False)
        det = create_detector(f"{name}.mini", path=train_mini(name, data[name], out, cfg_small))
        assert arch in repr(det.model.arch)  # FerretNet-S, the mini LaDeDa9
        assert np.isfinite(det.score([Image.open(world / "val" / "fake" / "0000.png")])).all()
    with pytest.raises(BenchError, match="train the base first"):
        train_mini("rajan-plus", data["rajan-plus"], tmp_path / "empty", cfg)
    with pytest.raises(BenchError, match="trains on paired reconstructions"):
        train_mini("rajan", data["corvi"], out, cfg)
    with pytest.warns(UserWarning, match="never beat the zero head"):  # no silent all-zero head
        train_mini("corvi-plus", data["corvi-plus"], out, TrainConfig(lr=1e-7, batch_size=4, max_epochs=1, steps_per_epoch=1, crop=32, progress=False))
