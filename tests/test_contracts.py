"""One contract test over everything registered (scikit-learn's `check_estimator` idea).

Every detector, suite and post-processing chain that the installed entry points declare is
checked here, so a new family is tested by registering it: a detector builds from weights that
are on this machine (a bundled tag) or from its declared tiny random model, its preprocessing
gives picklable CHW tensors, its forward one finite logit per image, its metadata is complete and
its weight tags resolve or fail with a clear error.
"""
from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from PIL import Image

from bench import registry
from bench.api import FAMILIES, BenchError, Detector, MissingDependencyError, MissingWeightsError, Suite
from bench.weights import bundled_path, local_path, resolve, status

DETECTORS = sorted(registry.scan("detectors").loaded)
SUITES = sorted(registry.scan("suites").loaded)
CHAINS = sorted(registry.scan("chains").loaded)
SIZES = ((48, 64), (65, 33), (40, 40))  # (H, W): odd, portrait and square inputs


def _images(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]


def _offline_instance(spec: registry.DetectorSpec) -> Detector:
    """The detector from weights on this machine, else its tiny random model."""
    for w in spec.weights:
        if status(spec.name, w) in ("local", "bundled"):
            return registry.create_detector(f"{spec.name}.{w.tag}")
    if spec.tiny is None:
        pytest.fail(f"{spec.name}: no weights on this machine and no tiny model declared; bundle a tag or set `tiny`")
    try:
        return spec.build_tiny()
    except MissingDependencyError as exc:  # e.g. transformers, an optional extra, is not installed here
        pytest.skip(str(exc))


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_metadata_and_weight_tags(name):
    spec = registry.detector_spec(name)
    assert registry.scan("detectors").origin[name], "the distribution providing it is known"
    if not isinstance(spec, registry.DetectorSpec):
        return  # a plain-callable plugin has no metadata to check without building it
    info = spec.info
    assert info.name == name and info.display_name and info.description
    assert info.family in FAMILIES
    assert info.input.describe()
    tags = [w.tag for w in spec.weights]
    assert len(tags) == len(set(tags)) and spec.default_weights in tags
    for w in spec.weights:
        assert w.filename and w.where, f"{name}.{w.tag}: a user must be told where the file comes from"
        state = status(name, w)
        assert state in ("local", "bundled", "download", "missing")
        if state in ("local", "bundled"):
            assert resolve(name, w).is_file()
        elif state == "missing":
            with pytest.raises(MissingWeightsError, match=str(local_path(name, w))):
                resolve(name, w)
        if w.bundled and state != "local":
            assert (bundled_path(w) is not None) == (state == "bundled")


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_scores_images(name):
    spec = registry.detector_spec(name)
    if not isinstance(spec, registry.DetectorSpec):
        pytest.skip("plain-callable plugin")
    torch.manual_seed(0)
    det = _offline_instance(spec)
    assert isinstance(det, Detector) and det.info.name == name
    assert det.weights and det.fingerprint, "scores are cached under the weights' fingerprint"
    prep = det.preprocess()
    pickle.loads(pickle.dumps(prep))  # it runs in DataLoader workers
    images = _images()
    tensors = [prep(im) for im in images]
    for t in tensors:  # float, or 8-bit pixels that `prepare` converts on the device
        assert isinstance(t, torch.Tensor) and t.dim() == 3 and t.shape[0] == 3
        assert t.dtype == torch.uint8 or (t.is_floating_point() and torch.isfinite(t).all())
    if det.info.input.size is not None:
        assert {tuple(t.shape[1:]) for t in tensors} == {det.info.input.size}
    with torch.inference_mode():
        ready = det.prepare(torch.stack([tensors[0], prep(images[0].transpose(Image.FLIP_LEFT_RIGHT))]))
        assert ready.is_floating_point() and torch.isfinite(ready).all()
        out = det.forward(ready)
    assert tuple(torch.as_tensor(out).shape) == (2,) and torch.isfinite(torch.as_tensor(out)).all()
    scores = det.score(images)
    assert scores.shape == (len(images),) and np.isfinite(scores).all()
    np.testing.assert_allclose(det.score(images[::-1])[::-1], scores, rtol=1e-5, atol=1e-5)  # order-free


@pytest.mark.parametrize("name", SUITES)
def test_suite_describes_itself_and_fails_cleanly(name, tmp_path):
    source = registry.get_suite(name)
    assert isinstance(source.name, str) and source.name and source.description
    tag = getattr(source, "weights_tag", None)
    assert tag is None or isinstance(tag, str)
    missing = source.availability(str(tmp_path / "nothing-here"))
    assert isinstance(missing, str) and missing, "an empty data root is reported, not an exception"
    with pytest.raises(BenchError):
        source.load(str(tmp_path / "nothing-here"))


def test_suites_load_as_records(tmp_path, folder_suite_dir):
    """A suite that loads gives image records whose fake sets name a real set of the suite."""
    suite = registry.get_suite("folder").load(str(folder_suite_dir))
    assert isinstance(suite, Suite) and suite.records
    names = {s.name for s in suite.sets}
    for s in suite.sets:
        assert s.kind in ("real", "generator", "wild")
        assert all(r.label in (0, 1) and r.set == s.name for r in s.records)
        assert s.real_set is None or s.real_set in names


@pytest.mark.parametrize("name", CHAINS)
def test_chain_is_seeded_and_canonically_named(name):
    factory = registry.scan("chains").loaded[name]
    params = registry.chain_parameters(factory)
    if params is not None and any(p.default is p.empty for p in params):
        with pytest.raises(BenchError, match="needs parameter"):
            registry.create_chain(name)
        return
    transform = registry.create_chain(name)
    assert transform.name.split(":")[0] == name
    assert registry.create_chain(transform.name).name == transform.name  # the name rebuilds it
    image = _images()[0]
    a, pa = transform(image, random.Random(7))
    b, pb = transform(image, random.Random(7))
    assert isinstance(a, Image.Image) and a.mode == "RGB" and isinstance(pa, dict)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and pa == pb  # the seed decides everything


def test_unknown_family_is_refused():
    """Tables group rows by family: a detector outside FAMILIES would print in no block."""
    with pytest.raises(ValueError, match="family"):
        registry.detector_spec_of("x", "X", "Transformer", "mod:fn")
