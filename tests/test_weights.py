"""Weight tags: where a tag resolves (explicit file, weights folder, bundled file, Hub), the bundled
.mini weights themselves, and checkpoints saved on a GPU loading on a CPU-only machine."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.api import MissingWeightsError, WeightSpec
from bench.registry import create_detector
from bench.weights import bundled_path, load_state, resolve, save_state, sha256_file

SHARED = Path(__file__).resolve().parents[2] / "shared"
BUNDLED = ["corvi", "rajan", "corvi-plus", "rajan-plus", "npr", "dear-r"]


def test_resolution_order(tmp_path, monkeypatch):
    """An explicit file, then $AIGI_BENCH_WEIGHTS/<detector>/<filename>, then the bundled file,
    and the Hub only when none of those exists."""
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))
    hub_calls: list[tuple[str, str]] = []

    def hub(repo: str, filename: str) -> str:
        hub_calls.append((repo, filename))
        got = tmp_path / "hub" / filename
        got.parent.mkdir(parents=True, exist_ok=True)
        got.write_bytes(b"hub")
        return str(got)

    monkeypatch.setitem(sys.modules, "huggingface_hub", SimpleNamespace(hf_hub_download=hub))
    monkeypatch.setattr("bench.weights.hub_offline", lambda: None)  # as on a machine with a network
    bundled = "detectors:weights/corvi.mini.safetensors"
    spec = WeightSpec("mini", "corvi.mini.safetensors", hf_repo="owner/repo", bundled=bundled)
    assert resolve("corvi", spec) == bundled_path(spec)  # nothing local: the bundled file
    cached = tmp_path / "weights" / "corvi" / "corvi.mini.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cached")
    assert resolve("corvi", spec) == cached  # the weights folder beats the bundled file
    explicit = tmp_path / "mine.safetensors"
    explicit.write_bytes(b"mine")
    assert resolve("corvi", spec, explicit) == explicit  # an explicit file beats everything
    assert hub_calls == []
    hub_only = WeightSpec("official", "w.pth", hf_repo="owner/repo", hf_filename="sub/w.pth")
    assert resolve("corvi", hub_only).read_bytes() == b"hub" and hub_calls == [("owner/repo", "sub/w.pth")]
    with pytest.raises(MissingWeightsError, match="no file at"):
        resolve("corvi", spec, tmp_path / "absent.pth")


def test_download_urls_use_torch_hub_cache(tmp_path, monkeypatch):
    """A tag with a `url` (torchvision / torch.hub files): the weights folder first, then torch's
    hub cache (on this machine = "local"), then the download into that cache, checked against the
    sha256 prefix in the file name."""
    from bench import weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))
    spec = WeightSpec("official", "vgg16-397923af.pth", url="https://example.invalid/vgg16-397923af.pth")
    assert weights.status("aeroblade", spec) == "download"
    fetched: list[tuple[str, str, str | None]] = []

    def download(url, dest, hash_prefix=None, progress=True):
        fetched.append((url, dest, hash_prefix))
        if "offline" in url:
            raise OSError("offline")
        Path(dest).write_bytes(b"vgg")

    monkeypatch.setattr("torch.hub.download_url_to_file", download)
    offline = WeightSpec("official", "dinov2_vitl14_pretrain.pth", url="https://offline.invalid/x.pth")
    with pytest.raises(MissingWeightsError, match="TORCH_HOME") as err:
        resolve("warpad", offline)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "dinov2_vitl14_pretrain.pth") in str(err.value)
    assert fetched[0][2] is None  # no hash in that name: nothing to check
    fetched.clear()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert resolve("aeroblade", spec) == cached and fetched == [(spec.url, str(cached), "397923af")]
    assert weights.status("aeroblade", spec) == "local" and resolve("aeroblade", spec) == cached and len(fetched) == 1
    mine = weights.local_path("aeroblade", spec)
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    assert resolve("aeroblade", spec) == mine  # the user's weights folder comes first


def test_offline_hub_names_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))

    def offline(repo: str, filename: str) -> str:
        raise OSError("no network")

    monkeypatch.setitem(sys.modules, "huggingface_hub", SimpleNamespace(hf_hub_download=offline))
    monkeypatch.setattr("bench.weights.hub_offline", lambda: None)  # the network looks up; the download fails
    spec = WeightSpec("official", "model_best.pth", hf_repo="org/ckpts", hf_filename="dear_c/model_best.pth", where="See the paper.")
    with pytest.raises(MissingWeightsError) as exc:
        resolve("dear-c", spec)
    message = str(exc.value)
    assert str(tmp_path / "weights" / "dear-c" / "model_best.pth") in message
    assert "Hugging Face org/ckpts/dear_c/model_best.pth: OSError" in message and "See the paper." in message


def test_offline_mode_fails_at_once_without_trying_the_hub(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE (or no route to the Hub) is said at once, naming the path to put the file
    at: huggingface_hub would otherwise retry for about half a minute per file."""
    import bench.weights

    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "weights"))
    calls = []
    monkeypatch.setitem(sys.modules, "huggingface_hub", SimpleNamespace(hf_hub_download=lambda *a: calls.append(a)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert bench.weights.hub_offline() == "HF_HUB_OFFLINE is set"
    spec = WeightSpec("official", "model_best.pth", hf_repo="org/ckpts", hf_filename="dear_c/model_best.pth")
    with pytest.raises(MissingWeightsError, match=r"Put the file at .*dear-c/model_best.pth.*HF_HUB_OFFLINE is set"):
        resolve("dear-c", spec)
    assert calls == []  # the download was never tried
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    bench.weights._hub_reachable.clear()
    assert bench.weights.hub_offline().startswith("no connection to 127.0.0.1")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_are_what_the_detector_loads(name, monkeypatch, tmp_path):
    monkeypatch.setenv("AIGI_BENCH_WEIGHTS", str(tmp_path / "empty"))
    det = create_detector(name)
    assert det.weights == f"{name}.mini"
    suffix = ".pth" if name.startswith("dear") else ".safetensors"
    package = "dear" if name.startswith("dear") else "detectors"
    spec = WeightSpec("mini", f"{name}.mini{suffix}", bundled=f"{package}:weights/{name}.mini{suffix}")
    assert det.fingerprint == sha256_file(bundled_path(spec))  # scores are cached under the file's digest


def _state(name: str) -> dict[str, torch.Tensor]:
    return dict(create_detector(name).model.state_dict())


@pytest.mark.parametrize("base", ["corvi", "rajan"])
def test_bundled_stay_positive_heads_refit_a_frozen_state(base):
    """Corvi+ and Rajan+ differ from their base in the head only, and that head is non-negative."""
    a, b = _state(base), _state(f"{base}-plus")
    assert a.keys() == b.keys()
    head = {k for k in a if k.endswith("fc.weight") or k.endswith("fc.bias")}
    assert len(head) == 2
    for k in a.keys() - head:
        assert torch.equal(a[k], b[k]), k
    weight = next(b[k] for k in head if k.endswith("weight"))
    assert bool((weight >= 0).all()) and bool((weight > 0).any())


def test_bundled_dear_r_gate_and_state():
    """DEAR-r: Rajan's backbone unchanged, a 0/1 gate pruning int(C * 0.3) channels at each end."""
    rajan, dear = _state("rajan"), _state("dear-r")
    gate = dear.pop("gate.gate")
    channels = gate.numel()
    assert set(gate.unique().tolist()) == {0.0, 1.0}
    assert int(gate.sum()) == channels - 2 * int(channels * 0.3)
    for k, v in rajan.items():
        if "fc." not in k and k != "gate.gate":
            assert torch.equal(v, dear[k]), k


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is absent")
def test_checkpoint_saved_on_a_gpu_loads_on_cpu():
    """Official checkpoints are often saved from CUDA tensors; UFD's released head is one
    (storages tagged cuda:0). It must load here, on CPU, without unpickling code."""
    path = SHARED / "assets" / "ufd" / "fc_weights.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == "477100745713bcc957beb2b40859536859b6483fd6301b3b9293151b194c7847"
    state = load_state(path)
    assert {k: tuple(v.shape) for k, v in state.items()} == {"weight": (1, 768), "bias": (1,)}
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in state.values())


class _Pickled:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


@pytest.mark.parametrize("name, content", [("garbage.pth", b"not a checkpoint"), ("garbage.safetensors", b"\x00" * 16), ("code.pth", None)])
def test_unreadable_checkpoints_are_refused_without_unpickling(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        torch.save({"model": _Pickled()}, path)  # a real pickle of arbitrary objects
    else:
        path.write_bytes(content)
    with pytest.raises(MissingWeightsError, match=f"{name}: not a readable weights-only checkpoint") as exc:
        load_state(path)
    assert "weights_only=False" not in str(exc.value) and "re-saved" in str(exc.value)


def test_save_state_is_atomic(tmp_path, monkeypatch):
    """A save that dies midway (kill, full disk) leaves the previous checkpoint whole, and the
    file is byte-identical to a direct torch.save (torch names the archive after the file)."""
    from bench.weights import save_state

    path = tmp_path / "model_best.pth"
    save_state({"w": torch.ones(3)}, path)
    direct = tmp_path / "direct" / "model_best.pth"
    direct.parent.mkdir()
    torch.save({"w": torch.ones(3)}, str(direct))
    assert sha256_file(path) == sha256_file(direct)

    def dies(obj, f):
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(OSError, match="disk full"):
        save_state({"w": torch.zeros(3)}, path)
    assert torch.equal(load_state(path)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct", "model_best.pth"]  # no staging left behind


def test_concurrent_saves_into_one_folder_do_not_collide(tmp_path):
    """Each save has its own staging folder: two threads saving side by side both succeed."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.weights import save_state

    names = [f"w{i}.safetensors" for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: save_state({"w": torch.full((64, 64), float(len(n)))}, tmp_path / n), names))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth"])
def test_saved_weights_are_readable_by_others_under_the_umask(tmp_path, name):
    """safetensors creates owner-only (0600) files; a checkpoint in a shared results folder or
    install must get the mode any file written with `open` gets (0644 under umask 022)."""
    import os
    import stat

    from bench.files import PLAIN_FILE_MODE

    save_state({"w": torch.zeros(2)}, tmp_path / name)
    mask = os.umask(0)
    os.umask(mask)
    assert PLAIN_FILE_MODE == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == PLAIN_FILE_MODE


def test_a_folder_written_whole_gets_the_mode_mkdir_gives(tmp_path):
    """Run, probe and export folders are staged with mkdtemp (0700) and renamed into place; they
    must end with the mode a plain `mkdir` gives (0755 under umask 022), or others sharing a
    results folder cannot read the run."""
    import stat

    from bench.files import PLAIN_FOLDER_MODE, replace_folder

    (tmp_path / "plain").mkdir()
    with replace_folder(tmp_path / "run") as staging:
        (staging / "a.txt").write_text("x")
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == PLAIN_FOLDER_MODE == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
