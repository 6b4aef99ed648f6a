"""Model FLOPs of a LoRA training step and of one generated image, counted on the meta device (no weights, no compute)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.architectures import Architectures

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
TOKENS = 77

#: Dense bf16 tensor-core peaks from the vendors' data sheets, in TFLOP/s, by a name fragment.
BF16_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
}


def bf16_peak_tflops(device_name: str) -> float | None:
    """The data-sheet dense bf16 rate of a GPU, matched by the longest name fragment; None if unknown."""
    matches = [k for k in BF16_PEAK_TFLOPS if k in device_name]
    return BF16_PEAK_TFLOPS[max(matches, key=len)] if matches else None


def _models(size: Architectures, lora_rank: int | None) -> tuple[Any, Any, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = size.text_vocab_size
    with torch.device("meta"):
        unet = UNet2DConditionModel(**size.unet)
        vae = AutoencoderKL(**size.vae)
        text = CLIPTextModel(
            CLIPTextConfig(vocab_size=vocab, bos_token_id=vocab - 2, eos_token_id=vocab - 1, **size.text_encoder)
        )
    for module in (unet, vae, text):
        module.requires_grad_(False)
    if lora_rank:
        unet.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=UNET_TARGETS))
        text.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=TEXT_TARGETS))
    return unet, vae, text


def lora_step_flops(size: Architectures, batch: int, rank: int = 16) -> dict[str, float]:
    """FLOPs per training sample: ``full`` (VAE encode + text encoder and UNet forward/backward) and
    ``cached`` (without the VAE, as with bob's latent cache)."""
    unet, vae, text = _models(size, rank)
    side = size.image_size
    latent = side // 2 ** (len(size.vae["block_out_channels"]) - 1)
    with torch.device("meta"):
        pixels = torch.empty(batch, 3, side, side)
        ids = torch.zeros(batch, TOKENS, dtype=torch.long)
        noisy = torch.empty(batch, 4, latent, latent)
        timesteps = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as vae_counter:
        vae.encode(pixels).latent_dist.sample()
    with FlopCounterMode(display=False) as core_counter:
        prediction = unet(noisy, timesteps, text(ids)[0]).sample
        F.mse_loss(prediction, torch.empty_like(prediction)).backward()
    core = core_counter.get_total_flops() / batch
    return {"full": core + vae_counter.get_total_flops() / batch, "cached": core}


def generation_flops(size: Architectures, steps: int, guidance: float) -> float:
    """FLOPs per generated image: prompt encoding, ``steps`` UNet passes (two rows with guidance), VAE decode."""
    unet, vae, text = _models(size, None)
    rows = 2 if guidance > 1 else 1
    latent = size.image_size // 2 ** (len(size.vae["block_out_channels"]) - 1)
    with torch.device("meta"):
        ids = torch.zeros(rows, TOKENS, dtype=torch.long)
        latents = torch.empty(rows, 4, latent, latent)
        timesteps = torch.zeros(rows, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as once:
        embeddings = text(ids)[0]
        vae.decode(latents[:1])
    with torch.no_grad(), FlopCounterMode(display=False) as step:
        unet(latents, timesteps, embeddings)
    return once.get_total_flops() + steps * step.get_total_flops()


def measured_matmul_tflops(device: str, dtype: torch.dtype, side: int, repeats: int = 10) -> float:
    """The matrix rate this device reaches on large square matmuls (a practical ceiling next to the data sheet)."""
    import time

    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    (a @ b).sum().item()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        c = a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    c.sum().item()
    return 2 * side**3 * repeats / (time.perf_counter() - start) / 1e12
