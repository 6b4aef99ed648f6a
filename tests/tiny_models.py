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


def tiny_clip_tokenizer_pair():
    """Two CLIP tokenizers over one vocabulary, the second padding with ``!`` as SD-XL's and SD3's second does."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tokenizer_files:
        tokenizer = tiny_clip_tokenizer(tokenizer_files)
        tokenizer_2 = CLIPTokenizer(
            str(Path(tokenizer_files) / "vocab.json"), str(Path(tokenizer_files) / "merges.txt"),
            model_max_length=77, pad_token="!",
        )
    return tokenizer, tokenizer_2


def tiny_vae(**overrides):
    """A random `AutoencoderKL` for 64 px images (8x8x4 latents); ``overrides`` change its config."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{
        "in_channels": 3, "out_channels": 3, "block_out_channels": (16, 32, 32, 32),
        "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4, "norm_num_groups": 8, "sample_size": 64, **overrides,
    })


def save_tiny_stable_diffusion(folder: str | Path, seed: int = 0) -> Path:
    """Save a random-weight Stable Diffusion pipeline (64 px images, 8x8 latents) as a diffusers folder.

    The UNet has the attention projections the paper's LoRA targets (``to_q``... ``add_k_proj``
    exists only in attention with added key/value projections, which SD 2.1 lacks too).
    """
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
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
    vae = tiny_vae()
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


def save_tiny_stable_diffusion_xl(folder: str | Path, seed: int = 0) -> Path:
    """Save a random-weight SD-XL pipeline (`StableDiffusionXLPipeline`, 64 px images) as a diffusers folder.

    Its UNet takes SD-XL's extra conditioning (pooled text + six size numbers, ``text_time``);
    the second text encoder has a projection and a tokenizer that pads with ``!`` as SD-XL's does.
    """
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = tiny_clip_tokenizer_pair()
    text_encoder = CLIPTextModel(tiny_clip_text_config(len(tokenizer)))
    text_encoder_2 = CLIPTextModelWithProjection(tiny_clip_text_config(len(tokenizer)))
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(4, 8),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=64,  # both encoders' hidden states side by side: 32 + 32
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + 32,  # six size numbers + the pooled text
        norm_num_groups=8,
    )
    vae = tiny_vae()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", num_train_timesteps=1000,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, add_watermarker=False,
    )
    pipeline.save_pretrained(folder)
    return folder


def tiny_t5_tokenizer():
    """A character-level T5 tokenizer that `AutoTokenizer` loads back from its ``tokenizer.json``
    (`benchmarks.architectures.t5_tokenizer`, which the benchmark's SD3 models use too)."""
    from benchmarks.architectures import t5_tokenizer

    return t5_tokenizer()


def save_tiny_stable_diffusion_3(folder: str | Path, seed: int = 0) -> Path:
    """Save a random-weight SD3 pipeline (`StableDiffusion3Pipeline`: MMDiT transformer, two CLIP
    encoders with projections, T5, flow-matching scheduler; 64 px images) as a diffusers folder.

    Shaped like SD 3.5 Medium: RMS-normed queries and keys and a dual-attention block, and a VAE
    with a shift factor, so every step that real checkpoint takes is exercised.
    """
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = tiny_clip_tokenizer_pair()
    text_encoder = CLIPTextModelWithProjection(tiny_clip_text_config(len(tokenizer)))
    text_encoder_2 = CLIPTextModelWithProjection(tiny_clip_text_config(len(tokenizer)))
    tokenizer_3 = tiny_t5_tokenizer()
    text_encoder_3 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_3), d_model=64, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64,  # T5's width, which the CLIP states are padded to
        caption_projection_dim=32, pooled_projection_dim=64,  # both CLIP projections side by side
        pos_embed_max_size=16, qk_norm="rms_norm", dual_attention_layers=(0,),
    )
    vae = tiny_vae(shift_factor=0.1, scaling_factor=1.5, use_quant_conv=False, use_post_quant_conv=False)
    with torch.no_grad():
        # A trained VAE's posterior is nearly a point; a random one's is as wide as its mean,
        # which would put an irreducible floor under the flow-matching loss (its target holds the latents).
        vae.encoder.conv_out.bias[4:] = -12.0
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3,
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
