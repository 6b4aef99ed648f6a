"""Random-weight models of the paper's architectures (or tiny ones), built from configs with no download."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

SizeName = Literal["tiny", "paper"]

CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")
QWEN_SPECIALS = (
    "<|im_end|>", "<|endoftext|>", "<|im_start|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
)
#: Qwen2.5-VL's chat template, reduced to what one user turn of images and text needs.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class Architectures:
    """Every model the benchmarks build at one size.

    Args:
        name: the ``--size`` that selects it.
        image_size: Stable Diffusion's training and generation resolution in pixels.
        unet: `diffusers.UNet2DConditionModel` config.
        vae: `diffusers.AutoencoderKL` config.
        text_encoder: `transformers.CLIPTextConfig` arguments (vocabulary size and token ids added).
        text_vocab_size: CLIP tokenizer vocabulary, padded with filler tokens to this size.
        classifier: timm model name of the downstream classifier (random weights).
        classifier_image_size: the classifier's input side in pixels.
        captioner_text: `Qwen2_5_VLConfig` text config (vocabulary and token ids added).
        captioner_vision: `Qwen2_5_VLConfig` vision config.
        captioner_vocab_size: Qwen tokenizer vocabulary, padded to this size.
        captioner_max_pixels: the image processor's ``max_pixels`` (image tokens per picture).
    """

    name: str
    image_size: int
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    text_vocab_size: int
    classifier: str
    classifier_image_size: int
    captioner_text: dict[str, Any]
    captioner_vision: dict[str, Any]
    captioner_vocab_size: int
    captioner_max_pixels: int
    notes: list[str] = field(default_factory=list)


TINY = Architectures(
    name="tiny",
    image_size=64,
    unet={
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": (32, 64), "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"), "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 8,
    },
    vae={
        "in_channels": 3, "out_channels": 3, "block_out_channels": (16, 32, 32, 32),
        "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4, "norm_num_groups": 8, "sample_size": 64,
    },
    text_encoder={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": 77, "projection_dim": 32,
    },
    text_vocab_size=1000,
    classifier="test_resnet",
    classifier_image_size=64,
    captioner_text={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 1024,
        "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
    },
    captioner_vision={
        "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 32,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
        "fullatt_block_indexes": [1],
    },
    captioner_vocab_size=300,
    captioner_max_pixels=28 * 28 * 16,
)

#: Stable Diffusion 2.1-base (UNet, VAE, OpenCLIP ViT-H text tower), ResNet-50 and Qwen2.5-VL-7B-Instruct.
PAPER = Architectures(
    name="paper",
    image_size=512,
    unet={
        "sample_size": 64, "in_channels": 4, "out_channels": 4, "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True,
        "norm_num_groups": 32, "act_fn": "silu", "flip_sin_to_cos": True, "freq_shift": 0,
    },
    vae={
        "in_channels": 3, "out_channels": 3, "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2, "latent_channels": 4, "norm_num_groups": 32, "sample_size": 512,
        "scaling_factor": 0.18215,
    },
    text_encoder={
        "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16,
        "max_position_embeddings": 77, "projection_dim": 1024, "hidden_act": "gelu",
    },
    text_vocab_size=49408,
    classifier="resnet50",
    classifier_image_size=224,
    captioner_text={
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "max_position_embeddings": 128000, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    },
    captioner_vision={
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "hidden_act": "silu",
    },
    captioner_vocab_size=152064,
    captioner_max_pixels=12845056,
    notes=[
        "Parameter counts equal the published models': UNet 865,910,724, VAE 83,653,863, text encoder "
        "340,387,840 (SD 2.1-base), ResNet-50 25,557,032, Qwen2.5-VL-7B 8,292,166,656.",
        "UNet heads (5, 10, 20, 20) and linear projections follow diffusers' conversion of the LDM v2 config "
        "(320 channels / 64 per head); head counts do not change parameter counts, so they rest on that mapping.",
        "Not checked (no network): the hub's upcast_attention flag (SDPA attention ignores it) and the "
        "tokenizers' merges; a filler vocabulary of the real size is used, so prompts split into more tokens, "
        "while the text encoder always runs on 77 positions as in the real model.",
    ],
)

SIZES = {"tiny": TINY, "paper": PAPER}

#: The paper's architectures with Qwen2.5-VL-3B-Instruct as the captioner (3,754,622,976 parameters,
#: 7.5 GB in bf16), the largest Qwen2.5-VL that builds and runs within ~10 GB of a CPU machine's memory.
PAPER_3B_CAPTIONER = replace(
    PAPER,
    name="paper-3b-captioner",
    captioner_text={
        "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
        "num_key_value_heads": 2, "max_position_embeddings": 128000, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": True,
    },
    captioner_vision={**PAPER.captioner_vision, "out_hidden_size": 2048},
    captioner_vocab_size=151936,
)

#: `transformers.CLIPConfig` arguments of openai/clip-vit-base-patch16, the paper's CLIP classifier
#: (149,620,737 parameters; the vocabulary is added by `save_clip`).
CLIP_VIT_B16 = {
    "text_config": {
        "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8,
        "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    },
    "vision_config": {
        "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
        "image_size": 224, "patch_size": 16, "hidden_act": "quick_gelu",
    },
    "projection_dim": 512,
}


def byte_symbols() -> list[str]:
    """The GPT-2 / CLIP byte-to-printable-character alphabet (256 symbols)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build models with their weights in ``dtype`` (a 7B model built in fp32 would need 30 GB)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def write_clip_tokenizer(folder: Path, vocab_size: int) -> Path:
    """CLIP BPE files with no merges (every character is a token), padded to ``vocab_size`` tokens.

    Without merges a prompt has more tokens than with CLIP's real merges, but the text encoder
    always runs on 77 padded positions, so its cost is the real one.
    """
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols)]
    tokens += [f"filler{i}</w>" for i in range(vocab_size - len(tokens) - len(CLIP_SPECIALS))]
    tokens += CLIP_SPECIALS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def clip_tokenizer(vocab_size: int):
    """A `CLIPTokenizer` over `write_clip_tokenizer`'s files, checked to have ``vocab_size`` tokens."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as files:
        write_clip_tokenizer(Path(files), vocab_size)
        tokenizer = CLIPTokenizer(f"{files}/vocab.json", f"{files}/merges.txt", model_max_length=77)
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"built a tokenizer of {len(tokenizer)} tokens, expected {vocab_size}")
    return tokenizer


def save_stable_diffusion(
    folder: str | Path, size: Architectures, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Path:
    """A random-weight Stable Diffusion pipeline of ``size`` saved as a diffusers folder (safetensors).

    ``dtype`` is the weights' dtype, in memory while building and on disk (bfloat16 halves both).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(size.text_vocab_size)
    vocab = size.text_vocab_size
    text_config = CLIPTextConfig(
        vocab_size=vocab, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1, **size.text_encoder
    )
    # SD 2.1-base's own sampler settings (PNDM, scaled-linear betas, epsilon prediction).
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000, prediction_type="epsilon",
    )
    with default_dtype(dtype):
        pipeline = StableDiffusionPipeline(
            vae=AutoencoderKL(**size.vae), text_encoder=CLIPTextModel(text_config), tokenizer=tokenizer,
            unet=UNet2DConditionModel(**size.unet), scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def save_clip(folder: str | Path, config: dict[str, Any] = CLIP_VIT_B16, vocab_size: int = 49408, seed: int = 0) -> Path:
    """A random-weight `transformers.CLIPModel` (fp32) with its tokenizer, loadable as `CLIPBackbone`'s ``model``."""
    from transformers import CLIPConfig, CLIPModel

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(vocab_size)
    text = {**config["text_config"], "vocab_size": vocab_size, "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1}
    CLIPModel(CLIPConfig(**{**config, "text_config": text})).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_captioner(folder: str | Path, size: Architectures, seed: int = 0) -> Path:
    """A random-weight Qwen2.5-VL of ``size`` with its processor, loadable with the Auto classes.

    Its end-of-answer token is suppressed, so every answer is exactly ``max_new_tokens`` long
    and both code paths generate the same number of tokens.
    """
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    symbols = byte_symbols()
    filler = [f"filler{i}" for i in range(size.captioner_vocab_size - len(symbols) - len(QWEN_SPECIALS))]
    with tempfile.TemporaryDirectory() as files:
        (Path(files) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate([*symbols, *filler])}))
        (Path(files) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = Qwen2Tokenizer(
            vocab=f"{files}/vocab.json", merges=f"{files}/merges.txt", unk_token=None, bos_token=None,
            eos_token="<|im_end|>", pad_token="<|endoftext|>",
        )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIALS[2:])})
    if len(tokenizer) != size.captioner_vocab_size:
        raise RuntimeError(f"built a tokenizer of {len(tokenizer)} tokens, expected {size.captioner_vocab_size}")
    ids = dict(zip(QWEN_SPECIALS, tokenizer.convert_tokens_to_ids(list(QWEN_SPECIALS)), strict=True))
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=size.captioner_max_pixels),
        tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_CHAT_TEMPLATE,
    )
    config = Qwen2_5_VLConfig(
        text_config={
            **size.captioner_text, "vocab_size": len(tokenizer), "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config=size.captioner_vision,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    with default_dtype(torch.bfloat16 if size.name != "tiny" else torch.float32):
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        suppress_tokens=[ids["<|im_end|>"]],
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
