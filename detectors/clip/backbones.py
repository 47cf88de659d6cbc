"""Where a frozen backbone's files are, without loading them (no torch here).

A CLIP detector's weights are two things: its head (a weight tag, resolved by `bench.weights`) and
the backbone it reads features from, which users get through open_clip or transformers. A
backbone is found, in this order:

1. `backbone=<file or folder>` given to the builder (an open_clip weights file; a transformers
   folder holding config.json and its weights), or `backbone=<org/name>`, another Hub repository;
2. the weights folder: `$AIGI_BENCH_WEIGHTS/backbones/<key>/` (default
   `~/.cache/aigi-bench/weights/backbones/<key>/`) holding the same files;
3. the Hugging Face cache (what open_clip or transformers downloaded before);
4. a download from the Hub, only when it can be reached: with `HF_HUB_OFFLINE` set, or no route
   to the Hub, it fails at once (huggingface_hub itself would retry for ~20 s) with a
   `MissingWeightsError` that names the files, the repository and the folder to put them in.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.api import MissingDependencyError, MissingWeightsError
from bench.weights import weights_dir

# The names open_clip looks for in a Hub repo or folder (open_clip 3.3.0 factory._find_checkpoint_in_dir),
# safetensors first; laion's CommonPool repo holds the last two.
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin")
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
EXTRA = "pip install 'aigi-bench[clip]'"


@dataclass(frozen=True)
class Backbone:
    """One pretrained image encoder as its library names it.

    `library` is "open_clip" (weights: one file, `files` are alternatives) or "transformers"
    (a folder: config.json plus one of `files`); `arch` is the open_clip model name, or the
    transformers model family ("clip", "vit"); `pretrained` the open_clip tag of the same weights."""

    key: str  # folder under <weights>/backbones/
    title: str
    library: str
    arch: str
    hf_repo: str
    files: tuple[str, ...]
    pretrained: str | None = None

    @property
    def folder(self) -> Path:
        return weights_dir() / "backbones" / self.key

    def how_to_get(self) -> str:
        files = " or ".join(self.files)
        what = (f"{files} from https://huggingface.co/{self.hf_repo}" if self.library == "open_clip" else
                f"config.json and {files} from https://huggingface.co/{self.hf_repo}")
        lib = (f" (what open_clip.create_model({self.arch!r}, pretrained={self.pretrained!r}) downloads)" if self.pretrained else
               f" (what {'open_clip' if self.library == 'open_clip' else 'transformers'} loads as {self.hf_repo!r})")
        return f"Put {what}{lib} in {self.folder}/, or pass backbone=<file or folder>"


@dataclass(frozen=True)
class Located:
    """A backbone found on this machine: an open_clip weights file or a transformers folder."""

    backbone: Backbone
    path: Path
    origin: str  # "explicit", "weights folder", "hub cache", "hub download"


def require_library(library: str) -> None:
    """MissingDependencyError naming the pip extra when open_clip / transformers is absent."""
    module = "open_clip" if library == "open_clip" else library
    if importlib.util.find_spec(module) is None:
        package = "open_clip_torch" if library == "open_clip" else library
        raise MissingDependencyError(f"this backbone is loaded with {package}, which is not installed: {EXTRA}")


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be used now (None when it can): `bench.weights.hub_offline`
    (an offline variable, or no connection within 3 s, checked once per process), or no
    huggingface_hub to download with. Checked before any download, instead of letting
    huggingface_hub retry for tens of seconds."""
    from bench.weights import hub_offline

    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return "huggingface_hub is not installed"
    return hub_offline()


def _weights_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _in_folder(b: Backbone, folder: Path) -> Path | None:
    """The file (open_clip) or the folder itself (transformers) when `folder` holds the backbone."""
    if b.library == "open_clip":
        return _weights_file(folder, b.files)
    return folder if (folder / "config.json").is_file() and _weights_file(folder, b.files) else None


def _in_hub_cache(b: Backbone) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None

    def cached(name: str) -> Path | None:
        got = try_to_load_from_cache(b.hf_repo, name)
        return Path(got) if isinstance(got, str) else None

    if b.library == "open_clip":
        return next(filter(None, map(cached, b.files)), None)
    config = cached("config.json")
    if config is not None and any(cached(n) for n in b.files):
        return config.parent  # the snapshot folder: transformers loads it like a local folder
    return None


def find_local(b: Backbone) -> Located | None:
    """The backbone in the weights folder or the Hub cache; never touches the network."""
    if (got := _in_folder(b, b.folder)) is not None:
        return Located(b, got, "weights folder")
    if (got := _in_hub_cache(b)) is not None:
        return Located(b, got, "hub cache")
    return None


def _download(b: Backbone) -> Path:
    from huggingface_hub import hf_hub_download

    errors = []
    if b.library == "transformers":
        try:
            config = Path(hf_hub_download(b.hf_repo, "config.json"))
        except Exception as exc:  # no such repo, gated, or the connection dropped
            raise MissingWeightsError(f"{b.title}: config.json of https://huggingface.co/{b.hf_repo} could not be downloaded "
                                      f"({type(exc).__name__}). {b.how_to_get()}") from None
    for name in b.files:
        try:
            got = Path(hf_hub_download(b.hf_repo, name))
            return got if b.library == "open_clip" else config.parent
        except Exception as exc:  # this file name is absent from the repo: try the next
            errors.append(f"{name}: {type(exc).__name__}")
    raise MissingWeightsError(f"{b.title}: https://huggingface.co/{b.hf_repo} has none of {', '.join(b.files)} "
                              f"({'; '.join(errors)}). {b.how_to_get()}")


def locate(b: Backbone, override: str | os.PathLike | None = None, *, who: str = "") -> Located:
    """The backbone's file or folder; `override` is the builder's `backbone=` (a path, or a Hub
    repository 'org/name' holding the same files). Raises MissingWeightsError, naming what to
    put where, when it is neither here nor downloadable now."""
    require_library(b.library)
    owner = f" of {who}" if who else ""
    if override is not None:
        path = Path(override).expanduser()
        if path.is_file():
            if b.library != "open_clip":
                raise MissingWeightsError(f"backbone {path}{owner}: transformers loads a folder (config.json and weights), not a file")
            return Located(b, path, "explicit")
        if path.is_dir():
            if (got := _in_folder(b, path)) is None:
                need = " or ".join(b.files) if b.library == "open_clip" else f"config.json and {' or '.join(b.files)}"
                raise MissingWeightsError(f"backbone folder {path}{owner} holds none of the files needed: {need}")
            return Located(b, got, "explicit")
        if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", str(override)) or str(override).startswith((".", "/", "~")):
            raise MissingWeightsError(f"backbone {str(override)!r}{owner}: no such file or folder, and not a Hub repository id 'org/name'")
        b = dataclasses.replace(b, hf_repo=str(override), key=str(override).replace("/", "--"))
    found = find_local(b)
    if found is not None:
        return found
    why = hub_unreachable()
    if why is not None:
        raise MissingWeightsError(f"backbone{owner} ({b.title}) is not on this machine and cannot be downloaded: {why}. {b.how_to_get()}.")
    return Located(b, _download(b), "hub download")


def missing(b: Backbone | None, library: str | None = None) -> str | None:
    """What `bench list` and the default run selection say is missing (None: ready): the
    library, then the backbone's files. No network, no torch."""
    lib = library or (b.library if b else None)
    if lib is not None and importlib.util.find_spec("open_clip" if lib == "open_clip" else lib) is None:
        return f"needs {lib}, not installed. {EXTRA}"
    if b is not None and find_local(b) is None:
        return f"backbone missing ({b.title}). {b.how_to_get()}."
    return None


def requirement(spec: Any, tag: str | None) -> str | None:
    """`DetectorSpec.requires` of the family: the default backbone (and library) of `spec`."""
    from detectors.clip.catalog import BACKBONE_OF, LIBRARY_OF

    return missing(BACKBONE_OF.get(spec.name), LIBRARY_OF.get(spec.name))
