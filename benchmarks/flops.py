"""Model FLOPs per sample of every stage (a LoRA training sample, one generated image, a classifier
training image, one captioned image), counted on the meta device (no weights, no compute)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.architectures import (
    CLIP_VIT_B16,
    QWEN_CHAT_TEMPLATE,
    QWEN_SPECIALS,
    SD21_SCHEDULER,
    Architectures,
)

#: CLIP text encoders run on this many positions (their limit; prompts are padded to it).
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


def counted_result(function: Any) -> tuple[Any, float]:
    """What one call of ``function`` returns, and its FLOPs (forward, and backward if it calls it)."""
    with FlopCounterMode(display=False) as counter:
        result = function()
    return result, float(counter.get_total_flops())


def counted(function: Any) -> float:
    """FLOPs of one call of ``function`` (forward, and backward if it calls it)."""
    return counted_result(function)[1]


@dataclass
class DiffusionModels:
    """One Stable Diffusion model's parts built on the meta device (`Architectures` configs), LoRA attached as bob attaches it."""

    family: str
    denoiser: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list[torch.nn.Module]
    t5: torch.nn.Module | None

    def text_ids(self, rows: int) -> list[torch.Tensor]:
        with torch.device("meta"):
            return [torch.zeros(rows, TOKENS, dtype=torch.long) for _ in self.text_encoders]

    def t5_hidden(self, rows: int) -> torch.Tensor | None:
        """SD3: T5's output for ``rows`` prompts of the pipeline's 256 tokens; None for the other models."""
        if self.t5 is None:
            return None
        from bob.modules.diffusion.components import SD3_MAX_SEQUENCE_LENGTH

        with torch.device("meta"):
            ids = torch.zeros(rows, SD3_MAX_SEQUENCE_LENGTH, dtype=torch.long)
        return self.t5(ids)[0]

    def encode(self, rows: int, t5_hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The prompt embeddings of ``rows`` prompts, as bob's training and the pipeline compute them
        (`bob.modules.diffusion.text_conditioning.encode_tokens`); SD3 takes T5's output as given."""
        from bob.modules.diffusion.text_conditioning import encode_tokens

        ids = self.text_ids(rows)
        return encode_tokens(self.family, self.text_encoders, ids, [None] * len(ids), t5_hidden)

    def denoise(self, latents: torch.Tensor, embeddings: tuple[torch.Tensor, ...], side: int) -> torch.Tensor:
        """The denoiser on ``latents`` (a ``side`` px image's) at one timestep, conditioned as bob conditions it."""
        from bob.modules.diffusion.text_conditioning import denoise

        with torch.device("meta"):
            timesteps = torch.zeros(latents.shape[0], dtype=torch.float32 if self.family == "sd3" else torch.long)
        return denoise(self.family, self.denoiser, latents, timesteps, embeddings, side, side)


def _models(
    size: Architectures, lora_rank: int | None, text_lora: bool = True, targets: Sequence[str] | None = None,
    text_targets: Sequence[str] | None = None,
) -> DiffusionModels:
    """``size``'s Stable Diffusion model on the meta device. ``lora_rank``: an adapter on the denoiser's
    ``targets`` and, with ``text_lora``, on the CLIP encoders' ``text_targets`` (default: `LoRAFineTuner`'s),
    attached by bob's `attach_lora` (targets a model lacks are skipped, as in training)."""
    from bob.modules.diffusion.finetuner import PAPER_TEXT_ENCODER_TARGETS, PAPER_UNET_TARGETS
    from bob.modules.diffusion.lora import attach_lora

    with torch.device("meta"):
        models = DiffusionModels(
            size.family, size.build_denoiser(), size.build_vae(), size.build_text_encoders(), size.build_t5()
        )
    for module in (models.denoiser, models.vae, *models.text_encoders, models.t5):
        if module is not None:
            module.requires_grad_(False)
    if lora_rank:
        attach_lora(models.denoiser, lora_rank, lora_rank, list(targets or PAPER_UNET_TARGETS), "gaussian", "denoiser")
        if text_lora:
            for encoder in models.text_encoders:
                attach_lora(encoder, lora_rank, lora_rank, list(text_targets or PAPER_TEXT_ENCODER_TARGETS), "gaussian",
                            "text encoder")
    return models


def _latents(size: Architectures, rows: int, side: int) -> torch.Tensor:
    latent = side // size.vae_downsampling
    with torch.device("meta"):
        return torch.empty(rows, size.denoiser["in_channels"], latent, latent)


def lora_sample_parts(
    size: Architectures, batch: int = 1, rank: int = 16, train_text_encoder: bool = True,
    targets: Sequence[str] | None = None, text_targets: Sequence[str] | None = None, image_size: int | None = None,
) -> dict[str, float]:
    """FLOPs of one LoRA training sample at ``image_size`` px (default the model's own) by part:
    ``vae_encoder`` (forward), ``text_encoder`` (the CLIP encoders, both of SD-XL's and SD3's: forward
    and backward with their LoRA when ``train_text_encoder``, as the paper; forward only when frozen),
    ``t5_encoder`` (SD3's T5, forward; never trained, so bob runs it once per distinct prompt; 0 for the
    other models) and ``denoiser`` (the UNet or SD3's transformer, forward and backward with its LoRA on
    ``targets``). Parts add up exactly: the denoiser's backward into the prompt embeddings is counted
    with the denoiser when the text encoders train. ``denoiser_forward`` (not a part): the denoiser's
    forward alone, which gradient checkpointing runs again during the backward."""
    models = _models(size, rank, train_text_encoder, targets, text_targets)
    side = image_size or size.image_size
    noisy = _latents(size, batch, side)
    with torch.device("meta"):
        pixels = torch.empty(batch, 3, side, side)

    def train(embeddings: tuple[torch.Tensor, ...]) -> None:
        prediction = models.denoise(noisy, embeddings, side)
        F.mse_loss(prediction, torch.empty_like(prediction)).backward()

    vae_encoder = counted(lambda: models.vae.encode(pixels).latent_dist.sample())
    with torch.no_grad():
        t5_hidden, t5_part = counted_result(lambda: models.t5_hidden(batch))
        frozen = models.encode(batch, t5_hidden)
        forward = counted(lambda: models.denoise(noisy, frozen, side))
    embeddings = tuple(e.detach().requires_grad_(train_text_encoder) for e in frozen)
    denoiser = counted(lambda: train(embeddings))
    if train_text_encoder:
        text = counted(lambda: train(models.encode(batch, t5_hidden))) - denoiser
    else:
        with torch.no_grad():
            text = counted(lambda: models.encode(batch, t5_hidden))
    parts = {"vae_encoder": vae_encoder, "text_encoder": text, "t5_encoder": t5_part, "denoiser": denoiser,
             "denoiser_forward": forward}
    return {name: value / batch for name, value in parts.items()}


def lora_step_flops(
    size: Architectures, batch: int, rank: int = 16, targets: Sequence[str] | None = None, image_size: int | None = None,
) -> dict[str, float]:
    """FLOPs per training sample: ``full`` (VAE encode + text encoders and denoiser forward/backward) and
    ``cached`` (without the VAE, as with bob's latent cache). SD3's T5 is in neither: bob runs it once
    per distinct prompt, in the first epoch, which the timings leave out."""
    parts = lora_sample_parts(size, batch, rank, targets=targets, image_size=image_size)
    cached = parts["text_encoder"] + parts["denoiser"]
    return {"full": cached + parts["vae_encoder"], "cached": cached}


def sampler_unet_calls(steps: int, scheduler: dict[str, Any] | None = None) -> int:
    """Denoiser evaluations per image of a model's own sampler (``scheduler``: its config, default
    SD 2.1-base's PNDM with PLMS steps only, which evaluates one timestep twice: 51 for 50 steps; SD-XL's
    Euler and SD3's flow-matching Euler evaluate once per step)."""
    import diffusers

    config = scheduler or SD21_SCHEDULER
    sampler = getattr(diffusers, config["_class_name"]).from_config(config)
    sampler.set_timesteps(steps)
    return len(sampler.timesteps)


def generation_parts(
    size: Architectures, steps: int, guidance: float, lora_rank: int | None = None, unet_calls: int | None = None,
    image_size: int | None = None, targets: Sequence[str] | None = None,
) -> dict[str, float]:
    """FLOPs per generated image at ``image_size`` px (default the model's own) by part: ``text_encoder``
    (the CLIP encoders on the prompt, and on the empty prompt with guidance; SD-XL's pipeline gives the
    unconditional row zeros instead, its ``force_zeros_for_empty_prompt``), SD3's ``t5_encoder`` (likewise),
    ``denoiser`` (``unet_calls`` passes, default `sampler_unet_calls` of the model's sampler; two rows each
    with guidance), ``vae_decoder``. ``lora_rank``: an adapter left unfused on the denoiser (on ``targets``)
    and the CLIP encoders (as `load_lora_weights` leaves it); None: none, or folded into the weights (bob)."""
    models = _models(size, lora_rank, targets=targets)
    rows = 2 if guidance > 1 else 1
    text_rows = 1 if size.family == "sdxl" else rows
    side = image_size or size.image_size
    latents = _latents(size, rows, side)
    calls = sampler_unet_calls(steps, size.scheduler) if unet_calls is None else unet_calls
    with torch.no_grad():
        t5_hidden, t5_part = counted_result(lambda: models.t5_hidden(text_rows))
        parts = {"text_encoder": counted(lambda: models.encode(text_rows, t5_hidden))}
        if models.t5 is not None:
            parts["t5_encoder"] = t5_part
        embeddings = models.encode(rows, models.t5_hidden(rows))
        parts["denoiser"] = calls * counted(lambda: models.denoise(latents, embeddings, side))
        parts["vae_decoder"] = counted(lambda: models.vae.decode(latents[:1]))
    return parts


def generation_flops(
    size: Architectures, steps: int, guidance: float, lora_rank: int | None = None, unet_calls: int | None = None,
    image_size: int | None = None,
) -> float:
    """FLOPs per generated image: prompt encoding, the sampler's denoiser passes (two rows with guidance), VAE decode."""
    return sum(generation_parts(size, steps, guidance, lora_rank, unet_calls, image_size).values())


def clip_backbone(num_classes: int, prompt_tokens: int, init_args: dict[str, Any] | None = None) -> Any:
    """bob's `CLIPBackbone` around a meta-device CLIP ViT-B/16 (`CLIP_VIT_B16`), adapters attached as
    `build` attaches them, reading ``num_classes`` prompts of ``prompt_tokens`` tokens."""
    from transformers import CLIPConfig, CLIPModel

    from bob.modules.classifier.clip import CLIPBackbone

    vocab = 49408
    text = {**CLIP_VIT_B16["text_config"], "vocab_size": vocab, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1}
    with torch.device("meta"):
        backbone = CLIPBackbone(**{k: v for k, v in (init_args or {}).items() if k != "model"})
        clip = CLIPModel(CLIPConfig(**{**CLIP_VIT_B16, "text_config": text}))
        backbone.register_buffer("prompt_ids", torch.zeros(num_classes, prompt_tokens, dtype=torch.long), persistent=False)
    if backbone.finetune == "lora":
        clip = backbone.attach_lora(clip)
    else:
        clip.requires_grad_(backbone.finetune == "full")
    clip.logit_scale.requires_grad_(False)
    backbone.clip = clip
    backbone.built = True
    return backbone


def timm_backbone(init_args: dict[str, Any], num_classes: int, image_size: int) -> Any:
    """bob's `TimmBackbone` built on the meta device with random weights (no download)."""
    from bob.modules.classifier.timm_backbone import TimmBackbone

    with torch.device("meta"):
        backbone = TimmBackbone(**init_args)
        names = [f"class {i}" for i in range(num_classes)]
        backbone.build(num_classes, names, "object", image_size, pretrained_weights=False)
    return backbone


def classifier_sample_parts(backbone: Any, image_size: int, num_classes: int) -> dict[str, float]:
    """FLOPs of a classifier (a built bob `Backbone`): ``image``, forward and backward per training
    image; ``per_step``, the training work done once per step whatever the batch (CLIP's text tower
    on the class prompts, forward and backward); ``eval_image``, forward per evaluated image."""

    def train(batch: int) -> float:
        with torch.device("meta"):
            pixels = torch.empty(batch, 3, image_size, image_size)
            labels = torch.zeros(batch, dtype=torch.long)
        return counted(lambda: F.cross_entropy(backbone.classify(pixels), labels).backward())

    backbone.train()
    two, four = train(2), train(4)  # batch 2 and 4: batch norm trains on more than one value
    image = (four - two) / 2
    backbone.eval()
    with torch.device("meta"):
        pixels = torch.empty(1, 3, image_size, image_size)
    with torch.no_grad():
        backbone.classify(pixels)  # CLIP encodes its prompts once per evaluation phase
        eval_image = counted(lambda: backbone.classify(pixels))
    return {"image": image, "per_step": two - 2 * image, "eval_image": eval_image}


def chat_text_tokens(question: str) -> int:
    """Tokens of the captioner's prompt besides the image's: the chat template's special tokens,
    one each, and every other UTF-8 byte as one token (an upper bound: byte-level BPE merges bytes)."""
    import jinja2

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = jinja2.Template(QWEN_CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)
    specials = 0
    for token in QWEN_SPECIALS:
        specials += text.count(token) * (token != "<|image_pad|>")
        text = text.replace(token, "")
    return specials + len(text.encode())


def caption_parts(size: Architectures, photo_hw: tuple[int, int], prompt_tokens: int, answer_tokens: int) -> dict[str, Any]:
    """FLOPs of one question about one photo (``height, width`` as the captioner's processor gets it):
    ``vision`` (the vision tower on the photo's patches) and ``language`` (the language model over the
    image tokens, ``prompt_tokens`` and ``answer_tokens`` - 1 fed-back answer tokens in one pass: the
    linear layers cost what prefill plus cached decoding costs, attention is counted over the full
    square; the output head on the ``answer_tokens`` positions that produce a token); and
    ``image_tokens``."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
    from transformers.vision_utils import get_vision_position_ids, get_vision_window_index

    vision = size.captioner_vision
    patch, merge = vision["patch_size"], vision["spatial_merge_size"]
    config = Qwen2_5_VLConfig(
        text_config={**size.captioner_text, "vocab_size": size.captioner_vocab_size, "bos_token_id": None,
                     "eos_token_id": None},
        vision_config=vision,
    )
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    # The processor's resize (multiples of patch x merge, pixels within the image processor's bounds).
    height, width = smart_resize(
        *photo_hw, factor=patch * merge, min_pixels=28 * 28 * 4, max_pixels=size.captioner_max_pixels
    )
    grid = torch.tensor([[1, height // patch, width // patch]])
    patches = int(grid.prod())
    image_tokens = patches // merge**2
    tower = model.model.visual
    # Positions and windows are computed on the host, as the processor's grid is; the meta model takes them as given.
    positions = get_vision_position_ids(grid, merge)
    windows, window_bounds = get_vision_window_index(grid, merge, tower.window_size, patch)
    positions_total = image_tokens + prompt_tokens + answer_tokens - 1
    with torch.device("meta"):
        pixels = torch.empty(patches, 3 * vision["temporal_patch_size"] * patch**2)
        embeddings = torch.empty(1, positions_total, size.captioner_text["hidden_size"])
        position_ids = torch.zeros(3, 1, positions_total, dtype=torch.long)
    with torch.no_grad():
        vision_flops = counted(
            lambda: tower(pixels, grid_thw=grid, position_ids=positions.to("meta"),
                          window_index=windows.to("meta"), cu_window_seqlens=window_bounds)
        )

        def language() -> None:
            hidden = model.model.language_model(inputs_embeds=embeddings, position_ids=position_ids, use_cache=False)
            model.lm_head(hidden.last_hidden_state[:, -answer_tokens:])

        language_flops = counted(language)
    return {"vision": vision_flops, "language": language_flops, "image_tokens": image_tokens}


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
