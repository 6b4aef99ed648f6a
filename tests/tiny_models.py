"""Tiny random-weight versions of the real model classes, built offline for tests."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import torch


def write_clip_tokenizer_files(folder: str | Path) -> Path:
    """A character-level CLIP BPE vocabulary (vocab.json + merges.txt) that `CLIPTokenizer` loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab: dict[str, int] = {}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def tiny_clip_tokenizer(folder: str | Path):
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(folder)
    tokenizer = CLIPTokenizer(
        str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"), model_max_length=77
    )
    assert len(tokenizer) > 100, "tokenizer lost its vocabulary"
    return tokenizer


def tiny_clip_text_config(vocab_size: int, hidden_size: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=hidden_size,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def save_tiny_stable_diffusion(folder: str | Path, seed: int = 0) -> Path:
    """Save a random-weight Stable Diffusion pipeline (64 px images, 8x8 latents) as a diffusers folder.

    The UNet has the attention projections the paper's LoRA targets (``to_q``... ``add_k_proj``
    only exists in SD-XL-style blocks, as in the real SD 2.1 UNet which lacks them too).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tokenizer_files:
        tokenizer = tiny_clip_tokenizer(tokenizer_files)
    text_encoder = CLIPTextModel(tiny_clip_text_config(len(tokenizer)))
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return folder


def save_tiny_clip(folder: str | Path, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> Path:
    """Save a random-weight `CLIPModel` (both towers, 2 layers, width 32) with its tokenizer as a folder."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    folder = Path(folder)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tokenizer_files:
        tokenizer = tiny_clip_tokenizer(tokenizer_files)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size, projection_dim=32,
    )
    config = CLIPConfig(
        text_config=tiny_clip_text_config(len(tokenizer)).to_dict(), vision_config=vision.to_dict(), projection_dim=32
    )
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
