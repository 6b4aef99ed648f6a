"""Stage 2 timed: bob's `LoRAFineTuner` under Lightning against a plain diffusers + peft training loop.

The plain loop is SD 2.1's (DDPM, one CLIP text encoder); on SD-XL and SD 3.5 bob's path is timed alone,
with bob at the release's settings (fp32, no caches) as the reference."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks.architectures import MODEL_TITLES
from benchmarks.common import Settings, dataset_section, run_stage, trainer_section
from benchmarks.recipes import t2i_model_arguments
from benchmarks.timing import Clock, Run
from benchmarks.world import World

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
RANK = 16
WARMUP_LR_STEPS = 100


def warmup_steps(world: World, settings: Settings) -> int:
    """One epoch: the steps that fill bob's latent cache, excluded from every variant's timing alike."""
    return math.ceil(len(world.train) / settings.lora_batch)


class PromptedImages(Dataset):
    """The training shots as the diffusers LoRA example prepares them: pixels in [-1, 1] and token ids."""

    def __init__(self, world: World, tokenizer: Any):
        from torchvision import transforms

        self.items = world.train
        self.tokenizer = tokenizer
        size = world.size.image_size
        self.transform = transforms.Compose(
            [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        item = self.items[index]
        with Image.open(item.path) as image:
            pixels = self.transform(image.convert("RGB"))
        input_ids = self.tokenizer(
            item.prompt, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids[0]
        return {"pixel_values": pixels, "input_ids": input_ids}


def reference(world: World, settings: Settings) -> Run:
    """The release's recipe as a plain loop: fp32, VAE and text encoder run every step, no caches."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    device = torch.device(settings.device)
    path = world.stable_diffusion
    tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder").to(device)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae").to(device)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet").to(device)
    noise_scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    for module in (text_encoder, vae, unet):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian", target_modules=UNET_TARGETS))
    text_encoder.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian", target_modules=TEXT_TARGETS))
    parameters = [p for module in (unet, text_encoder) for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    warmup = warmup_steps(world, settings)
    total = warmup + settings.steps
    lr_scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=WARMUP_LR_STEPS, num_training_steps=total)
    loader = DataLoader(
        PromptedImages(world, tokenizer), batch_size=settings.lora_batch, shuffle=True, num_workers=settings.num_workers,
        persistent_workers=settings.num_workers > 0,
    )
    unet.train()
    text_encoder.train()
    clock = Clock(settings.device)
    step = 0
    while step < total:
        for batch in loader:
            latents = vae.encode(batch["pixel_values"].to(device)).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=device)
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            text = text_encoder(batch["input_ids"].to(device), return_dict=False)[0]
            prediction = unet(noisy, timesteps, text, return_dict=False)[0]
            loss = F.mse_loss(prediction.float(), noise.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            clock.mark(latents.shape[0])
            step += 1
            if step == total:
                break
    return clock.run(warmup)


def ours_config(
    world: World, settings: Settings, run_dir: Path, precision: str, latent_cache: bool, compile_unet: bool = False,
    latent_crops: bool = False,
) -> dict[str, Any]:
    """The stage-2 config of `configs/t2i.yaml` (and of the model's overlay, configs/t2i/<model>.yaml:
    its LoRA targets, flow-matching weighting and gradient checkpointing) on the benchmark's model and data.

    ``latent_crops``: the paper's random crop (`configs/t2i.yaml`), taken on the latent grid of
    each image's cached posterior; otherwise a centre crop, which the latent cache keeps exactly.
    """
    size = world.size.image_size
    model: dict[str, Any] = {
        "base_model": str(world.stable_diffusion),
        "prompt_mode": "context",
        "unet_rank": RANK, "unet_alpha": RANK, "text_encoder_rank": RANK, "text_encoder_alpha": RANK,
        "warmup_steps": WARMUP_LR_STEPS,
        "effective_batch_size": None,
        "latent_cache_views": None if latent_cache and not latent_crops else 0,
        "latent_crops": latent_crops,
        **t2i_model_arguments(world.size.model),
    }
    crop = "RandomCrop" if latent_crops else "CenterCrop"
    if compile_unet:
        model["compile_unet"] = True
    return {
        "seed_everything": 0,
        "trainer": trainer_section(
            settings, run_dir, precision=precision, max_steps=warmup_steps(world, settings) + settings.steps,
            limit_val_batches=0,
        ),
        "model": {"class_path": "LoRAFineTuner", "init_args": model},
        "data": {
            "class_path": "FewShotDataModule",
            "init_args": {
                "dataset": dataset_section(world),
                "shots": world.shots, "seed": 0, "split_file": str(world.split_file), "val_per_class": 1,
                "image_size": size, "batch_size": settings.lora_batch, "num_workers": settings.num_workers,
                "caption_bank": str(world.caption_bank),
                # A centre crop is deterministic, so the latent cache is exact; the reference crops
                # the same way (a random crop costs it the same).
                "train_transform": {
                    "class_path": "torchvision.transforms.v2.Compose",
                    "init_args": {"transforms": [
                        {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": size, "antialias": True}},
                        {"class_path": f"torchvision.transforms.v2.{crop}", "init_args": {"size": size}},
                    ]},
                },
            },
        },
    }


def ours(world: World, settings: Settings, run_dir: Path, **config: Any) -> Run:
    clock = run_stage("fit", ours_config(world, settings, run_dir, **config), run_dir).clock
    return clock.run(warmup_steps(world, settings))


def variants(world: World, settings: Settings, work: Path) -> dict[str, tuple[str, bool, Any]]:
    """name -> (description, is the reference, callable returning a `Run`). The reference is the plain
    loop on SD 2.1, and bob at the release's settings on the models the plain loop does not cover."""
    model = world.size.model
    plain = model == "sd21"
    on = "" if plain else f" on {MODEL_TITLES[model]} (its t2i overlay's settings)"
    found: dict[str, tuple[str, bool, Any]] = {}
    if plain:
        found["reference"] = ("plain diffusers + peft loop, fp32, no caches (the release's recipe)", True,
                              lambda: reference(world, settings))
    found |= {
        "bob_same": (f"bob{on}, same settings (fp32, no caches)", not plain,
                     lambda: ours(world, settings, work / "same", precision="32-true", latent_cache=False)),
        "bob_default": (f"bob{on}, defaults ({settings.default_precision}, latent cache)", False,
                        lambda: ours(world, settings, work / "default", precision=settings.default_precision, latent_cache=True)),
        "bob_latent_crops": (f"bob{on}, defaults with the paper's random crops on the latent grid ({settings.default_precision})",
                             False, lambda: ours(world, settings, work / "latent_crops", precision=settings.default_precision,
                                                 latent_cache=True, latent_crops=True)),
    }
    if settings.compile:
        found["bob_compiled"] = (
            f"bob{on}, defaults + torch.compile ({settings.default_precision}, latent cache)", False,
            lambda: ours(world, settings, work / "compiled", precision=settings.default_precision, latent_cache=True,
                         compile_unet=True),
        )
    return found
