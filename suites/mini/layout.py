"""Where things are in an AIGI-mini world folder: the one place its layout is spelled.

    manifest.json
    train/real, train/fake, train/recon        training reals, unpaired fakes, aligned reconstructions
    val/real, val/fake, val/recon              the same for validation
    diag/images, diag/masks                    DEAR's diagnostic set (same file names)
    test/real, test/fake/<generator>           the `mini` suite
    wild/real, wild/fake/<generator>           the `mini-wild` suite

`suites.mini.world` writes it; the suites, `bench train`, DEAR and the analyses read it through
`WorldLayout`, so a folder of one's own laid out the same way works everywhere a world does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.api import TrainingData

SPLITS = ("train", "val", "test", "wild")


@dataclass(frozen=True)
class WorldLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def real(self, split: str) -> Path:
        return self.root / split / "real"

    def fakes(self, split: str) -> Path:
        """train/val: the unpaired fakes; test/wild: one subfolder per generator."""
        return self.root / split / "fake"

    def generator(self, split: str, name: str) -> Path:
        return self.fakes(split) / name

    def recon(self, split: str) -> Path:
        """Reconstructions of `real(split)`, same file names (train and val only)."""
        return self.root / split / "recon"

    @property
    def diag(self) -> Path:
        return self.root / "diag"

    @property
    def diag_images(self) -> Path:
        return self.diag / "images"

    @property
    def diag_masks(self) -> Path:
        return self.diag / "masks"

    def rel(self, path: Path) -> str:
        """`path` relative to the root, POSIX style (the manifest's keys)."""
        return Path(path).relative_to(self.root).as_posix()

    def training_data(self, paired: bool = False, val_paired: bool | None = None) -> TrainingData:
        """train/ and val/ as a detector's training folders: unpaired fakes (Corvi), or with
        `paired` the reconstructions of the same reals (Rajan); validation follows `paired`
        unless `val_paired` says otherwise (DEAR validates every base on the unpaired fakes)."""
        val_paired = paired if val_paired is None else val_paired
        fake = self.recon if paired else self.fakes
        val_fake = self.recon if val_paired else self.fakes
        return TrainingData(self.real("train"), fake("train"), self.real("val"), val_fake("val"), paired, self.diag)
