"""The probe workbench (probes/, `bench probe`): embeddings through the scoring loop (equal to a
direct forward, resumed from the store), the LR grid and the batched fits against scikit-learn,
the transfer matrix on embeddings whose answer is known, feature removal, head selection, text
interpretation on a tiny random open_clip, the clip-lr detector, and every bad input of the issue."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.api import BenchError
from probes.data import Embeddings, Problem, Splits
from probes.spec import EncoderSpec, ProbeError, encoder_spec
from probes.steps import Common
from tests.conftest import make_folder_suite

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL_GRID = {"solver": ("lbfgs",), "C": (0.1, 1.0), "max_iter": (100,)}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A tiny random open_clip CLIP with its text tower, saved as the backbone file of a key."""
    from safetensors.torch import save_file

    from detectors.clip.build import tiny_open_clip

    torch.manual_seed(0)
    model = tiny_open_clip(width=128, heads=2, layers=2, patch=8, image=32, embed_dim=16, with_text=True)
    path = tmp_path_factory.mktemp("clip") / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_folder_suite(tmp_path_factory.mktemp("suite") / "data", n_real=10, n_fake=10, sets=("gan", "diff", "vq"),
                             sizes=((32, 32), (36, 40)))


def _embed(data_dir, out, spec: EncoderSpec, **kw):
    from probes.embed import EmbedConfig, embed

    config = EmbedConfig("folder", spec, out=out, data_root=str(data_dir), workers=0, batch_size=8, **kw)
    return embed(config, progress=False)


@pytest.fixture(scope="module")
def clip_embeddings(clip_file, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    res = _embed(data_dir, out, encoder_spec("clip:openai-vit-l-14", "embed", str(clip_file)), post_process=True,
                 chain="jpeg:quality=75")
    return res, out


# --------------------------------------------------------------------------- embeddings


def test_embeddings_equal_a_direct_forward_and_resume_from_the_store(clip_embeddings, clip_file, data_dir):
    res, out = clip_embeddings
    emb = Embeddings.load(res.folder)
    assert res.computed == res.count == 2 * 40 and not res.errors and emb.dim == 16
    assert emb.conditions == ["original", "jpeg:quality=75@seed=0,px"] and emb.generators == ["diff", "gan", "vq"]
    from probes.encoders import ClipFeatures, load_clip_encoder

    spec = emb.encoder
    embedder = ClipFeatures(load_clip_encoder(spec), spec)
    row = emb.index[(emb.index["condition_key"] == "original")].iloc[3]
    x = embedder.prepare(embedder.preprocess()(Image.open(row["path"]).convert("RGB"))[None])
    torch.testing.assert_close(torch.as_tensor(emb.vectors[row.name]), embedder.forward(x)[0], atol=1e-5, rtol=0)
    pp = emb.index[(emb.index["path"] == row["path"]) & (emb.index["condition_key"] != "original")].iloc[0]
    assert not np.allclose(emb.vectors[pp.name], emb.vectors[row.name], atol=1e-4)  # the JPEG copy was embedded
    # a killed run loses only what it had not stored: drop some vectors, rerun, only those are computed
    db = sqlite3.connect(str(out / "cache.sqlite"))
    db.execute("DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors LIMIT 5)")
    db.commit()
    db.close()
    again = _embed(data_dir, out, spec, post_process=True, chain="jpeg:quality=75")
    assert again.computed == 5
    np.testing.assert_allclose(Embeddings.load(again.folder).vectors, emb.vectors, atol=1e-6)


def test_sharded_embedding_gathers_into_the_same_folder(clip_embeddings, clip_file, data_dir, tmp_path):
    """Two shards embed disjoint halves into their own stores and write no folder; the unsharded
    call computes nothing and writes the vectors a single process wrote."""
    res, _ = clip_embeddings
    spec = encoder_spec("clip:openai-vit-l-14", "embed", str(clip_file))
    out = tmp_path / "sharded"
    kw = dict(post_process=True, chain="jpeg:quality=75")
    parts = [_embed(data_dir, out, spec, shard=f"{k}/2", **kw) for k in range(2)]
    assert all(p.shard and not p.errors for p in parts) and not (out / "embed").exists()
    assert sum(p.computed for p in parts) == res.count and min(p.computed for p in parts) > 0
    assert sorted(f.name for f in out.glob("cache.shard-*.sqlite")) == ["cache.shard-0-of-2.sqlite", "cache.shard-1-of-2.sqlite"]
    gathered = _embed(data_dir, out, spec, shard="all", **kw)
    assert gathered.computed == 0 and gathered.count == res.count
    mine, single = Embeddings.load(gathered.folder), Embeddings.load(res.folder)
    pd.testing.assert_frame_equal(mine.index[["path", "condition_key"]], single.index[["path", "condition_key"]])
    np.testing.assert_allclose(mine.vectors, single.vectors, atol=1e-6)


def test_pooled_features_are_what_the_head_reads():
    """corvi.mini's tap 'pooled' is the penultimate vector: its head on it gives the detector's logit."""
    from bench import registry
    from probes.encoders import PooledFeatures

    det = registry.create_detector("corvi.mini")
    emb = PooledFeatures(det, encoder_spec("corvi.mini"))
    rng = np.random.default_rng(0)
    x = det.prepare(torch.stack([det.preprocess()(Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)))] * 2))
    f = emb.forward(x)
    assert f.shape == (2, emb.dim) and emb.fingerprint.endswith("#tap=pooled")
    with torch.inference_mode():
        torch.testing.assert_close(det.model.head(f).squeeze(1), det.forward(x), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- fits


def _blobs(n: int, d: int, shift: np.ndarray, seed: int) -> Problem:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2 * n, d))
    x[n:] += shift
    y = np.r_[np.zeros(n), np.ones(n)].astype(np.int64)
    return Problem(x, y, np.arange(2 * n))


def test_lr_grid_has_no_intercept_and_positive_means_fake():
    from sklearn.linear_model import LogisticRegression

    from probes.lr import fit_lr

    p = _blobs(40, 6, np.r_[2.0, np.zeros(5)], 0)
    fit = fit_lr(p, grid=SMALL_GRID)
    assert fit.grid_size == 2 and fit.weight[0] > 0  # fakes lie along +e0: positive logits
    ref = LogisticRegression(fit_intercept=False, C=fit.C, max_iter=fit.max_iter).fit(p.x, p.y).coef_[0]
    np.testing.assert_allclose(fit.weight, ref, atol=1e-6)


def test_batched_fits_reach_scikit_learn_masked_and_blocks():
    from sklearn.linear_model import LogisticRegression

    from probes.batched import Blocks, Masked, fit

    p = _blobs(30, 8, np.r_[1.0, -1.0, np.zeros(6)], 1)
    p = Problem(p.x * np.linspace(0.2, 4, 8), p.y, p.rows)  # unequal scales: the preconditioner matters
    masks = torch.ones(2, 8, dtype=torch.float64)
    masks[1, :3] = 0
    w = fit(Masked(torch.tensor(p.x), masks), torch.tensor(p.y), 0.5, iters=3000, tol=1e-10)
    blocks = fit(Blocks(torch.tensor(p.x).reshape(60, 2, 4)), torch.tensor(p.y), 0.5, iters=3000, tol=1e-10)
    for j, cols in enumerate([slice(0, 8), slice(3, 8)]):
        ref = LogisticRegression(fit_intercept=False, C=0.5, tol=1e-12, max_iter=10000).fit(p.x[:, cols], p.y).coef_[0]
        np.testing.assert_allclose(w[j].numpy()[cols], ref, atol=1e-5)
    assert float(w[1, :3].abs().max()) == 0.0
    for j in range(2):
        ref = LogisticRegression(fit_intercept=False, C=0.5, tol=1e-12, max_iter=10000).fit(p.x[:, 4 * j:4 * j + 4], p.y).coef_[0]
        np.testing.assert_allclose(blocks[j].numpy(), ref, atol=1e-5)


def _synthetic(tmp_path, directions: dict[str, int], d: int = 6, n: int = 20, noise: float = 0.15) -> Embeddings:
    """An embeddings folder whose generator g shifts its fakes along feature directions[g]."""
    from probes.folders import write_folder

    rng = np.random.default_rng(0)
    rows, vecs = [], []
    for i in range(n):
        rows.append({"path": f"real/{i}.png", "image_sha": f"r{i}", "set": "real", "label": 0, "condition_key": "original",
                     "set_kind": "real", "real_set": None, "condition": "Original", "params": "{}"})
        vecs.append(rng.normal(scale=noise, size=d) + 1.0)
    for g, axis in directions.items():
        for i in range(n):
            rows.append({"path": f"{g}/{i}.png", "image_sha": f"{g}{i}", "set": g, "label": 1, "condition_key": "original",
                         "set_kind": "generator", "real_set": "real", "condition": "Original", "params": "{}"})
            v = rng.normal(scale=noise, size=d) + 1.0
            v[axis] += 1.5
            vecs.append(v)
    index, vectors = pd.DataFrame(rows), np.array(vecs, dtype=np.float32)
    manifest = {"encoder": {"name": "corvi.mini", "tap": "pooled", "backbone": None}, "fingerprint": "synthetic", "dim": d,
                "suite": {"name": "synthetic", "sets": [{"name": "real", "kind": "real", "real_set": None}] +
                          [{"name": g, "kind": "generator", "real_set": "real"} for g in directions]},
                "conditions": [{"key": "original", "display": "Original", "spec": None}]}
    folder = tmp_path / "embed" / "synthetic"
    write_folder(folder, "embed", manifest, {"vectors.npy": lambda p: np.save(p, vectors),
                                             "index.csv": lambda p: index.to_csv(p, index=False)})
    return Embeddings.load(folder)


def test_transfer_matrix_follows_the_shared_directions(tmp_path):
    """a and c move fakes along one feature, b along another: a's probe finds c's fakes, not b's."""
    from probes.transfer import transfer_matrix

    emb = _synthetic(tmp_path, {"a": 0, "b": 3, "c": 0})
    splits = Splits(emb)
    assert set(splits.part("real", "test")["path"]) == set(Splits(emb).part("real", "test")["path"])  # seeded
    m = transfer_matrix(splits, "lr", grid=SMALL_GRID, groups={"one": ["a", "c"], "two": ["b"]})
    acc = pd.DataFrame(m.accuracy, index=m.generators, columns=m.generators)
    assert acc.loc["a", "c"] >= 90 and acc.loc["c", "a"] >= 90 and acc.loc["a", "a"] >= 90
    assert acc.loc["a", "b"] <= 75 and acc.loc["b", "a"] <= 75
    table = m.table()
    assert table.loc["a", "avg"] == pytest.approx((acc.loc["a", "b"] + acc.loc["a", "c"]) / 2)
    assert table.loc["avg", "b"] == pytest.approx((acc.loc["a", "b"] + acc.loc["c", "b"]) / 2)
    groups = m.group_table().set_index(["train_group", "test_group"])["accuracy"]
    assert groups[("one", "one")] == pytest.approx((acc.loc["a", "c"] + acc.loc["c", "a"]) / 2)
    res = transfer_matrix(splits, "residual")
    direction = res.probes["a"].direction
    assert int(np.argmax(direction)) == 0 and res.accuracy[0, 2] >= 90


def test_feature_removal_drops_the_misleading_feature_and_resumes(tmp_path):
    """Train on a (feature 0 and a decoy 4), test on b (feature 0 only, decoy reversed): removing
    feature 4 first is the greedy step that helps, and a second search reads the checkpoint."""
    from probes import removal

    rng = np.random.default_rng(3)
    n, d = 40, 6

    def problem(decoy: float) -> Problem:
        x = rng.normal(size=(2 * n, d))
        y = np.r_[np.zeros(n), np.ones(n)].astype(np.int64)
        x[y == 1, 0] += 0.8
        x[y == 1, 4] += decoy
        return Problem(x, y, np.arange(2 * n))

    train, ood = problem(3.0), problem(-3.0)
    ckpt = tmp_path / "ckpt.npz"
    path = removal.search(train, ood, 1.0, checkpoint=ckpt, progress=False, max_removed=3)
    assert path.order[0] == 4 and path.accuracy[1] > path.accuracy[0] + 10
    assert 4 not in path.kept(d) and 0 in path.kept(d)
    again = removal.search(train, ood, 1.0, checkpoint=ckpt, progress=False, max_removed=3)  # resumed: nothing to do
    assert again.order == path.order
    kept = [np.array([0, 1, 2]), np.array([0, 5])]
    assert removal.combine(kept, "kept-union", d).tolist() == [0, 1, 2, 5]
    assert removal.combine(kept, "removed-union", d).tolist() == [0]
    iso = removal.isotropy(rng.normal(size=(500, 4)))
    assert 0.5 < iso <= 1.0 and removal.isotropy(rng.normal(size=(500, 4)) * [10, 1, 1, 1] + 5) < iso


# --------------------------------------------------------------------------- steps on the tiny CLIP


def test_fit_install_and_clip_lr_scores_like_the_probe(clip_embeddings, tmp_path, monkeypatch):
    from bench import registry
    from detectors.head import refit_head
    from probes.steps import fit_step

    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))
    res, out = clip_embeddings
    result = fit_step(Common(res.folder, tmp_path / "probe"), "gan", install=True, grid=SMALL_GRID)
    assert result["installed"] == "clip-lr.clip-openai-vit-l-14-gan"
    det = registry.create_detector(result["installed"])
    emb = Embeddings.load(res.folder)
    rows = emb.index[(emb.index["condition_key"] == "original")].head(4)
    images = [Image.open(p).convert("RGB") for p in rows["path"]]
    from probes.probe_file import ProbeFile

    probe = ProbeFile.load(tmp_path / "weights" / "clip-lr" / "clip-openai-vit-l-14-gan.safetensors")
    np.testing.assert_allclose(det.score(images), emb.vectors[rows.index] @ probe.weight, atol=1e-4)
    assert det.info.family == "CLIP" and float(det.model.head.bias.detach()) == 0.0
    x = det.prepare(torch.stack([det.preprocess()(im) for im in images]))
    y = torch.tensor([0, 1, 0, 1])
    refit_head(det.model, [(x, y)], [(x, y)], nonneg=True, max_epochs=1, progress=False)  # Stay-Positive applies
    assert float(det.model.head.weight.detach().min()) >= 0


def test_residual_directions_and_explain_read_the_text_tower(clip_embeddings, tmp_path):
    from probes.steps import explain_step, transfer_step

    res, _ = clip_embeddings
    t = transfer_step(Common(res.folder, tmp_path), "residual", groups="a=gan,vq;b=diff")
    folder = tmp_path / "transfer" / f"{res.folder.name}-residual-original"
    assert t["folder"] == str(folder) and (folder / "transfer_accuracy.png").is_file()
    assert (folder / "groups_accuracy.csv").is_file() and pd.read_csv(folder / "transfer_accuracy.csv").shape == (4, 5)
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("a photo\nblurry edges\nsharp noise\n")
    out = explain_step(folder, tmp_path, k=3, vocab_limit=50, phrases=phrases)
    table = out["table"]
    assert out["vocabulary"] == 50 and set(table["kind"]) == {"token", "phrase"}
    assert set(table["direction"]) == {"residual.diff", "residual.gan", "residual.vq"}
    # the cosine printed is the cosine of the direction with that text's embedding
    from probes.encoders import load_clip_encoder

    enc = load_clip_encoder(EncoderSpec.from_json(json.loads((folder / "manifest.json").read_text())["encoder"]), with_text=True)
    from bench.weights import load_state

    d = load_state(folder / "directions.safetensors")["residual.gan"].double().numpy()
    row = table[(table["direction"] == "residual.gan") & (table["kind"] == "phrase")].iloc[0]
    with torch.no_grad():
        v = enc.text([row["text"]])[0].double().numpy()
    assert row["cosine"] == pytest.approx(float(v @ d / np.linalg.norm(v) / np.linalg.norm(d)), abs=1e-3)


def test_head_tap_sums_to_the_embedding_and_selection_runs(clip_file, data_dir, tmp_path):
    """The stored per-head vectors are the heads' projected contributions: with the projected MLP
    and embedding terms they add up to the image embedding (Gandelsman et al.'s split)."""
    from detectors.clip.contributions import decompose, project
    from probes.encoders import ClipFeatures, load_clip_encoder
    from probes.steps import heads_step

    spec = encoder_spec("clip:openai-vit-l-14", "heads", str(clip_file))
    res = _embed(data_dir, tmp_path, spec)
    emb = Embeddings.load(res.folder)
    assert emb.manifest["layout"] == [2, 2, 16] and emb.dim == 64
    enc = load_clip_encoder(spec)
    feats = ClipFeatures(enc, spec)
    x = feats.prepare(feats.preprocess()(Image.open(emb.index.iloc[0]["path"]).convert("RGB"))[None])
    with torch.no_grad():
        c = project(enc, decompose(enc, x))
        total = torch.as_tensor(emb.vectors[0]).view(2, 2, 16).sum(dim=(0, 1)) + c.embedding[0] + c.mlps[0].sum(0)
        torch.testing.assert_close(total, enc.embed(x, "embed")[0], atol=1e-5, rtol=0)
    out = heads_step(Common(res.folder, tmp_path), "gan", "vq", top=2, grid=SMALL_GRID)
    assert len(out["top"]) == 2 and "vq" not in out["accuracy"].columns
    ranking = pd.read_csv(tmp_path / "heads" / f"{res.folder.name}-gan-vq-original" / "head_ranking.csv")
    assert len(ranking) == 4 and ranking["accuracy"].is_monotonic_decreasing


def test_probe_commands_are_wired(clip_embeddings, tmp_path):
    from bench_cli import main

    res, _ = clip_embeddings
    assert main(["probe", "transfer", "--embeddings", str(res.folder), "--out", str(tmp_path), "--method", "residual",
                 "--condition", "post-processed"]) == 0
    assert (tmp_path / "transfer" / f"{res.folder.name}-residual-jpeg-quality-75-seed-0-px").is_dir()


# --------------------------------------------------------------------------- bad input (each before heavy work)


def test_explain_refuses_a_vision_only_encoder(tmp_path):
    from probes.steps import explain_step, transfer_step

    emb = _synthetic(tmp_path, {"a": 0, "b": 3})
    transfer_step(Common(emb.folder, tmp_path), "residual")
    with pytest.raises(ProbeError, match="vision-only .* no text tower"):
        explain_step(tmp_path / "transfer" / "synthetic-residual-original", tmp_path)


def test_a_transfer_matrix_needs_two_generators(tmp_path):
    from probes.steps import transfer_step

    emb = _synthetic(tmp_path, {"a": 0})
    with pytest.raises(ProbeError, match="at least two generators .* have 1: a"):
        transfer_step(Common(emb.folder, tmp_path), "lr")
    assert not (tmp_path / "transfer").exists()


def test_a_search_pair_naming_an_absent_generator(tmp_path, monkeypatch):
    from probes import steps

    emb = _synthetic(tmp_path, {"a": 0, "b": 3})
    monkeypatch.setattr(steps, "fit_lr", lambda *a, **k: pytest.fail("fitted before checking the pair"))
    with pytest.raises(ProbeError, match="generator 'bb' is not in .*did you mean 'b'"):
        steps.removal_step(Common(emb.folder, tmp_path), ["a", "bb"])


def test_a_split_with_one_class_is_refused(tmp_path):
    from probes.steps import fit_step

    emb = _synthetic(tmp_path, {"a": 0, "b": 3}, n=1)  # one image per set: the 7:3 cut leaves the test split empty
    with pytest.raises(ProbeError, match="needs reals and fakes, but holds only"):
        fit_step(Common(emb.folder, tmp_path), "a")


def test_removal_that_would_leave_no_feature(tmp_path):
    from probes.steps import removal_step, transfer_step

    emb = _synthetic(tmp_path, {"a": 0, "b": 3})
    with pytest.raises(ProbeError, match="--max-removed 6 with 6 features would leave 0"):
        removal_step(Common(emb.folder, tmp_path), ["a", "b"], max_removed=6)
    empty = tmp_path / "kept.csv"
    empty.write_text("feature\n")
    with pytest.raises(ProbeError, match="keeps 0 features"):
        transfer_step(Common(emb.folder, tmp_path), "lr", features=str(empty))


def test_encoder_names_and_taps_are_checked_before_loading():
    with pytest.raises(BenchError, match="unknown CLIP backbone 'openai-vit-l-41'.*did you mean"):
        encoder_spec("clip:openai-vit-l-41")
    with pytest.raises(ProbeError, match="has no tap 'embed'; its taps: pooled"):
        encoder_spec("corvi.mini", "embed")
    with pytest.raises(BenchError, match="unknown detector"):
        encoder_spec("corvy.mini")
