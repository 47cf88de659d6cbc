"""suites (listing, layouts, manifests, hub, folder, catalog): layouts, samples, CSV manifests, Hugging Face datasets and the
AIGI-mini world, all on fixture trees built in tmp_path (no network)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.api import FAKE, REAL, BenchError, MissingDataError, SuiteSource
from bench.registry import get_suite
from suites import catalog
from bench.sampling import check_cap, subsample
from suites.folder import FolderSource
from suites.hub import from_hf_dataset
from suites.layouts import DATA_ROOT_ENV, resolve_data_root
from suites.listing import list_images


def _img(path: Path, seed: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None))
    return path


def _fill(folder: Path, n: int, prefix: str = "im", ext: str = ".png") -> list[Path]:
    return [_img(folder / f"{prefix}{i:03d}{ext}", seed=i) for i in range(n)]


def _names(suite) -> list[str]:
    return [s.name for s in suite.sets]


# --------------------------------------------------------------------------- files


def test_list_images_is_recursive_sorted_case_insensitive_and_skips_hidden(tmp_path):
    _img(tmp_path / "b.PNG")
    _img(tmp_path / "a.jpeg")
    _img(tmp_path / "sub" / "c.WebP", fmt="WEBP")
    _img(tmp_path / "A.tif", fmt="TIFF")
    _img(tmp_path / "._a.png")  # macOS resource fork
    _img(tmp_path / ".cache" / "d.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    skipped = []
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, skipped)]
    assert rel == ["A.tif", "a.jpeg", "b.PNG", "sub/c.WebP", "x.gif"]  # GIF is an image (a broken one fails later)
    assert sorted((Path(s.path).name, s.reason.split(" (")[0]) for s in skipped) == [
        ("._a.png", "hidden file"), ("notes.txt", "not an image file")]  # counted and named, not dropped


def test_cap_validation_and_the_seeded_sample():
    assert check_cap(None) is None and subsample([3, 1, 2], None) == [3, 1, 2] and subsample([3, 1, 2], 5) == [3, 1, 2]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(BenchError, match="max_per_set"):
            check_cap(bad)
    items = list(range(100))
    a, b = subsample(items, 10, seed=0), subsample(items, 10, seed=1)
    assert len(a) == 10 and a == sorted(a) and a != items[:10] and a != b and a == subsample(items, 10, seed=0)
    # stratified: 4 strata of 55/25/15/5 items keep shares proportional to their sizes
    stratum = lambda i: "abcd"[(i >= 55) + (i >= 80) + (i >= 95)]  # noqa: E731
    kept = subsample(items, 20, stratum=stratum)
    assert [sum(stratum(i) == k for i in kept) for k in "abcd"] == [11, 5, 3, 1]


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root(None) == tmp_path / "data"
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root("rel") == tmp_path / "rel"  # an explicit root wins, made absolute


# --------------------------------------------------------------------------- DEAR layouts


@pytest.fixture()
def dear_root(tmp_path) -> Path:
    root = tmp_path / "data"
    _fill(root / "test/real/redcaps", 5)
    for name, _ in catalog.SYNTHETIC_GENERATORS:
        _fill(root / "test/fake" / name, 4, prefix=name)
    return root


def test_synthetic_layout(dear_root):
    suite = catalog.synthetic.load(dear_root, max_per_set=3)
    assert _names(suite) == ["redcaps", "sd", "midjourney", "kandinsky", "playground", "pixelart", "lcm", "flux",
                             "wuerstchen", "amused"]
    assert [s.display_name for s in suite.sets[1:]] == ["SD", "MJ", "KD", "PG", "PixArt", "LCM", "FLUX", "Wuerst.", "aMUSEd"]
    real = suite.set("redcaps")
    assert real.kind == "real" and {r.label for r in real.records} == {REAL}
    names = [Path(r.path).name for r in real.records]
    assert len(names) == 3 and names == sorted(names) and set(names) <= {f"im{i:03d}.png" for i in range(5)}  # a sample of 3
    assert [(x.set, x.kept, x.total) for x in suite.sampled][0] == ("redcaps", 3, 5)  # recorded
    mj = suite.set("midjourney")
    assert mj.kind == "generator" and mj.real_set == "redcaps" and len(mj) == 3
    assert all(r.label == FAKE and Path(r.path).is_absolute() and "/test/fake/Midjourney/" in r.path for r in mj.records)
    assert suite.source == str(dear_root) and "Missing" not in suite.description
    assert catalog.synthetic.availability(dear_root) is None and catalog.synthetic.missing(dear_root) == []
    assert len(catalog.synthetic.load(dear_root).set("sd")) == 4


def test_cap_is_deterministic_whatever_the_creation_order(tmp_path):
    root = tmp_path / "data"
    names = [f"{i:03d}.png" for i in range(12)]
    for i, n in enumerate(reversed(names)):
        _img(root / "test/real/redcaps" / n, seed=i)
    _fill(root / "test/fake/sd", 2)
    a = catalog.synthetic.load(root, max_per_set=5).set("redcaps").records
    b = catalog.synthetic.load(root, max_per_set=5).set("redcaps").records
    other = tmp_path / "other"  # the same files created in the other order
    for i, n in enumerate(names):
        _img(other / "test/real/redcaps" / n, seed=i)
    _fill(other / "test/fake/sd", 2)
    c = catalog.synthetic.load(other, max_per_set=5).set("redcaps").records
    assert a == b and [Path(r.path).name for r in a] == [Path(r.path).name for r in c] and len(a) == 5
    d = catalog.synthetic.load(root, max_per_set=5, sample_seed=1).set("redcaps").records
    assert [r.path for r in d] != [r.path for r in a]  # the seed decides the sample


def test_partial_layout_loads_what_is_there(tmp_path):
    root = tmp_path / "data"
    _fill(root / "test/real/redcaps", 2)
    _fill(root / "test/fake/flux", 2)
    (root / "test/fake/sd").mkdir(parents=True)  # present but empty counts as missing
    suite = catalog.synthetic.load(root)
    assert _names(suite) == ["redcaps", "flux"]
    assert "Missing: SD: no images at" in suite.description and str(root / "test/fake/Midjourney") in suite.description
    assert len(catalog.synthetic.missing(root)) == 8


def test_fakes_without_their_reals_are_not_usable(tmp_path):
    root = tmp_path / "data"
    _fill(root / "test/fake/sd", 2)
    with pytest.raises(MissingDataError, match="no usable data"):
        catalog.synthetic.load(root)


def test_missing_data_message_names_paths_dataset_and_root_setting(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "nowhere"))
    message = catalog.synthetic.availability()
    assert message is not None
    assert str(tmp_path / "nowhere" / "test" / "real" / "redcaps") in message
    assert str(tmp_path / "nowhere" / "test" / "fake" / "wuerstchen") in message
    assert "AniSundar18/LDMFakeDetect" in message and "huggingface-cli download" in message
    assert "--data-root" in message and DATA_ROOT_ENV in message
    with pytest.raises(MissingDataError) as info:
        catalog.synthetic.load()
    assert str(info.value) == message


def test_processed_copies(dear_root):
    _fill(dear_root / "test_processed/real/redcaps", 2, ext=".jpg")
    _fill(dear_root / "test_processed/fake/sd", 2, ext=".jpg")
    assert catalog.synthetic.processed_root(dear_root) == dear_root / "test_processed"
    suite = catalog.synthetic.load(dear_root, processed=True)
    assert _names(suite) == ["redcaps", "sd"]
    assert all("/test_processed/" in r.path and r.path.endswith(".jpg") for r in suite.records)
    assert "Pre-processed copies" in suite.description
    with pytest.raises(BenchError, match="no pre-processed copy"):
        catalog.inpainted.load(dear_root, processed=True)


def test_wild_sets_with_and_without_their_own_reals(tmp_path):
    root = tmp_path / "data"
    _fill(root / "test/fake/Chameleon/0_real", 3, "r")
    _fill(root / "test/fake/Chameleon/1_fake", 4, "f")
    _fill(root / "test/fake/WildRF/real/reddit", 2, "r")
    _fill(root / "test/fake/WildRF/fake/twitter", 2, "f")
    suite = catalog.wild.load(root, max_per_set=2)
    assert _names(suite) == ["chameleon", "wildrf"]  # Redcaps not needed, LOKI missing
    cham = suite.set("chameleon")
    assert cham.kind == "wild" and cham.real_set is None and cham.display_name == "Chameleon"
    got = [(r.label, Path(r.path).name) for r in cham.records]
    assert [lab for lab, _ in got] == [0, 0, 1, 1]  # at most 2 of each label, a sample of each
    assert {n for lab, n in got if lab == 0} <= {f"r{i:03d}.png" for i in range(3)}
    assert {n for lab, n in got if lab == 1} <= {f"f{i:03d}.png" for i in range(4)}
    assert {(x.set, x.label, x.kept, x.total) for x in suite.sampled} >= {("chameleon", 0, 2, 3), ("chameleon", 1, 2, 4)}
    assert "LOKI: no images at" in suite.description
    # LOKI is a flat folder of fakes: scored against Redcaps, which is then loaded
    _fill(root / "test/fake/loki", 3, "l")
    assert "LOKI: its real set 'redcaps' is missing" in catalog.wild.load(root).description
    _fill(root / "test/real/redcaps", 2)
    suite = catalog.wild.load(root)
    assert _names(suite) == ["redcaps", "chameleon", "wildrf", "loki"]
    loki = suite.set("loki")
    assert loki.kind == "wild" and loki.real_set == "redcaps" and {r.label for r in loki.records} == {FAKE}
    assert catalog.wild.missing(root) == []


def test_inpainted_bins_in_numeric_order(tmp_path):
    root = tmp_path / "data"
    assert "inpainted/<bin>" in catalog.inpainted.availability(root)
    _fill(root / "test/real/redcaps", 2)
    for b in ("10-20", "0-10", "90-100", "5-10"):
        _fill(root / "inpainted" / b, 2, b)
    suite = catalog.inpainted.load(root)
    assert _names(suite) == ["redcaps", "0-10", "5-10", "10-20", "90-100"]
    assert suite.set("10-20").display_name == "10-20%" and suite.set("10-20").real_set == "redcaps"


# --------------------------------------------------------------------------- folder and CSV


def test_folder_tree(tmp_path):
    _fill(tmp_path / "real", 3, "r")
    _fill(tmp_path / "fake" / "gen_b", 2, "b")
    _fill(tmp_path / "fake" / "gen_a" / "nested", 4, "a")
    _fill(tmp_path / "fake", 1, "loose")
    suite = catalog.folder.load(tmp_path, max_per_set=3)
    assert _names(suite) == ["real", "fake", "gen_a", "gen_b"]
    assert suite.set("real").kind == "real" and len(suite.set("real")) == 3
    assert all(s.kind == "generator" and s.real_set == "real" for s in suite.sets[1:])
    assert len(suite.set("gen_a")) == 3 and len(suite.set("fake")) == 1
    assert catalog.folder.availability(tmp_path) is None


def test_folder_tree_errors(tmp_path):
    assert "--data-root" in catalog.folder.availability(None)
    with pytest.raises(MissingDataError, match="neither real/ nor fake/"):
        catalog.folder.load(tmp_path)
    _fill(tmp_path / "fake" / "x", 1)
    with pytest.raises(MissingDataError, match="no real ones"):
        catalog.folder.load(tmp_path)
    with pytest.raises(MissingDataError, match="no folder or CSV"):
        catalog.folder.load(tmp_path / "absent")


@pytest.mark.parametrize("name", ["real", "Real", "avg", "AVG"])
def test_folder_tree_refuses_set_names_of_the_real_set_and_the_average(tmp_path, name):
    _fill(tmp_path / "real", 2, "r")
    _fill(tmp_path / "fake" / "sd", 2, "s")
    _fill(tmp_path / "fake" / name, 2, "x")
    with pytest.raises(BenchError, match=f"{tmp_path / 'fake' / name}: a set may not be named '{name}'"):
        catalog.folder.load(tmp_path)


def test_folder_tree_refuses_reals_without_fakes(tmp_path):
    """Nothing would be scored: fail at load, not after scoring every real."""
    _fill(tmp_path / "real", 2, "r")
    (tmp_path / "fake" / "sd").mkdir(parents=True)
    with pytest.raises(MissingDataError, match=r"real images found but no fake ones.*no fake/<generator>/ folders"):
        catalog.folder.load(tmp_path)
    assert "real images found but no fake ones" in catalog.folder.availability(tmp_path)  # `bench list` agrees


def test_folder_availability_needs_images_of_both_classes(tmp_path):
    (tmp_path / "real").mkdir()
    _fill(tmp_path / "fake" / "sd", 1, "s")
    assert "no real ones" in catalog.folder.availability(tmp_path)
    _fill(tmp_path / "real" / "nested", 1, "r")
    assert catalog.folder.availability(tmp_path) is None


def test_folder_tree_refuses_a_fake_subfolder_beside_loose_fakes(tmp_path):
    """Loose images in fake/ are the set 'fake'; fake/fake/ would silently merge into it."""
    _fill(tmp_path / "real", 2, "r")
    _fill(tmp_path / "fake", 1, "loose")
    _fill(tmp_path / "fake" / "Fake", 2, "f")
    with pytest.raises(BenchError, match=r"fake/Fake: the images directly in .* already form the set 'fake'"):
        catalog.folder.load(tmp_path)
    for p in (tmp_path / "fake").glob("loose*"):
        p.unlink()
    assert len(catalog.folder.load(tmp_path).set("Fake")) == 2  # alone, fake/fake/ is an ordinary set


@pytest.mark.parametrize("link, target", [("real/loop", ".."), ("real/self", "."), ("fake/sd/up", "..")])
def test_symlink_loops_are_not_followed(tmp_path, link, target):
    """A link back up the tree would repeat images and pull fake/ into real/ (scored as reals)."""
    _fill(tmp_path / "real", 2, "r")
    _fill(tmp_path / "fake" / "sd", 3, "s")
    (tmp_path / link).symlink_to(target, target_is_directory=True)
    suite = catalog.folder.load(tmp_path)
    assert len(suite.set("real")) == 2 and len(suite.set("sd")) == 3
    assert all("/fake/" not in r.path for r in suite.set("real").records)


def test_symlinked_datasets_are_followed_once(tmp_path):
    root = tmp_path / "suite"
    _fill(root / "real", 2, "r")
    _fill(root / "fake" / "sd", 3, "s")
    _fill(tmp_path / "elsewhere" / "reals", 2, "e")
    (root / "real" / "linked").symlink_to(tmp_path / "elsewhere" / "reals", target_is_directory=True)
    (root / "real" / "again").symlink_to(tmp_path / "elsewhere" / "reals", target_is_directory=True)
    reals = [Path(r.path) for r in catalog.folder.load(root).set("real").records]
    assert len(reals) == 4 and sum(p.parent.name == "real" for p in reals) == 2  # 2 own + the linked 2, once


def test_csv_manifest(tmp_path):
    base = tmp_path / "imgs"
    r = _fill(base / "r", 3, "r")
    f = _fill(base / "f", 2, "f")
    m = _fill(base / "m", 2, "m")
    csv = tmp_path / "list.csv"
    lines = ["Path,Label,Set"]
    lines += [f"imgs/r/{p.name},real,coco" for p in reversed(r)]
    lines += [f"{p},1,sdxl" for p in f]  # absolute paths are kept
    lines += ["imgs/f/gone.png,fake,sdxl"]  # missing file: kept, the runner records it
    lines += [f"imgs/m/{m[0].name},0,mixed", f"imgs/m/{m[1].name},FAKE,mixed"]
    csv.write_text("\n".join(lines) + "\n")
    suite = catalog.folder.load(csv)
    assert _names(suite) == ["coco", "sdxl", "mixed"]
    assert [Path(x.path).name for x in suite.set("coco").records] == ["r000.png", "r001.png", "r002.png"]
    sdxl = suite.set("sdxl")
    assert sdxl.kind == "generator" and sdxl.real_set == "coco" and len(sdxl) == 3
    assert str(base / "f" / "gone.png") in [x.path for x in sdxl.records]
    mixed = suite.set("mixed")
    assert mixed.kind == "wild" and mixed.real_set is None and [x.label for x in mixed.records] == [0, 1]
    capped = catalog.folder.load(csv, max_per_set=1)
    assert [len(s) for s in capped.sets] == [1, 1, 2]


def test_csv_without_set_column(tmp_path):
    _fill(tmp_path / "r", 2, "r")
    _fill(tmp_path / "f", 2, "f")
    csv = tmp_path / "m.csv"
    csv.write_text("label,path\n0,r/r000.png\n0,r/r001.png\n1,f/f000.png\n1_fake,f/f001.png\n")
    suite = catalog.folder.load(csv)
    assert _names(suite) == ["real", "fake"] and suite.set("fake").real_set == "real"


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,set\na.png,x\n", "missing label"),
        ("path,label\na.png,maybe\n", r"line 2: label must be 0/1 or real/fake, got 'maybe'"),
        ("path,label\na.png,0\n,1\n", "line 3: empty path"),
        ("path,label\n", "no rows"),
        ("path,label,set\nr/r000.png,0,a\nr/r000.png,0,b\nr/r000.png,1,c\n", "found several"),
        ("path,label\nnope/x.png,0\nnope/y.png,1\n", "none of its 2 files exist"),
        ("path,label,set\nr/r000.png,0,coco\n", "only real images"),
        ("path,label,set\nr/r000.png,0,coco\nr/r000.png,1,Avg\n", "a set may not be named 'Avg'"),
    ],
)
def test_csv_errors_name_the_file_and_row(tmp_path, content, message):
    _fill(tmp_path / "r", 1, "r")
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(BenchError, match=message) as info:
        catalog.folder.load(csv)
    assert str(csv) in str(info.value)


def test_csv_that_is_not_utf8_is_named(tmp_path):
    csv = tmp_path / "latin1.csv"
    csv.write_bytes("path,label\ncaf\xe9.png,0\n".encode("latin-1"))  # what a spreadsheet may save
    with pytest.raises(BenchError, match="not UTF-8 text") as info:
        catalog.folder.load(csv)
    assert str(csv) in str(info.value)


# --------------------------------------------------------------------------- Hugging Face datasets


def test_hf_dataset_from_disk(tmp_path):
    import datasets
    files = [_img(tmp_path / "src" / f"{i}.{'jpg' if i % 2 else 'png'}", seed=i) for i in range(6)]
    ds = datasets.Dataset.from_dict(
        {"image": [str(p) for p in files], "label": [0, 1, 0, 1, 0, 0], "gen": ["a", "real", "a", "real", "b", "b"]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=["fake", "real"]), "gen": datasets.Value("string")}
        ),
    )
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": ds}).save_to_disk(str(saved))
    cache = tmp_path / "cache"
    suite = from_hf_dataset(str(saved), "test", "image", "label", "gen", cache)
    assert _names(suite) == ["real", "a", "b"]
    assert suite.set("real").kind == "real" and suite.set("a").real_set == "real"
    assert {r.label for r in suite.set("real").records} == {REAL}  # ClassLabel index 1 is named "real": label 0
    assert {r.label for r in suite.set("a").records} == {FAKE}
    for rec in suite.records:
        data = Path(rec.path).read_bytes()
        assert Path(rec.path).parent == cache and Path(rec.path).stem == hashlib.sha256(data).hexdigest()
        assert data in {p.read_bytes() for p in files}  # the original encoded bytes, not re-encoded
    assert {Path(r.path).suffix for r in suite.records} == {".png", ".jpg"}
    stamp = {r.path: os.stat(r.path).st_mtime_ns for r in suite.records}
    again = from_hf_dataset(str(saved), "test", "image", "label", "gen", cache)
    assert again == suite and stamp == {r.path: os.stat(r.path).st_mtime_ns for r in again.records}
    assert not [p for p in cache.iterdir() if p.name.startswith(".part-")]
    # the cap keeps the first rows of each set in dataset order and writes only those
    cache2 = tmp_path / "cache2"
    capped = from_hf_dataset(str(saved), "test", "image", "label", "gen", cache2, max_per_set=1)
    assert [len(s) for s in capped.sets] == [1, 1, 1] and len(list(cache2.iterdir())) == 3
    assert Path(capped.set("b").records[0].path).read_bytes() == files[4].read_bytes()


def test_hf_dataset_errors_and_default_sets(tmp_path):
    import datasets
    files = [_img(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    ds = datasets.Dataset.from_dict({"img": [str(p) for p in files], "is_fake": ["real", "fake", "fake"]})
    ds = ds.cast_column("img", datasets.Image())
    ds.save_to_disk(str(tmp_path / "one"))
    suite = from_hf_dataset(str(tmp_path / "one"), "train", "img", "is_fake", cache_dir=tmp_path / "c")
    assert _names(suite) == ["real", "fake"] and len(suite.set("fake")) == 2
    with pytest.raises(BenchError, match="no column 'image'"):
        from_hf_dataset(str(tmp_path / "one"), "train", cache_dir=tmp_path / "c")
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(BenchError, match="no split 'test'; has train"):
        from_hf_dataset(str(tmp_path / "dd"), "test", "img", "is_fake", cache_dir=tmp_path / "c")


# --------------------------------------------------------------------------- AIGI-mini


@pytest.fixture()
def fake_world(tmp_path) -> Path:
    """A tree with the AIGI-mini world's layout and manifest (suites/mini builds the real one)."""
    world = tmp_path / "world"
    gens = [("ldm", "LDM", True), ("vqgan", "VQGAN", False), ("pixelcnn", "PixCNN", False), ("wildgan", "WildGAN", False)]
    manifest = {"seed": 0, "generators": [{"name": n, "display_name": d, "training": t} for n, d, t in gens], "files": {}}
    world.mkdir()
    (world / "manifest.json").write_text(json.dumps(manifest))
    _fill(world / "test/real", 4)
    for n, _, _ in gens[:3]:
        _fill(world / "test/fake" / n, 3, n)
    _fill(world / "wild/real", 2)
    _fill(world / "wild/fake/wildgan", 2)
    _fill(world / "wild/fake/extra", 1)  # a folder the manifest does not list
    return world


def test_mini_suites_on_a_world_tree(fake_world):
    suite = catalog.mini.load(fake_world, max_per_set=2)
    assert _names(suite) == ["real", "ldm", "vqgan", "pixelcnn"]
    assert [s.display_name for s in suite.sets] == ["Real", "LDM", "VQGAN", "PixCNN"]
    assert all(s.kind == "generator" and s.real_set == "real" and len(s) == 2 for s in suite.sets[1:])
    assert "Missing: WildGAN" in suite.description  # every generator is expected in the test split
    wild = catalog.mini_wild.load(fake_world)
    assert wild.name == "mini-wild" and _names(wild) == ["real", "wildgan", "extra"]
    assert [s.kind for s in wild.sets] == ["real", "wild", "wild"] and wild.set("extra").display_name == "extra"
    assert "Missing" not in wild.description
    assert catalog.mini.availability(fake_world) is None
    assert "no AIGI-mini world" in catalog.mini.availability(fake_world / "nope")


def test_mini_world_with_broken_manifest(fake_world):
    (fake_world / "manifest.json").write_text("{not json")
    with pytest.raises(MissingDataError, match="manifest.json"):
        catalog.mini.load(fake_world)


# --------------------------------------------------------------------------- registry


def test_registered_suites():
    expected = {"mini": "mini", "mini-wild": "mini", "synthetic": "official", "wild": "official",
                "inpainted": "official", "folder": "official"}
    for name, tag in expected.items():
        suite = get_suite(name)
        assert isinstance(suite, SuiteSource) and suite.name == name and suite.description
        assert suite.weights_tag == tag
    assert isinstance(catalog.folder, FolderSource)


def test_hf_spec_through_the_folder_suite_and_the_cli(tmp_path, capsys, monkeypatch):
    """`--data-root hf:<saved dataset>?...`: an imagefolder-style dataset whose ClassLabel is the
    folder name, labelled through real=; then a bad spec and an unreachable Hub id."""
    import datasets
    from bench_cli import main
    from suites.hub import parse_hf_spec

    files = [_img(tmp_path / "src" / f"{i}.png", seed=i) for i in range(6)]
    ds = datasets.Dataset.from_dict({"image": [str(p) for p in files], "label": [0, 0, 1, 1, 2, 2]},
                                    features=datasets.Features({"image": datasets.Image(),
                                                                "label": datasets.ClassLabel(names=["0_real", "flux", "sd"])}))
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": ds}).save_to_disk(str(saved))
    spec = f"hf:{saved}?set=label&real=0_real"
    assert parse_hf_spec(spec) == {"dataset": str(saved), "set_column": "label", "real_sets": ["0_real"]}
    suite = FolderSource().load(spec, max_per_set=1)
    assert _names(suite) == ["0_real", "flux", "sd"] and suite.set("sd").real_set == "0_real"
    assert [r.label for r in suite.records] == [REAL, FAKE, FAKE]

    with pytest.raises(BenchError, match="bad option 'colour'"):
        parse_hf_spec(f"hf:{saved}?colour=red")
    with pytest.raises(BenchError, match="no set named 1_real"):
        FolderSource().load(f"hf:{saved}?set=label&real=1_real")
    # the CLI hands --data-root to the same parser: a real detector name gets past the name check
    # (nothing is built or downloaded before the suite loads), then the spec is refused offline
    monkeypatch.setenv("AIGI_BENCH_HOME", str(tmp_path / "home"))  # nothing of the user's cache is touched
    capsys.readouterr()
    rc = main(["run", "--suite", "folder", "--data-root", f"hf:{saved}?set=label&colour=red", "--detectors", "npr.mini",
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0 and "bad option 'colour'" in err and "Traceback" not in err
    # a well-formed spec parses and reaches the dataset itself: its own set check answers
    rc = main(["run", "--suite", "folder", "--data-root", f"hf:{saved}?set=label&real=1_real", "--detectors", "npr.mini",
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0 and "no set named 1_real" in err and "bad option" not in err
    assert not (tmp_path / "r").exists()  # refused before any run folder was made
    with pytest.raises(MissingDataError, match="could not be loaded.*save_to_disk"):
        FolderSource().load(f"hf:{tmp_path / 'not-a-dataset'}?split=test")


def test_layout_suite_from_a_hub_dataset_repository(tmp_path, monkeypatch):
    """`--data-root hf:<owner>/<name>/<sub>` for a folder layout: the repository's files are
    fetched once into $AIGI_BENCH_HOME/hf-datasets and <sub> is the data root. The download
    is replaced by a local fake (no network here); its arguments are checked."""
    import huggingface_hub
    from suites.hub import hub_snapshot

    calls = []

    def fake_download(repo_id, *, repo_type, local_dir, **kw):
        calls.append((repo_id, repo_type))
        root = Path(local_dir) / "dataset"
        _img(root / "test/real/redcaps/r0.png", seed=0)
        _img(root / "test/fake/flux/f0.png", seed=1)
        return local_dir

    monkeypatch.setenv("AIGI_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr("bench.weights.hub_offline", lambda: None)  # as on a machine with a network
    hub_snapshot.cache_clear()
    suite = catalog.synthetic.load("hf:someone/DearLayout/dataset")
    assert _names(suite) == ["redcaps", "flux"] and calls == [("someone/DearLayout", "dataset")]
    assert suite.source == str(tmp_path / "home" / "hf-datasets" / "someone" / "DearLayout" / "dataset")
    assert catalog.synthetic.availability("hf:someone/DearLayout/dataset") is None and len(calls) == 1  # once per process

    def offline(repo_id, **kw):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    hub_snapshot.cache_clear()
    with pytest.raises(MissingDataError, match="could not be downloaded.*huggingface-cli download other/Repo"):
        catalog.synthetic.load("hf:other/Repo")
    assert "could not be downloaded" in catalog.synthetic.availability("hf:other/Repo")
    with pytest.raises(BenchError, match="expected hf:<owner>/<name>"):
        hub_snapshot("hf:justaname")
    hub_snapshot.cache_clear()


def test_one_hf_grammar_for_layouts_and_datasets(tmp_path):
    """Both readers of `hf:` parse it the same way: <owner>/<name>, a folder inside, options.
    The folder suite passes the folder as the dataset's data_dir; a layout refuses options,
    which only describe a dataset's columns."""
    from suites.hub import HubLocation, hub_snapshot, parse_hf_spec

    assert parse_hf_spec("hf:owner/name/sub/dir?split=train&real=0_real,redcaps") == {
        "dataset": "owner/name", "data_dir": "sub/dir", "split": "train", "real_sets": ["0_real", "redcaps"]}
    where = HubLocation.parse("hf:owner/name/sub/dir?split=train")
    assert (where.source, where.subdir, where.options) == ("owner/name", "sub/dir", (("split", "train"),))
    assert HubLocation.parse(f"hf:{tmp_path}").source == str(tmp_path)  # a saved folder is one location, slashes and all
    with pytest.raises(BenchError, match="only the folder suite reads"):
        hub_snapshot("hf:owner/name?split=test")
    with pytest.raises(BenchError, match="needs no hf: prefix"):
        hub_snapshot(f"hf:{tmp_path}")
    with pytest.raises(BenchError, match="bad option 'splt'; did you mean 'split'"):
        parse_hf_spec("hf:owner/name?splt=test")
