"""Loading the parts of a diffusers Stable Diffusion model by hub id or local folder, safetensors only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from lightning.pytorch.utilities import rank_zero_info
from transformers import CLIPTextModel, CLIPTokenizer

from bob.data.errors import BobInputError
from bob.hub import Components, check_model_available

#: What `load_stable_diffusion` reads from a local folder: each subfolder, its config and safetensors weights.
STABLE_DIFFUSION_COMPONENTS: Components = {
    "unet": (("config.json",), ("*.safetensors", "*.safetensors.index.json")),
    "vae": (("config.json",), ("*.safetensors", "*.safetensors.index.json")),
    "text_encoder": (("config.json",), ("*.safetensors", "*.safetensors.index.json")),
    "tokenizer": (("tokenizer.json", "vocab.json"),),
    "scheduler": (("scheduler_config.json",),),
}


@dataclass
class StableDiffusionParts:
    """The modules and schedulers of one Stable Diffusion checkpoint.

    ``noise_scheduler`` is a DDPM scheduler on the base model's noise schedule (training);
    ``inference_scheduler`` is the model's own default sampler (PNDM for SD 2.1-base).
    """

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler
    inference_scheduler: SchedulerMixin


def load_stable_diffusion(
    name_or_path: str, revision: str | None = None, variant: str | None = None, dtype: torch.dtype = torch.float32
) -> StableDiffusionParts:
    """Load an SD 1.x / 2.x checkpoint with its weights in ``dtype``.

    Raises `BobInputError` at once when the model is neither a folder nor cached while
    ``HF_HUB_OFFLINE`` is set, and when the checkpoint is not a plain Stable Diffusion model.
    Weights are read from safetensors files only.
    """
    check_model_available(name_or_path, "model_index.json", STABLE_DIFFUSION_COMPONENTS)
    common: dict[str, Any] = {"revision": revision}
    weights: dict[str, Any] = {**common, "variant": variant, "use_safetensors": True}
    unet = UNet2DConditionModel.from_pretrained(name_or_path, subfolder="unet", dtype=dtype, **weights)
    if unet.config.addition_embed_type is not None:
        raise BobInputError(
            f"{name_or_path} is an SD-XL-style model (its UNet expects {unet.config.addition_embed_type!r} "
            "conditioning); the LoRA fine-tuner supports Stable Diffusion 1.x and 2.x checkpoints"
        )
    tokenizer = CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer", **common)
    text_encoder = CLIPTextModel.from_pretrained(name_or_path, subfolder="text_encoder", dtype=dtype, **weights)
    if len(tokenizer) != text_encoder.config.vocab_size:
        raise BobInputError(
            f"the tokenizer of {name_or_path} has {len(tokenizer)} tokens but its text encoder expects "
            f"{text_encoder.config.vocab_size}; the tokenizer files are incomplete, download the model again"
        )
    vae = AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", dtype=dtype, **weights)
    scheduler_config = DDPMScheduler.load_config(name_or_path, subfolder="scheduler", **common)
    noise_scheduler = DDPMScheduler.from_config(scheduler_config)
    inference_class = getattr(diffusers, scheduler_config["_class_name"])
    inference_scheduler = inference_class.from_config(scheduler_config)
    rank_zero_info(
        f"loaded {name_or_path}: UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M parameters, "
        f"{noise_scheduler.config.prediction_type} prediction, {inference_class.__name__} sampler"
    )
    return StableDiffusionParts(tokenizer, text_encoder, vae, unet, noise_scheduler, inference_scheduler)
