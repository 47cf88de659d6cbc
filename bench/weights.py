"""Resolve a weight tag to a local file, and load checkpoints safely.

Resolution order for `corvi.official`:
1. `$AIGI_BENCH_WEIGHTS/corvi/<filename>` (default `$AIGI_BENCH_HOME/weights/corvi/<filename>`);
2. a file bundled with the package (the `.mini` weights trained on AIGI-mini);
3. for a tag with a download `url`: torch's hub cache `$TORCH_HOME/hub/checkpoints/<filename>`,
   where torchvision and torch.hub keep the files they download (ImageNet VGG16, DINOv2);
4. the Hugging Face Hub, when the tag names a repo and the network allows it;
5. the `url`, downloaded into torch's hub cache with torch's own downloader.
Offline with nothing found: one MissingWeightsError naming the exact path to put the file at.

Checkpoints are read with `torch.load(weights_only=True)` or safetensors; nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

from bench.api import MissingWeightsError, WeightSpec


def home() -> Path:
    """Root of caches: built worlds, downloaded weights. `$AIGI_BENCH_HOME` overrides it."""
    return Path(os.environ.get("AIGI_BENCH_HOME", Path.home() / ".cache" / "aigi-bench")).expanduser()


def weights_dir() -> Path:
    return Path(os.environ.get("AIGI_BENCH_WEIGHTS", home() / "weights")).expanduser()


def local_path(detector: str, spec: WeightSpec) -> Path:
    return weights_dir() / detector / spec.filename


def bundled_path(spec: WeightSpec) -> Path | None:
    if not spec.bundled:
        return None
    package, _, rel = spec.bundled.partition(":")
    path = Path(str(resources.files(package).joinpath(rel)))
    return path if path.is_file() else None


def torch_hub_checkpoints() -> Path:
    """torch's download cache, `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/...`),
    computed as `torch.hub.get_dir` does, without importing torch (`bench list` reads it)."""
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def torch_hub_path(spec: WeightSpec) -> Path | None:
    """Where torch's downloader keeps `spec`'s file, for a tag with a download `url`."""
    return torch_hub_checkpoints() / spec.filename if spec.url else None


def status(detector: str, spec: WeightSpec) -> str:
    """Where `resolve` would find these weights, without fetching them: "local" (the user's
    weights folder, or torch's hub cache), "bundled" (shipped in a package), "download" (only
    on the Hub or at the tag's url) or "missing"."""
    if local_path(detector, spec).is_file():
        return "local"
    if bundled_path(spec) is not None:
        return "bundled"
    cached = torch_hub_path(spec)
    if cached is not None and cached.is_file():
        return "local"
    return "download" if spec.hf_repo or spec.url else "missing"


def resolve(detector: str, spec: WeightSpec, path: str | os.PathLike | None = None) -> Path:
    """Local file for `detector.spec.tag`, downloading from the Hub only as a last resort."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"{detector}.{spec.tag}: no file at {p}")
        return p
    candidate = local_path(detector, spec)
    if candidate.is_file():
        return candidate
    shipped = bundled_path(spec)
    if shipped is not None:
        return shipped
    cached = torch_hub_path(spec)
    if cached is not None and cached.is_file():
        return cached
    errors = []
    if spec.hf_repo:
        offline = hub_offline()
        if offline:  # say so at once: huggingface_hub would retry for half a minute first
            errors.append(f"Hugging Face {spec.hf_repo}/{spec.hf_filename or spec.filename} not fetched: {offline}")
        else:
            try:
                from huggingface_hub import hf_hub_download

                return Path(hf_hub_download(spec.hf_repo, spec.hf_filename or spec.filename))
            except Exception as exc:  # gated, or missing: explain below
                errors.append(f"Hugging Face {spec.hf_repo}/{spec.hf_filename or spec.filename}: {type(exc).__name__}")
    if spec.url and cached is not None:
        try:
            return _download(spec.url, cached)
        except Exception as exc:  # offline or moved: explain below
            errors.append(f"{spec.url}: {type(exc).__name__}")
    tried = "; ".join(errors) or "no download source"
    also = (f" or into torch's hub cache {cached} (TORCH_HOME={os.environ.get('TORCH_HOME', 'unset, default ~/.cache/torch')})"
            if cached is not None else "")
    raise MissingWeightsError(
        f"weights {detector}.{spec.tag} not found. Put the file at {candidate}{also} "
        f"(or set AIGI_BENCH_WEIGHTS). {spec.where} [{tried}]".strip()
    )


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_hub_reachable: dict[str, str | None] = {}


def hub_offline(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached from here, or None when it can.

    An offline variable (`HF_HUB_OFFLINE=1`, ...) answers at once; otherwise one TCP connection
    to the Hub's host is tried, at most `timeout` seconds, once per process. Without this a
    download on a machine with no network is retried by huggingface_hub for about 30 s before
    failing, once per file."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _hub_reachable:
        import socket
        from urllib.parse import urlparse

        url = urlparse(endpoint)
        host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _hub_reachable[endpoint] = None
        except OSError as exc:
            _hub_reachable[endpoint] = f"no connection to {host} ({exc.strerror or type(exc).__name__})"
    return _hub_reachable[endpoint]


def _download(url: str, dest: Path) -> Path:
    """`url` into `dest` with torch's downloader, which checks the sha256 prefix that torchvision
    and torch.hub file names carry (`vgg16-397923af.pth`) and writes atomically."""
    import re

    from torch.hub import download_url_to_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = re.search(r"-([a-f0-9]{6,})\.", dest.name)
    download_url_to_file(url, str(dest), hash_prefix=prefix.group(1) if prefix else None, progress=True)
    return dest


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_digest(state: dict[str, Any]) -> str:
    """sha256 of a state dict's names, dtypes and bytes (in name order): the fingerprint of
    weights that come as a model rather than as one file (diffusers, timm)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_state(path: str | os.PathLike, *, data_types: tuple[type, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint without unpickling code: safetensors or `torch.load(weights_only=True)`.

    `data_types` are plain data classes that an official training script pickled beside the
    weights and that torch's weights-only unpickler may rebuild (`torch.serialization.safe_globals`):
    `argparse.Namespace`, which SAFE and AIDE save under 'args', is an attribute bag rebuilt by
    `object.__new__` and a `__dict__` update whose values pass the same weights-only checks, so
    allowing it runs no code from the file. Any other class in the file is still refused."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        import torch

        with torch.serialization.safe_globals(list(data_types)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message ends by suggesting weights_only=False, i.e. running code from the
        # file: keep only its first line and say what to do instead
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise MissingWeightsError(
            f"{path}: not a readable weights-only checkpoint ({type(exc).__name__}: {first}). Checkpoints are never "
            "unpickled; a file that needs it must be re-saved as a plain state dict (torch.save(model.state_dict())) "
            "or as safetensors"
        ) from exc


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a state dict as safetensors or a torch zip file, atomically (`bench.files`): a run
    killed mid-save leaves the previous file whole."""
    from bench.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        else:
            import torch

            torch.save(state, str(tmp))


def resolve_tag(spec: Any, tag: str | None, path: str | os.PathLike | None = None) -> tuple[str, Path, str]:
    """(tag, file, sha256 fingerprint) of `spec.name.tag` (a `bench.registry.DetectorSpec`; its
    default tag when None); an explicit `path` takes precedence over the weights folder and the
    bundled file. What every detector builder calls first."""
    tag = tag or spec.default_weights
    file = resolve(spec.name, spec.weight(tag), path)
    return tag, file, sha256_file(file)
