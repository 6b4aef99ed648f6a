"""Whether a toy text-to-image model can tell class names apart, in its text encoder and its denoiser.

Two measurements that need no sampling, so they say in seconds why a model does or does not
draw the class a prompt names:

- `name_distinctness`: how much the text encoder's output at the name's position differs from
  one name to another, relative to that output's size. A denoiser can only bind names that the
  text encoder keeps apart.
- `diffusion_classifier_accuracy`: on given images of known classes, the share whose denoising
  loss is lowest with their own class prompt (a diffusion classifier; chance 1 / classes). It is
  high when the denoiser uses the name to predict what the class looks like, the precondition
  for drawing it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bob.toyworld.captions import DESCRIPTOR


def class_prompt(name: str) -> str:
    """The class-only prompt form of the toy world (DataDream's, and the code-following test's)."""
    return f"an {DESCRIPTOR} photo of a {name}"


def _tokenize_and_encode(pipeline, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = pipeline.tokenizer(prompts, padding="max_length", max_length=pipeline.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
    return tokens.input_ids, pipeline.text_encoder(tokens.input_ids.to(pipeline.text_encoder.device))[0]


@torch.no_grad()
def encode_prompts(pipeline, prompts: list[str]) -> torch.Tensor:
    """The text encoder's output for ``prompts``, padded as the pipeline pads them."""
    return _tokenize_and_encode(pipeline, prompts)[1]


@torch.no_grad()
def encode_latents(pipeline, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Scaled posterior means of ``pixels`` (N x 3 x H x W in [0, 1]), as the prior was trained on."""
    vae = pipeline.vae
    return torch.cat([
        vae.encode(pixels[i:i + batch_size].to(vae.device, vae.dtype) * 2 - 1).latent_dist.mean
        for i in range(0, len(pixels), batch_size)
    ]) * vae.config.scaling_factor


@torch.no_grad()
def denoising_losses(pipeline, latents: torch.Tensor, conditions: torch.Tensor, t: int, seed: int = 0,
                     batch_size: int = 64) -> torch.Tensor:
    """Each latent's denoising loss at timestep ``t`` under ``conditions`` (one encoding per latent,
    or one for all), against the pipeline's own target (noise or velocity). The noise depends only
    on ``seed + t``, so two calls that differ in the conditions alone compare like with like."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    device = pipeline.unet.device
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed + t)).to(device, latents.dtype)
    steps = torch.full((len(latents),), t, device=device)
    noisy = scheduler.add_noise(latents, noise, steps)
    velocity = scheduler.config.prediction_type == "v_prediction"
    target = scheduler.get_velocity(latents, noise, steps) if velocity else noise
    conditions = conditions.expand(len(latents), -1, -1)
    losses = []
    for i in range(0, len(latents), batch_size):
        chunk = slice(i, i + batch_size)
        prediction = pipeline.unet(noisy[chunk], steps[chunk], conditions[chunk]).sample
        losses.append(((prediction - target[chunk]) ** 2).mean(dim=(1, 2, 3)).float())
    return torch.cat(losses)


@torch.no_grad()
def name_distinctness(pipeline, names: list[str]) -> float:
    """Mean distance of each name's encoding from the names' mean encoding, at the name's first
    token, over the mean norm of those encodings (0: the encoder cannot tell the names apart)."""
    if len(names) < 2:
        raise ValueError(f"name_distinctness compares names with each other; got {len(names)}")
    # Start token and the prompt's words before the name: the end token is left out.
    prefix = len(pipeline.tokenizer(class_prompt("")).input_ids) - 1
    ids, hidden = _tokenize_and_encode(pipeline, [class_prompt(name) for name in names])
    if bool((ids[:, :prefix] != ids[0, :prefix]).any()):
        raise ValueError("the names change how the prompt's words before them are tokenized")
    at_name = hidden[:, prefix]  # the name's first token, right after the shared prefix
    spread = (at_name - at_name.mean(dim=0)).norm(dim=1).mean()
    return float(spread / at_name.norm(dim=1).mean())


def _share_read(losses: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose lowest loss is at their label (ties go to the first class)."""
    return int((losses.argmin(dim=1) == labels).sum()) / len(labels)


@torch.no_grad()
def diffusion_classifier_accuracy(
    pipeline, pixels: torch.Tensor, labels: torch.Tensor, class_names: list[str],
    timesteps: tuple[int, ...] = (300, 500, 700, 900), seed: int = 0, batch_size: int = 64,
    prompt: Callable[[str], str] = class_prompt,
) -> dict:
    """Per timestep and summed over timesteps: the share of ``pixels`` (N x 3 x H x W in [0, 1])
    whose loss is lowest with their own class's ``prompt``, every prompt seeing the same noise.
    The classes are class names by default; another ``prompt`` form reads other labels (e.g.
    backgrounds) and so checks that the measurement can see what a model does condition on."""
    latents = encode_latents(pipeline, pixels, batch_size)
    prompts = encode_prompts(pipeline, [prompt(name) for name in class_names])
    labels = labels.to(latents.device)
    total = torch.zeros(len(latents), len(class_names), device=latents.device)
    rows = {}
    for t in timesteps:
        losses = torch.stack([
            denoising_losses(pipeline, latents, prompts[c:c + 1], t, seed, batch_size) for c in range(len(class_names))
        ], dim=1)
        total += losses
        rows[str(t)] = _share_read(losses, labels)
    return {"by_timestep": rows, "all_timesteps": _share_read(total, labels),
            "chance": 1.0 / len(class_names), "images": len(latents)}
