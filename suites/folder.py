"""The `folder` suite: your own images, as a folder tree, a CSV manifest or a Hugging Face dataset."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.api import FAKE, REAL, BenchError, ImageSet, MissingDataError, Skipped, Suite
from bench.images import not_an_image
from suites.hub import HF_PREFIX, from_hf_dataset, parse_hf_spec
from suites.layouts import Draw
from suites.listing import has_images, images_in, label_subdirs, list_images
from suites.manifests import check_set_name, read_csv_manifest, suite_from_rows


def tree_problem(root: Path) -> str | None:
    """Why a real/ + fake/ tree cannot be scored (None when it can): both classes must have images."""
    reals, fakes = label_subdirs(root)
    if not reals and not fakes:
        return f"{root} has neither real/ nor fake/ subfolders"
    has_real = any(has_images(d) for d in reals)
    has_fake = any(has_images(d) for d in fakes)
    if not has_real and not has_fake:
        return f"{root}: no images under real/ or fake/"
    if not has_real:
        return f"{root}: fake images found but no real ones; put reals under {root / 'real'}"
    if not has_fake:
        return (
            f"{root}: real images found but no fake ones to score against them; no fake/<generator>/ folders "
            f"(put each generator's images under {root / 'fake'}/<generator>/)"
        )
    return None


@dataclass(frozen=True)
class FolderSource:
    """Your own data: a folder with real/ and fake/<set>/, a CSV manifest (path,label,set), or a
    Hugging Face dataset named `hf:<id or saved folder>?...` (see `suites.hub.parse_hf_spec`).

    Folder: real/ (or 0_real/) is the real set "real"; each subfolder of fake/ (or 1_fake/)
    is a fake set scored against it, and images directly in fake/ form the set "fake".
    CSV: see `suites.manifests.read_csv_manifest` (rows stay inside the manifest's folder unless
    `options={"allow_outside_root": True}`). A CSV row whose file does not exist is kept, so the
    runner records it as a failure with the others and the run goes on; a CSV none of whose
    files exist is refused (usually a wrong base folder).
    """

    name: str = "folder"
    description: str = ("Your own images: a folder with real/ and fake/<set>/, a CSV manifest (path,label,set), "
                        "or hf:<dataset id or saved folder>?split=..&image=..&label=..&set=..&real=..")
    weights_tag: str = "official"

    def availability(self, data_root: str | os.PathLike | None = None) -> str | None:
        if data_root is None:
            return "the folder suite reads the folder, CSV or hf:<dataset> given with --data-root"
        if str(data_root).startswith(HF_PREFIX):
            try:
                parse_hf_spec(str(data_root))
            except BenchError as exc:
                return str(exc)
            return None  # the Hub is only asked when loading
        root = Path(data_root).expanduser()
        if root.is_file():
            return None if root.suffix.lower() == ".csv" else f"{root} is not a .csv manifest"
        if not root.is_dir():
            return f"no folder or CSV at {root}"
        return tree_problem(root)

    def load(self, data_root: str | os.PathLike | None = None, max_per_set: int | None = None, *, sample_seed: int = 0,
             options: dict | None = None) -> Suite:
        problem = self.availability(data_root)
        if problem:
            raise MissingDataError(f"suite 'folder': {problem}. {self.description}")
        if str(data_root).startswith(HF_PREFIX):
            return from_hf_dataset(**parse_hf_spec(str(data_root)), max_per_set=max_per_set, name=self.name,  # type: ignore[arg-type]
                                   sample_seed=sample_seed)
        root = Path(data_root).expanduser().absolute()
        if root.is_file():
            rows, skipped = read_csv_manifest(root, allow_outside_root=bool((options or {}).get("allow_outside_root")))
            if not any(Path(r.path).exists() for r in rows):
                raise MissingDataError(
                    f"{root}: none of its {len(rows)} files exist (first: {rows[0].path}); "
                    "relative paths are resolved against the CSV's folder"
                )
            return suite_from_rows(self.name, rows, source=str(root), description=f"CSV manifest {root}",
                                   max_per_set=max_per_set, sample_seed=sample_seed, skipped=skipped)
        return self._load_tree(root, Draw(max_per_set, sample_seed))

    def _load_tree(self, root: Path, draw: Draw) -> Suite:
        reals, fakes = label_subdirs(root)
        real_paths = images_in(reals, draw.skipped, "real")
        sets = [ImageSet("real", "Real", "real", tuple(draw.records(real_paths, REAL, "real", reals)))]
        groups: dict[str, list[Path]] = {}
        roots: dict[str, list[Path]] = {}
        for fake_dir in fakes:
            loose = []
            for p in sorted(p for p in fake_dir.iterdir() if not p.is_dir()):
                why = not_an_image(p)
                if why is None:
                    loose.append(p)
                else:
                    draw.skipped.append(Skipped(str(p), why, "fake"))
            if loose:
                groups.setdefault("fake", []).extend(loose)
                roots.setdefault("fake", []).append(fake_dir)
            for sub in sorted(d for d in fake_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
                check_set_name(sub.name, str(sub))
                if loose and sub.name.lower() == "fake":
                    raise BenchError(
                        f"{sub}: the images directly in {fake_dir} already form the set 'fake'; "
                        "move them into a named subfolder or rename this one"
                    )
                groups.setdefault(sub.name, []).extend(list_images(sub, draw.skipped, sub.name))
                roots.setdefault(sub.name, []).append(sub)
        groups = {k: v for k, v in groups.items() if v}
        for set_name in sorted(groups):
            paths = sorted(groups[set_name], key=lambda p: p.as_posix())
            recs = draw.records(paths, FAKE, set_name, roots[set_name])
            sets.append(ImageSet(set_name, set_name, "generator", tuple(recs), "real"))
        return draw.suite(self.name, sets, f"Folder {root}", str(root))

