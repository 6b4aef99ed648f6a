"""Model FLOPs per sample of every stage (a LoRA training sample, one generated image, a classifier
training image, one captioned image), counted on the meta device (no weights, no compute)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.architectures import CLIP_VIT_B16, QWEN_CHAT_TEMPLATE, QWEN_SPECIALS, Architectures

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


def counted(function: Any) -> float:
    """FLOPs of one call of ``function`` (forward, and backward if it calls it)."""
    with FlopCounterMode(display=False) as counter:
        function()
    return float(counter.get_total_flops())


def _models(size: Architectures, lora_rank: int | None, text_lora: bool = True) -> tuple[Any, Any, Any]:
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
        if text_lora:
            text.add_adapter(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=TEXT_TARGETS))
    return unet, vae, text


def _latent_side(size: Architectures) -> int:
    return size.image_size // 2 ** (len(size.vae["block_out_channels"]) - 1)


def lora_sample_parts(
    size: Architectures, batch: int = 1, rank: int = 16, train_text_encoder: bool = True
) -> dict[str, float]:
    """FLOPs of one LoRA training sample by part: ``vae_encoder`` (forward), ``text_encoder`` (forward
    and backward with its LoRA when ``train_text_encoder``, as the paper; forward only when frozen)
    and ``unet`` (forward and backward with its LoRA). Parts add up exactly: the UNet's backward into
    the prompt embeddings is counted with the UNet when the text encoder trains."""
    unet, vae, text = _models(size, rank, text_lora=train_text_encoder)
    side, latent = size.image_size, _latent_side(size)
    with torch.device("meta"):
        pixels = torch.empty(batch, 3, side, side)
        ids = torch.zeros(batch, TOKENS, dtype=torch.long)
        noisy = torch.empty(batch, 4, latent, latent)
        timesteps = torch.zeros(batch, dtype=torch.long)
        embeddings = torch.empty(batch, TOKENS, size.unet["cross_attention_dim"], requires_grad=train_text_encoder)

    def train_unet(prompt_embeddings: torch.Tensor) -> None:
        prediction = unet(noisy, timesteps, prompt_embeddings).sample
        F.mse_loss(prediction, torch.empty_like(prediction)).backward()

    vae_encoder = counted(lambda: vae.encode(pixels).latent_dist.sample())
    unet_part = counted(lambda: train_unet(embeddings))
    if train_text_encoder:
        text_part = counted(lambda: train_unet(text(ids)[0])) - unet_part
    else:
        with torch.no_grad():
            text_part = counted(lambda: text(ids)[0])
    return {"vae_encoder": vae_encoder / batch, "text_encoder": text_part / batch, "unet": unet_part / batch}


def lora_step_flops(size: Architectures, batch: int, rank: int = 16) -> dict[str, float]:
    """FLOPs per training sample: ``full`` (VAE encode + text encoder and UNet forward/backward) and
    ``cached`` (without the VAE, as with bob's latent cache)."""
    parts = lora_sample_parts(size, batch, rank)
    cached = parts["text_encoder"] + parts["unet"]
    return {"full": cached + parts["vae_encoder"], "cached": cached}


def sampler_unet_calls(steps: int) -> int:
    """UNet evaluations per image of SD 2.1-base's own sampler (PNDM with PLMS steps only, its
    scheduler config), which evaluates one timestep twice: 51 for 50 steps."""
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler(num_train_timesteps=1000, steps_offset=1, skip_prk_steps=True)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def generation_parts(
    size: Architectures, steps: int, guidance: float, lora_rank: int | None = None, unet_calls: int | None = None
) -> dict[str, float]:
    """FLOPs per generated image by part: ``text_encoder`` (the prompt, and the empty prompt with
    guidance), ``unet`` (``unet_calls`` passes, default `sampler_unet_calls`; two rows each with
    guidance), ``vae_decoder``. ``lora_rank``: an adapter left unfused on the UNet and text encoder
    (as `load_lora_weights` leaves it); None: none, or folded into the weights (bob)."""
    unet, vae, text = _models(size, lora_rank)
    rows = 2 if guidance > 1 else 1
    latent = _latent_side(size)
    calls = sampler_unet_calls(steps) if unet_calls is None else unet_calls
    with torch.device("meta"):
        ids = torch.zeros(rows, TOKENS, dtype=torch.long)
        latents = torch.empty(rows, 4, latent, latent)
        timesteps = torch.zeros(rows, dtype=torch.long)
        embeddings = torch.empty(rows, TOKENS, size.unet["cross_attention_dim"])
    with torch.no_grad():
        return {
            "text_encoder": counted(lambda: text(ids)[0]),
            "unet": calls * counted(lambda: unet(latents, timesteps, embeddings)),
            "vae_decoder": counted(lambda: vae.decode(latents[:1])),
        }


def generation_flops(
    size: Architectures, steps: int, guidance: float, lora_rank: int | None = None, unet_calls: int | None = None
) -> float:
    """FLOPs per generated image: prompt encoding, the sampler's UNet passes (two rows with guidance), VAE decode."""
    return sum(generation_parts(size, steps, guidance, lora_rank, unet_calls).values())


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
