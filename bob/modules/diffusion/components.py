"""Loading the parts of a diffusers Stable Diffusion model (1.x / 2.x, XL or 3.x) by hub id or local folder, safetensors only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from lightning.pytorch.utilities import rank_zero_info
from transformers import (
    AutoTokenizer,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5EncoderModel,
)

from bob.data.errors import BobInputError
from bob.hub import Components, check_model_available

_WEIGHTS = ("*.safetensors", "*.safetensors.index.json")
#: What `load_stable_diffusion` reads from a local SD 1.x / 2.x folder: each subfolder, its config and safetensors weights.
STABLE_DIFFUSION_COMPONENTS: Components = {
    "unet": (("config.json",), _WEIGHTS),
    "vae": (("config.json",), _WEIGHTS),
    "text_encoder": (("config.json",), _WEIGHTS),
    "tokenizer": (("tokenizer.json", "vocab.json"),),
    "scheduler": (("scheduler_config.json",),),
}
#: SD-XL adds a second text encoder (OpenCLIP ViT-bigG with a projection) and its tokenizer.
STABLE_DIFFUSION_XL_COMPONENTS: Components = {
    **STABLE_DIFFUSION_COMPONENTS,
    "text_encoder_2": (("config.json",), _WEIGHTS),
    "tokenizer_2": (("tokenizer.json", "vocab.json"),),
}


#: SD3 replaces the UNet by a transformer and adds T5 as a third text encoder.
STABLE_DIFFUSION_3_COMPONENTS: Components = {
    "transformer": (("config.json",), _WEIGHTS),
    **{name: needs for name, needs in STABLE_DIFFUSION_XL_COMPONENTS.items() if name != "unet"},
    "text_encoder_3": (("config.json",), _WEIGHTS),
    "tokenizer_3": (("tokenizer.json", "spiece.model"),),
}
#: T5 tokens the SD3 pipeline gives the prompt (its ``max_sequence_length`` default).
SD3_MAX_SEQUENCE_LENGTH = 256


def model_components(name_or_path: str) -> Components:
    """The components a local folder must hold, by what its ``model_index.json`` names: SD3's
    (a transformer), SD-XL's (a second text encoder) or SD 1.x / 2.x's (also for hub ids, which
    are not checked part by part)."""
    index = Path(name_or_path).expanduser() / "model_index.json"
    if index.is_file():
        names = json.loads(index.read_text(encoding="utf-8"))
        if "transformer" in names:
            return STABLE_DIFFUSION_3_COMPONENTS
        if "text_encoder_2" in names:
            return STABLE_DIFFUSION_XL_COMPONENTS
    return STABLE_DIFFUSION_COMPONENTS


@dataclass
class StableDiffusionParts:
    """The modules and schedulers of one Stable Diffusion checkpoint.

    ``noise_scheduler`` is the training schedule: a DDPM scheduler on the base model's noise
    schedule, or SD3's own flow-matching scheduler. ``inference_scheduler`` is the model's own
    default sampler (PNDM for SD 2.1-base, Euler for SD-XL, flow-matching Euler for SD3).
    ``unet`` is None for SD3, whose denoiser is ``transformer``. ``tokenizer_2`` and
    ``text_encoder_2`` are the second CLIP text encoder (SD-XL, SD3), ``tokenizer_3`` and
    ``text_encoder_3`` SD3's T5. ``force_zeros_for_empty_prompt`` is SD-XL's pipeline setting
    for the unconditional branch of guidance.
    """

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel | None
    noise_scheduler: SchedulerMixin
    inference_scheduler: SchedulerMixin
    tokenizer_2: CLIPTokenizer | None = None
    text_encoder_2: CLIPTextModelWithProjection | None = None
    force_zeros_for_empty_prompt: bool = True
    transformer: SD3Transformer2DModel | None = None
    tokenizer_3: Any = None
    text_encoder_3: T5EncoderModel | None = None

    @property
    def is_sd3(self) -> bool:
        return self.transformer is not None

    @property
    def is_xl(self) -> bool:
        return self.text_encoder_2 is not None and not self.is_sd3

    @property
    def family(self) -> str:
        return "sd3" if self.is_sd3 else "sdxl" if self.is_xl else "sd"

    @property
    def denoiser(self) -> torch.nn.Module:
        """The network that predicts noise or velocity: the UNet, or SD3's transformer."""
        return self.transformer if self.is_sd3 else self.unet

    @property
    def denoiser_name(self) -> str:
        return "transformer" if self.is_sd3 else "unet"

    def pipeline(self, scheduler: SchedulerMixin | None = None) -> DiffusionPipeline:
        """A sampling pipeline of the model's own class over these modules (shares their weights)."""
        scheduler = scheduler if scheduler is not None else self.inference_scheduler
        if self.is_sd3:
            return StableDiffusion3Pipeline(
                transformer=self.transformer, scheduler=scheduler, vae=self.vae,
                text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                text_encoder_2=self.text_encoder_2, tokenizer_2=self.tokenizer_2,
                text_encoder_3=self.text_encoder_3, tokenizer_3=self.tokenizer_3,
            )
        if self.is_xl:
            return StableDiffusionXLPipeline(
                vae=self.vae, text_encoder=self.text_encoder, text_encoder_2=self.text_encoder_2,
                tokenizer=self.tokenizer, tokenizer_2=self.tokenizer_2, unet=self.unet, scheduler=scheduler,
                force_zeros_for_empty_prompt=self.force_zeros_for_empty_prompt, add_watermarker=False,
            )
        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )


def _check_vocabulary(name_or_path: str, tokenizer: CLIPTokenizer, text_encoder: torch.nn.Module, part: str) -> None:
    if len(tokenizer) != text_encoder.config.vocab_size:
        raise BobInputError(
            f"the {part} tokenizer of {name_or_path} has {len(tokenizer)} tokens but its text encoder expects "
            f"{text_encoder.config.vocab_size}; the tokenizer files are incomplete, download the model again"
        )


def load_stable_diffusion(
    name_or_path: str, revision: str | None = None, variant: str | None = None, dtype: torch.dtype = torch.float32
) -> StableDiffusionParts:
    """Load an SD 1.x / 2.x, SD-XL or SD3 checkpoint with its weights in ``dtype``.

    A pipeline with a ``transformer`` is SD3 (`StableDiffusion3Pipeline`: MMDiT, two CLIP
    encoders and T5). Otherwise the family is the UNet's: one that takes SD-XL's pooled-text and
    size conditioning (``addition_embed_type`` ``text_time``) loads with the second text encoder.
    Raises `BobInputError` at once when the model is neither a folder nor cached while
    ``HF_HUB_OFFLINE`` is set, and when the UNet expects any other extra conditioning than a
    pooling of the prompt it computes itself (``text``).
    Weights are read from safetensors files only.
    """
    check_model_available(name_or_path, "model_index.json", model_components(name_or_path))
    common: dict[str, Any] = {"revision": revision}
    weights: dict[str, Any] = {**common, "variant": variant, "use_safetensors": True}
    index = DiffusionPipeline.load_config(name_or_path, **common)
    if "transformer" in index:
        return _load_sd3(name_or_path, index, common, weights, dtype)
    unet = UNet2DConditionModel.from_pretrained(name_or_path, subfolder="unet", dtype=dtype, **weights)
    extra = unet.config.addition_embed_type
    # "text" pools the prompt encoding inside the UNet (as the toy world's pooled-text prior
    # does) and needs nothing from the pipeline.
    if extra not in (None, "text", "text_time"):
        raise BobInputError(
            f"{name_or_path} has a UNet that expects {extra!r} conditioning; bob's diffusion stages support "
            "Stable Diffusion 1.x, 2.x and XL checkpoints"
        )
    tokenizer = CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer", **common)
    text_encoder = CLIPTextModel.from_pretrained(name_or_path, subfolder="text_encoder", dtype=dtype, **weights)
    _check_vocabulary(name_or_path, tokenizer, text_encoder, "first")
    xl: dict[str, Any] = {}
    if extra == "text_time":
        xl["tokenizer_2"] = CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer_2", **common)
        xl["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
            name_or_path, subfolder="text_encoder_2", dtype=dtype, **weights
        )
        _check_vocabulary(name_or_path, xl["tokenizer_2"], xl["text_encoder_2"], "second")
        xl["force_zeros_for_empty_prompt"] = bool(index.get("force_zeros_for_empty_prompt", True))
    vae = AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", dtype=dtype, **weights)
    scheduler_config = DDPMScheduler.load_config(name_or_path, subfolder="scheduler", **common)
    noise_scheduler = DDPMScheduler.from_config(scheduler_config)
    inference_class = getattr(diffusers, scheduler_config["_class_name"])
    inference_scheduler = inference_class.from_config(scheduler_config)
    parts = StableDiffusionParts(tokenizer, text_encoder, vae, unet, noise_scheduler, inference_scheduler, **xl)
    rank_zero_info(
        f"loaded {name_or_path} ({'SD-XL' if parts.is_xl else 'SD 1.x/2.x'}): UNet "
        f"{sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M parameters, "
        f"{noise_scheduler.config.prediction_type} prediction, {inference_class.__name__} sampler"
    )
    return parts


def _load_sd3(
    name_or_path: str, index: dict, common: dict[str, Any], weights: dict[str, Any], dtype: torch.dtype
) -> StableDiffusionParts:
    if index.get("_class_name") != "StableDiffusion3Pipeline":
        raise BobInputError(
            f"{name_or_path} is a {index.get('_class_name')!r}; of the transformer models bob's diffusion stages "
            "support Stable Diffusion 3 / 3.5 (StableDiffusion3Pipeline)"
        )
    transformer = SD3Transformer2DModel.from_pretrained(name_or_path, subfolder="transformer", dtype=dtype, **weights)
    clips = {}
    for suffix in ("", "_2"):
        tokenizer = CLIPTokenizer.from_pretrained(name_or_path, subfolder=f"tokenizer{suffix}", **common)
        encoder = CLIPTextModelWithProjection.from_pretrained(
            name_or_path, subfolder=f"text_encoder{suffix}", dtype=dtype, **weights
        )
        _check_vocabulary(name_or_path, tokenizer, encoder, f"text_encoder{suffix}")
        clips[f"tokenizer{suffix}"], clips[f"text_encoder{suffix}"] = tokenizer, encoder
    tokenizer_3 = AutoTokenizer.from_pretrained(name_or_path, subfolder="tokenizer_3", **common)
    text_encoder_3 = T5EncoderModel.from_pretrained(name_or_path, subfolder="text_encoder_3", dtype=dtype, **weights)
    vae = AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", dtype=dtype, **weights)
    scheduler_config = FlowMatchEulerDiscreteScheduler.load_config(name_or_path, subfolder="scheduler", **common)
    parts = StableDiffusionParts(
        vae=vae, unet=None, transformer=transformer,
        noise_scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler_config),
        inference_scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler_config),
        tokenizer_3=tokenizer_3, text_encoder_3=text_encoder_3, **clips,
    )
    rank_zero_info(
        f"loaded {name_or_path} (SD3): transformer {sum(p.numel() for p in transformer.parameters()) / 1e6:.0f}M "
        f"parameters, flow matching (shift {scheduler_config.get('shift', 1.0)}), T5 "
        f"{sum(p.numel() for p in text_encoder_3.parameters()) / 1e6:.0f}M"
    )
    return parts
