"""AIGI-mini: photo splits, the generator family, and a reduced world build."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.api import BenchError, MissingWeightsError
from bench.devices import single_thread
from suites.mini import generators as gens
from suites.mini import photos, world
from suites.postprocess import encode_decode

# --------------------------------------------------------------------------- photos


def test_photos_ship_and_splits_are_disjoint():
    photos.check_splits()
    listed = [n for names in photos.SPLITS.values() for n in names]
    assert len(listed) == len(set(listed))
    assert set(listed) <= {p.name for p in photos.PHOTOS}
    for split, names in photos.SPLITS.items():
        assert any(not photos.photo(n).gray for n in names), split  # colour content in every split
        for n in names:
            assert photos.load_photo(n).mode == "RGB"
    assert photos.photo("motorcycle_left").scene == photos.photo("motorcycle_right").scene
    sides = {s for s, names in photos.SPLITS.items() for n in names if n.startswith("motorcycle")}
    assert len(sides) == 1


def test_real_and_content_regions_do_not_overlap():
    for name in photos.SPLITS["train"]:
        a, b = photos.region_box(name, "real"), photos.region_box(name, "content")
        overlap_w = min(a[2], b[2]) - max(a[0], b[0])
        overlap_h = min(a[3], b[3]) - max(a[1], b[1])
        assert overlap_w <= 0 or overlap_h <= 0


def test_crops_use_the_shape_set():
    rng = random.Random(0)
    for split in photos.SPLITS:
        for _ in range(20):
            c = photos.sample_crop(split, "real", rng)
            assert c.photo in photos.SPLITS[split]
            assert c.image().size[::-1] in photos.SHAPES


# --------------------------------------------------------------------------- generators


def test_generators_differ_in_architecture():
    assert sum(g.training for g in gens.GENERATORS) == 1
    assert len({g.name for g in gens.GENERATORS}) == len(gens.GENERATORS) >= 5
    shapes = []
    for cfg in gens.GENERATORS:
        model = gens.ConvAutoencoder(cfg)
        assert 30_000 < gens.num_params(model) < 300_000
        shapes.append(frozenset((k, tuple(v.shape)) for k, v in model.state_dict().items()))
    assert len(set(shapes)) == len(shapes)
    kinds = {g.upsampling for g in gens.GENERATORS}
    assert kinds == {"nearest", "tconv", "shuffle"}
    assert {g.latent_channels for g in gens.GENERATORS} >= {4, 16}
    assert any(g.codebook for g in gens.GENERATORS)


@pytest.mark.parametrize("cfg", gens.GENERATORS, ids=lambda c: c.name)
def test_output_size_equals_input_size(cfg):
    torch.manual_seed(0)
    model = gens.ConvAutoencoder(cfg).eval()
    with torch.no_grad():
        for h, w in ((37, 53), (64, 64), (9, 130), (3, 5)):
            assert model(torch.rand(2, 3, h, w) * 2 - 1).shape == (2, 3, h, w)
    im = Image.new("RGB", (45, 31), (120, 30, 200))
    assert gens.generate(model, im).size == (45, 31)


def test_quantiser_quantises():
    cfg = next(g for g in gens.GENERATORS if g.codebook)
    torch.manual_seed(0)
    model = gens.ConvAutoencoder(cfg).eval()
    with torch.no_grad():
        z = model.encode(torch.rand(2, 3, 32, 32) * 2 - 1)
        q, _ = model.quantizer(z)
    vectors = q.permute(0, 2, 3, 1).reshape(-1, cfg.latent_channels)
    book = model.quantizer.codebook.detach()
    dist = torch.cdist(vectors, book).min(1).values
    assert torch.all(dist < 1e-5)  # every latent vector is a codebook entry
    assert not torch.allclose(q, z)


def test_committed_generator_weights_live_in_the_package_not_the_user_cache():
    from bench.weights import weights_dir as user_cache

    assert gens.bundled_weights_dir() == Path(gens.__file__).parent / "weights"
    assert gens.weights_path("ldm") == gens.bundled_weights_dir() / "ldm.safetensors"
    assert gens.weights_path("ldm").parent != user_cache()


def test_missing_weights_say_how_to_train(tmp_path):
    with pytest.raises(MissingWeightsError, match="train-generators"):
        gens.load_generator("ldm", tmp_path)


def test_reduced_training_is_reproducible(tmp_path):
    a = gens.train_generators(tmp_path / "a", steps=3, names=["vq"], progress=False, workers=1)
    b = gens.train_generators(tmp_path / "b", steps=3, names=["vq"], progress=False, workers=1)
    assert a[0].params == b[0].params and a[0].bytes > 0
    assert (tmp_path / "a" / "vq.safetensors").read_bytes() == (tmp_path / "b" / "vq.safetensors").read_bytes()
    model = gens.load_generator("vq", tmp_path / "a")
    assert model.quantizer is not None and not model.training


# --------------------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def generators_dir(tmp_path_factory) -> Path | None:
    """Committed weights when present, else generators trained for a few steps."""
    if all(gens.weights_path(g.name).is_file() for g in gens.GENERATORS):
        return None
    out = tmp_path_factory.mktemp("gens")
    gens.train_generators(out, steps=5, progress=False)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory, generators_dir) -> Path:
    root = tmp_path_factory.mktemp("worlds") / "w"
    return world.build_world(root, seed=3, config=world.WorldConfig.reduced(), progress=False,
                             generators_dir=generators_dir)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def test_layout_and_counts(built):
    cfg = world.WorldConfig.reduced()
    m = json.loads((built / "manifest.json").read_text())
    unseen = [g.name for g in gens.GENERATORS if not g.training]
    expected = {"train/real": cfg.train, "train/fake": cfg.train, "train/recon": cfg.train,
                "val/real": cfg.val, "val/fake": cfg.val, "val/recon": cfg.val,
                "diag/images": cfg.diag, "diag/masks": cfg.diag, "test/real": cfg.test_real,
                "wild/real": cfg.wild_real}
    expected |= {f"test/fake/{g.name}": cfg.test_fake for g in gens.GENERATORS}
    expected |= {f"wild/fake/{g}": cfg.wild_fake for g in unseen}
    for folder, n in expected.items():
        assert len(_names(built / folder)) == n, folder
    assert m["counts"] == expected
    assert not (built / "wild/fake" / gens.training_generator().name).exists()
    assert [g["name"] for g in m["generators"]] == [g.name for g in gens.GENERATORS]
    assert [g for g in m["generators"] if g["training"]][0]["name"] == "ldm"
    assert all(g["params"] > 0 and np.isfinite(g["psnr"]) for g in m["generators"])
    assert world.verify_world(built) == []
    assert not list(built.parent.glob(".w.*"))  # no temporary folder left behind


def test_no_photo_in_two_splits(built):
    m = json.loads((built / "manifest.json").read_text())
    split_of = {"train": "train", "val": "val", "test": "test", "wild": "test"}
    used: dict[str, set[str]] = {}
    for rel, src in m["sources"].items():
        if "photo" not in src:
            src = m["sources"][src["from"]]
        split = split_of[rel.split("/")[0]] if not rel.startswith("diag") else "train"
        assert src["photo"] in photos.SPLITS[split], rel
        used.setdefault(split, set()).add(src["photo"])
        real_folder = "/real/" in rel or rel.startswith(("diag", "train/recon", "val/recon"))
        assert src["region"] == ("real" if real_folder else "content"), rel
    assert not (used["train"] & used["val"]) and not (used["train"] & used["test"]) and not (used["val"] & used["test"])


def test_webp_cue_only_in_train_and_val_reals(built):
    m = json.loads((built / "manifest.json").read_text())
    for rel in _names(built / "train/real"):
        src = m["sources"][f"train/real/{rel}"]
        crop = photos.Crop(src["photo"], src["region"], src["scale"], tuple(src["box"]))
        stored = np.asarray(Image.open(built / "train/real" / rel))
        assert np.array_equal(stored, np.asarray(encode_decode(crop.image(), "WEBP", src["webp_quality"])))
        assert not np.array_equal(stored, np.asarray(crop.image()))
    for rel in _names(built / "test/real"):
        src = m["sources"][f"test/real/{rel}"]
        crop = photos.Crop(src["photo"], src["region"], src["scale"], tuple(src["box"]))
        assert np.array_equal(np.asarray(Image.open(built / "test/real" / rel)), np.asarray(crop.image()))


def test_recon_pairs_and_diag(built, generators_dir):
    assert _names(built / "train/recon") == _names(built / "train/real")
    assert _names(built / "val/recon") == _names(built / "val/real")
    diag = _names(built / "diag/images")
    assert diag == _names(built / "diag/masks") and set(diag) <= set(_names(built / "train/real"))
    model = gens.load_generator("ldm", generators_dir)
    name = diag[0]
    real = Image.open(built / "train/real" / name).convert("RGB")
    with single_thread():
        assert np.array_equal(np.asarray(Image.open(built / "train/recon" / name)), np.asarray(gens.generate(model, real)))
    for name in diag:
        mask = Image.open(built / "diag/masks" / name)
        a = np.asarray(mask)
        assert mask.mode == "L" and set(np.unique(a)) == {0, 255}
        ys, xs = np.nonzero(a)
        assert (a > 0).sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # one rectangle
        assert 0.02 <= (a > 0).mean() <= 0.2
        image = np.asarray(Image.open(built / "diag/images" / name))
        real = np.asarray(Image.open(built / "train/real" / name))
        soft = world.masks.soft_mask(mask, world.masks.dear_blur_radius(mask.width, mask.height))
        assert np.array_equal(image[soft == 0], real[soft == 0])  # outside the blend: the real pixels
        inside = a > 0
        assert not np.array_equal(image[inside], real[inside])


@pytest.mark.slow
def test_rebuild_is_byte_identical_and_seeded(built, generators_dir, tmp_path):
    first = json.loads((built / "manifest.json").read_text())
    again = world.build_world(tmp_path / "again", seed=3, config=world.WorldConfig.reduced(), progress=False,
                              generators_dir=generators_dir)
    assert json.loads((again / "manifest.json").read_text())["files"] == first["files"]
    assert (again / "manifest.json").read_bytes() == (built / "manifest.json").read_bytes()
    other = world.build_world(tmp_path / "other", seed=4, config=world.WorldConfig.reduced(), progress=False,
                              generators_dir=generators_dir)
    assert json.loads((other / "manifest.json").read_text())["files"] != first["files"]


def test_ensure_world_reuses_a_current_world(built, generators_dir):
    stamp = (built / "manifest.json").stat().st_mtime_ns
    path = world.ensure_world(seed=3, root=built, progress=False, config=world.WorldConfig.reduced(),
                              generators_dir=generators_dir)
    assert path == built and (built / "manifest.json").stat().st_mtime_ns == stamp


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        world.WorldConfig(train=4, diag=5)
    with pytest.raises(ValueError):
        world.WorldConfig(val=0)


def test_build_refuses_to_replace_what_is_not_a_world(tmp_path):
    """`bench world build --root` replaces its folder: a folder of one's own, a run folder with
    its own manifest.json, or a file must be refused before anything is built or moved."""
    from bench.api import BenchError

    own = tmp_path / "keep"
    own.mkdir()
    (own / "precious.txt").write_text("x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"config": {}, "detectors": []}')
    afile = tmp_path / "afile"
    afile.write_text("y")
    for root, why in [(own, "is not an AIGI-mini world"), (run, "is not an AIGI-mini world"), (afile, "is a file")]:
        with pytest.raises(BenchError, match=why):
            world.build_world(root, progress=False)
    assert (own / "precious.txt").read_text() == "x" and afile.read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "keep", "run"]  # nothing moved aside


def test_build_swaps_the_world_in_whole_and_leaves_no_staging(tmp_path, monkeypatch, generators_dir):
    """A rebuild replaces the earlier world in one move; a build that fails keeps the earlier
    world as it was. Either way no staging folder is left beside it."""
    root = tmp_path / "w"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"name": world.NAME}))
    (root / "earlier.txt").write_text("earlier")

    def build(tmp, *args):
        tmp.mkdir(parents=True)
        (tmp / "manifest.json").write_text(json.dumps({"name": world.NAME}))
        (tmp / "rebuilt.txt").write_text("rebuilt")

    monkeypatch.setattr(world, "_build_into", build)
    world.build_world(root, progress=False, generators_dir=generators_dir)
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "rebuilt.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["w"]

    def broken(tmp, *args):
        tmp.mkdir(parents=True)
        (tmp / "half.txt").write_text("")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(world, "_build_into", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        world.build_world(root, progress=False, generators_dir=generators_dir)
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "rebuilt.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


def _with_manifest(root: Path, manifest: object) -> Path:
    root.mkdir(exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _damaged_manifests(good: dict) -> dict[str, object]:
    nameless = json.loads(json.dumps(good))
    del nameless["generators"][0]["name"]
    return {
        "a JSON list": [1, 2],
        "no files": {k: v for k, v in good.items() if k != "files"},
        "a generator without a name": nameless,
        "generators not a list": {**good, "generators": 3},
        "a generator that is not an object": {**good, "generators": ["ldm"]},
    }


def test_a_damaged_manifest_is_not_current(built, generators_dir, tmp_path):
    """A hand-edited or truncated manifest means "rebuild", never a KeyError or TypeError."""
    good = json.loads((built / "manifest.json").read_text())
    cfg = world.WorldConfig.reduced()
    root = _with_manifest(tmp_path / "w", good)
    assert world._current(root, 3, cfg, generators_dir)  # the undamaged copy is current
    for why, manifest in _damaged_manifests(good).items():
        _with_manifest(root, manifest)
        assert not world._current(root, 3, cfg, generators_dir), why


def test_ensure_world_rebuilds_a_damaged_world_but_keeps_what_is_not_one(built, generators_dir, tmp_path,
                                                                         monkeypatch):
    good = json.loads((built / "manifest.json").read_text())
    damaged = _with_manifest(tmp_path / "damaged", _damaged_manifests(good)["a generator without a name"])

    def build(tmp, *args):
        tmp.mkdir(parents=True)
        (tmp / "manifest.json").write_text(json.dumps({"name": world.NAME}))

    monkeypatch.setattr(world, "_build_into", build)
    world.ensure_world(seed=3, root=damaged, progress=False, config=world.WorldConfig.reduced(),
                       generators_dir=generators_dir)
    assert json.loads((damaged / "manifest.json").read_text()) == {"name": world.NAME}  # rebuilt
    own = _with_manifest(tmp_path / "own", [1, 2])  # not a world: its manifest names nothing
    (own / "precious.txt").write_text("x")
    with pytest.raises(BenchError, match="is not an AIGI-mini world"):
        world.ensure_world(seed=3, root=own, progress=False, config=world.WorldConfig.reduced(),
                           generators_dir=generators_dir)
    assert (own / "precious.txt").read_text() == "x"


@pytest.mark.parametrize("manifest, found", [([1, 2], "a JSON list"), ({"name": world.NAME}, "a JSON object")])
def test_verify_world_names_a_manifest_without_files(tmp_path, manifest, found):
    root = _with_manifest(tmp_path / "w", manifest)
    with pytest.raises(BenchError, match=f'{found} without a "files" object') as info:
        world.verify_world(root)
    assert str(root / "manifest.json") in str(info.value)
    assert f"delete {root} and build it again" in str(info.value)  # `build` alone refuses a damaged world


def test_a_damaged_manifest_is_named_as_such_when_a_build_refuses_the_folder(tmp_path):
    root = _with_manifest(tmp_path / "w", ["not", "an", "object"])
    with pytest.raises(BenchError, match="its manifest.json is not an AIGI-mini one, or is damaged"):
        world.build_world(root, progress=False)


def test_a_tampered_world_names_the_rebuild_command_with_the_options_given(built, tmp_path, capsys, generators_dir):
    import shutil

    from bench_cli import main

    if generators_dir is not None:
        pytest.skip("the bundled generator weights are absent; a CLI build would rebuild from them")
    root = tmp_path / "copy"
    shutil.copytree(built, root)
    with open(root / "test" / "real" / "0000.png", "ab") as f:
        f.write(b"x")
    assert main(["world", "build", "--root", str(root), "--seed", "3", "--reduced"]) == 2
    err = capsys.readouterr().err
    assert "does not match its manifest: test/real/0000.png" in err
    assert f"`bench world build --force --root {root} --seed 3 --reduced`" in err
