"""The training-free detectors, described as data: AEROBLADE and WaRPAD (DEAR's Table 1 lists
both with AUC only). Neither has a threshold, so both are `calibrated=False` and tables print '-'
for their accuracies. No torch here: `bench list` reads this module.

Their "weights" are the pretrained networks each method runs, not trained detector weights:
- `aeroblade.official`: torchvision's ImageNet VGG16 (LPIPS's trunk; LPIPS's linear layers ship
  with the `lpips` package) and the autoencoders of SD 1, SD 2 and Kandinsky 2.1 from the
  Hugging Face Hub through diffusers (`pip install -e ".[aeroblade]"`);
- `aeroblade.mini`: the autoencoder of AIGI-mini's training generator, LDM (bundled with the
  world, `suites/mini/weights/ldm.safetensors`), and the distance `ssimc`. LDM only, as AEROBLADE
  uses the autoencoders of the generators it targets and every detector of the main job was
  trained on LDM alone: the other four generators are unseen by all of them. SSIM because the
  official LPIPS needs the ImageNet VGG16 that is not on a fresh machine, and among the official
  ablation distances (`psnr`, `ssimc`, `ms_ssim`) SSIM is the local, structural one like LPIPS
  layer 2, while MS-SSIM cannot score the world's 64-px crops (it needs 161 px) and PSNR is a
  global pixel error;
- `warpad.official`: Meta's DINOv2 ViT-L/14 (LVD-142M) checkpoint, the file torch.hub downloads.
"""
from __future__ import annotations

from bench.api import InputPolicy, WeightSpec
from bench.registry import detector_spec_of

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
DINOV2_VITL14_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"

#: The autoencoders each AEROBLADE weight tag stands for (jonasricker/aeroblade
#: scripts/run_aeroblade.py `--autoencoders` default; "mini:" names the registered AIGI-mini ones).
AEROBLADE_AUTOENCODERS: dict[str, tuple[str, ...]] = {
    "official": ("CompVis/stable-diffusion-v1-1", "stabilityai/stable-diffusion-2-base", "kandinsky-community/kandinsky-2-1"),
    "mini": ("mini:ldm",),
}

aeroblade = detector_spec_of(
    "aeroblade", "AEROBLADE", "training-free", "detectors.aeroblade:build",
    weights=(
        WeightSpec(
            "official", "vgg16-397923af.pth", url=VGG16_URL,
            where="LPIPS's trunk is torchvision's ImageNet VGG16, downloaded once from "
            f"{VGG16_URL} into torch's hub cache ($TORCH_HOME/hub/checkpoints/, default ~/.cache/torch/hub/checkpoints/; "
            "e.g. `python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\"`). "
            "The autoencoders come from the Hugging Face Hub (CompVis/stable-diffusion-v1-1 vae/, "
            "stabilityai/stable-diffusion-2-base vae/, kandinsky-community/kandinsky-2-1 movq/) through diffusers, "
            "and LPIPS's linear layers from the lpips package: pip install -e '.[aeroblade]'.",
        ),
        WeightSpec(
            "mini", "ldm.safetensors", bundled="suites:mini/weights/ldm.safetensors",
            where="AIGI-mini's LDM generator, bundled with aigi-bench (suites/mini/weights/ldm.safetensors); "
            "retrain it with `bench world train-generators`.",
        ),
    ),
    default_weights="mini", calibrated=False, input=InputPolicy(),
    description="Training-free: how well latent-diffusion autoencoders reconstruct the image (LPIPS layer 2 of "
    "the 8-bit reconstruction, best autoencoder), higher = more likely generated (Ricker et al., CVPR 2024). "
    "`.mini`: AIGI-mini's LDM autoencoder and SSIM.",
)

warpad = detector_spec_of(
    "warpad", "WaRPAD", "training-free", "detectors.warpad:build",
    weights=(
        WeightSpec(
            "official", "dinov2_vitl14_pretrain.pth", url=DINOV2_VITL14_URL,
            where=f"Meta's DINOv2 ViT-L/14 (LVD-142M) checkpoint {DINOV2_VITL14_URL}, the file "
            "`torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')` downloads into $TORCH_HOME/hub/checkpoints/.",
        ),
    ),
    calibrated=False, input=InputPolicy(size=(896, 896)), tiny="detectors.warpad:tiny",
    description="Training-free: the cosine similarity of DINOv2 CLS embeddings before and after a Haar "
    "high-frequency perturbation, averaged over 16 patches of the image resized to 896x896; the score is minus "
    "that mean, higher = more likely generated (Choi et al., NeurIPS 2025).",
)
