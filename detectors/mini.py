"""The AIGI-mini recipes: how each bundled `<name>.mini` weight of this package is trained.

`MINI_RECIPES` is a plain table (no torch at import, so `bench train` lists its choices at
once), in training order: a Stay-Positive head (`-plus`) is refit on the base trained before it.
`train_mini` runs a recipe on a `bench.api.TrainingData` (the AIGI-mini world's folders, from
`suites.mini.layout.WorldLayout.training_data`, or any folder laid out the same way).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bench.api import BenchError, TrainingData


@dataclass(frozen=True)
class MiniRecipe:
    """One bundled weight's recipe: architecture, data, budget (`TrainConfig` fields)."""

    arch: Literal["resnet", "npr", "ferretnet", "ladeda"]
    paired: bool = False  # Rajan's synced real/reconstruction batches
    base: str | None = None  # Stay-Positive: refit the head of this base's weights, backbone frozen
    budget: dict[str, Any] = field(default_factory=dict)


LADEDA_EPOCHS = 15  # likewise
FERRETNET_EPOCHS = 15  # an AIGI-mini epoch is 10 steps of 32 crops: 150 steps

# The budgets of the bundled weights; `mini_config` says why each differs from the official one.
MINI_RECIPES: dict[str, MiniRecipe] = {
    "corvi": MiniRecipe("resnet", budget=dict(lr=1e-3, patience=5, steps_per_epoch=25, max_epochs=30)),
    "rajan": MiniRecipe("resnet", paired=True, budget=dict(lr=1e-3, patience=5, steps_per_epoch=25, max_epochs=12, batch_size=32)),
    "npr": MiniRecipe("npr", budget=dict(max_epochs=20)),
    "ferretnet": MiniRecipe("ferretnet", budget=dict(max_epochs=FERRETNET_EPOCHS)),
    "ladeda": MiniRecipe("ladeda", budget=dict(max_epochs=LADEDA_EPOCHS)),
    "corvi-plus": MiniRecipe("resnet", base="corvi", budget=dict(lr=1e-2, patience=5, steps_per_epoch=25, max_epochs=20)),
    "rajan-plus": MiniRecipe("resnet", paired=True, base="rajan",
                             budget=dict(lr=1e-2, patience=5, steps_per_epoch=25, max_epochs=20, batch_size=32)),
}
MINI_DETECTORS = tuple(MINI_RECIPES)


def stay_positive_pairs() -> tuple[str, ...]:
    """Each ResNet base followed by its Stay-Positive refit: corvi, corvi-plus, rajan, rajan-plus."""
    bases = [n for n, r in MINI_RECIPES.items() if r.arch == "resnet" and r.base is None]
    return tuple(x for b in bases for x in (b, *[n for n, r in MINI_RECIPES.items() if r.base == b]))


def bundled_weights_dir() -> Path:
    """detectors/weights inside the package: where the bundled `<name>.mini.safetensors` live."""
    return Path(__file__).parent / "weights"


def mini_config(detector: str, **overrides: Any) -> Any:
    """The `TrainConfig` of the bundled weights (recipe and CPU budget).

    NPR: its official recipe (it trains from scratch, lr 2e-4), capped at 20 epochs. Corvi and
    Rajan: the AlignedForensics recipe, except lr 1e-3 instead of 1e-4 (the official 1e-4
    fine-tunes ImageNet weights; from scratch the mini net barely moves at 1e-4 in a CPU
    budget: val bacc 0.63 vs 0.87 after 75 steps), a validation every 25 steps (one pass over
    AIGI-mini's 320 training images is only 5 steps) and at most 30 such epochs. Rajan takes
    32 pairs per batch, half of Corvi's 64 images, as script_train.sh does in sync mode.
    CPU caps of the bundled weights: Rajan 12 epochs, NPR 20 of its 50, FerretNet 15 of its 100
    (FerretNet-S from scratch with its official recipe otherwise; an AIGI-mini epoch is 10 steps),
    LaDeDa 15 epochs of the mini LaDeDa9 (1/8 width, one block per stage), with the stem
    BatchNorm's momentum at PyTorch's 0.1 instead of the official 0.001: after 150 steps a 0.001
    average still holds 0.999^150 = 86% of its initial (0, 1) statistics, and the first run, at
    0.001, scored validation balanced accuracy 0.50 (one class) for its first 6 epochs.
    Corvi and Rajan also use patience 5 instead of the official 10: a CPU "epoch" here is 25
    steps, and at most 30 (12) of them fit the budget, so 10 would leave no room for the lr
    decays that follow a stall. Stay-Positive refits: the official patience 5, lr 1e-2 instead
    of the official 1e-4, validation every 25 steps, at most 20 epochs. A non-negative head
    starting from zero must first grow a bias of about -2 before any image reads "real"; the
    official 1e-4 gets there over epochs of ~200k images. On cached corvi.mini features (val
    bacc of the unconstrained head: 0.85) a clamped head reaches val bacc 0.50 / 0.43 / 0.71
    after 500 steps at lr 1e-4 / 1e-3 / 1e-2, and 0.40 / 0.66 / 0.73 after 3000."""
    from detectors.fit import TrainConfig

    recipe = _recipe(detector)
    recipes = {"npr": TrainConfig.npr, "ferretnet": TrainConfig.ferretnet, "ladeda": TrainConfig.ladeda}
    base = recipes.get(recipe.arch, TrainConfig)(**recipe.budget)
    return replace(base, **overrides)


def _recipe(detector: str) -> MiniRecipe:
    if detector not in MINI_RECIPES:
        raise BenchError(f"train_mini: unknown detector {detector!r}; known: {', '.join(MINI_RECIPES)}")
    return MINI_RECIPES[detector]


def train_mini(detector: str, data: TrainingData, out: Path, config: Any = None, *, summary_path: Path | None = None) -> Path:
    """Train `<detector>.mini` on `data` and save `<out>/<detector>.mini.safetensors`.

    corvi and rajan train the mini res50nodown from scratch (the official ones start from
    ImageNet weights, which do not exist for the mini width); npr trains the mini NPR with its
    own recipe; corvi-plus / rajan-plus refit the head of `<out>/corvi.mini.safetensors` /
    `rajan.mini...` with Stay-Positive's non-negative head on the data the base was trained on.
    Augmentations end with the model's own normalisation, and validation goes through the
    detector's own test preprocessing. With `config=None` the CPU budget of `mini_config` is
    used. Returns the file written; `summary_path` receives the training history as JSON."""
    import torch

    from bench.registry import detector_spec
    from bench.weights import save_state
    from detectors.augment import af_augmentation, crop_flip_augmentation, npr_augmentation
    from detectors.data import training_loaders
    from detectors.ferretnet import FERRET_ARCHS, FerretNet, ferret_preprocess
    from detectors.fit import train_detector
    from detectors.head import refit_head
    from detectors.module_detector import ModuleDetector
    from detectors.npr import NPR_ARCHS, NPRDetector, NPRNet
    from detectors.ladeda import LADEDA_ARCHS, LaDeDa
    from detectors.preprocess import CLIP, ResizeNormalize
    from detectors.resnet import ResNetDetector, build_res50nodown, load_resnet_checkpoint

    recipe = _recipe(detector)
    if data.paired != recipe.paired:
        raise BenchError(f"train_mini({detector!r}) trains on {'paired reconstructions' if recipe.paired else 'unpaired fakes'}, "
                         f"but the data given is {'paired' if data.paired else 'unpaired'} ({data.train_fake})")
    out = Path(out)
    config = config or mini_config(detector)
    target = out / f"{detector}.mini.safetensors"
    torch.manual_seed(config.seed)
    if recipe.base is not None:
        base_file = out / f"{recipe.base}.mini.safetensors"
        if not base_file.is_file():
            raise BenchError(f"train_mini({detector!r}): {base_file} is missing; train the base first "
                             f"(bench train {recipe.base} --out {out}) or copy the bundled "
                             f"{bundled_weights_dir() / base_file.name} there")
        model = load_resnet_checkpoint(base_file)
    elif recipe.arch == "npr":
        model = NPRNet(NPR_ARCHS["mini"])
    elif recipe.arch == "ferretnet":
        model = FerretNet(FERRET_ARCHS["S"])
    elif recipe.arch == "ladeda":  # stem BN momentum 0.1, not 0.001: see mini_config
        model = LaDeDa(LADEDA_ARCHS["mini"], stem_momentum=0.1)
    else:
        model = build_res50nodown("mini", drop_rate=config.drop_rate)
    info = detector_spec(detector).info
    if recipe.arch == "npr":
        augmentation, detector_view = npr_augmentation(crop=config.crop, normalization=model.normalization), NPRDetector(model, info)
    elif recipe.arch == "ladeda":  # LaDeDa trains like NPR: Resize(256, 256), RandomCrop(224), flip
        augmentation = npr_augmentation(crop=config.crop, normalization=model.normalization)
        detector_view = ModuleDetector(model, info, ResizeNormalize((256, 256)))
    elif recipe.arch == "ferretnet":
        augmentation = crop_flip_augmentation(config.crop, CLIP)
        detector_view = ModuleDetector(model, info, ferret_preprocess())
    else:
        augmentation, detector_view = af_augmentation(crop=config.crop, normalization=model.normalization), ResNetDetector(model, info)
    train, val = training_loaders(data, augmentation, detector_view.preprocess(), config.batch_size, seed=config.seed,
                                  num_workers=config.num_workers, val_batch_size=config.val_batch_size,
                                  val_prepare=detector_view.prepare)
    if recipe.base is not None:
        result = refit_head(
            model, train, val, nonneg=True, lr=config.lr, patience=config.patience, delta=config.delta, min_lr=config.min_lr,
            max_epochs=config.max_epochs, steps_per_epoch=config.steps_per_epoch, device=config.device, progress=config.progress,
        )
        if result.best_epoch == 0:  # the zero head (every logit 0, "all real") was never beaten
            warnings.warn(f"train_mini({detector!r}): the refit head never beat the zero head on validation, so {target.name} "
                          f"scores every image 0; give it more steps or a larger lr (val bacc: {[round(h['val_bacc'], 3) for h in result.history]})",
                          stacklevel=2)
    else:
        result = train_detector(model, train, val, config)
    save_state(model.state_dict(), target)
    if summary_path is not None:
        summary = {**asdict(result), "detector": detector, "file": str(target), "data": {k: str(v) for k, v in asdict(data).items()},
                   "config": asdict(config)}
        Path(summary_path).write_text(json.dumps(summary, indent=1, default=str))
    return target
