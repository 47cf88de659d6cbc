"""Resolve a weight tag to a local file, and load checkpoints safely.

Resolution order for `corvi.official`:
1. `$AIGI_BENCH_WEIGHTS/corvi/<filename>` (default `$AIGI_BENCH_HOME/weights/corvi/<filename>`);
2. a file bundled with the package (the `.mini` weights trained on AIGI-mini);
3. the Hugging Face Hub, when the tag names a repo and the network allows it.
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


def status(detector: str, spec: WeightSpec) -> str:
    """Where `resolve` would find these weights, without fetching them: "local" (the user's
    weights folder), "bundled" (shipped in a package), "download" (only on the Hub) or "missing"."""
    if local_path(detector, spec).is_file():
        return "local"
    if bundled_path(spec) is not None:
        return "bundled"
    return "download" if spec.hf_repo else "missing"


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
    errors = []
    if spec.hf_repo:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(spec.hf_repo, spec.hf_filename or spec.filename))
        except Exception as exc:  # offline, gated, or missing: explain below
            errors.append(f"Hugging Face {spec.hf_repo}/{spec.hf_filename or spec.filename}: {type(exc).__name__}")
    tried = "; ".join(errors) or "no download source"
    raise MissingWeightsError(
        f"weights {detector}.{spec.tag} not found. Put the file at {candidate} "
        f"(or set AIGI_BENCH_WEIGHTS). {spec.where} [{tried}]".strip()
    )


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
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
