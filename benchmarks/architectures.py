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
ModelName = Literal["sd21", "sdxl", "sd35"]
#: ``--model`` -> the family bob's loader reads from the pipeline folder (`StableDiffusionParts.family`).
MODEL_FAMILIES = {"sd21": "sd", "sdxl": "sdxl", "sd35": "sd3"}
MODELS = tuple(MODEL_FAMILIES)
MODEL_TITLES = {"sd21": "SD 2.1-base", "sdxl": "SD-XL base 1.0", "sd35": "SD 3.5 Medium"}

#: Each model's own sampler and training schedule (its scheduler_config.json): SD 2.1-base's PNDM with
#: PLMS steps only, SD-XL base 1.0's Euler, SD 3.5's flow-matching Euler (shift 3).
SD21_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "skip_prk_steps": True, "set_alpha_to_one": False, "steps_offset": 1, "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
}
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "steps_offset": 1, "timestep_spacing": "leading", "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "interpolation_type": "linear", "use_karras_sigmas": False,
}
SD3_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}

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
        denoiser: config of the denoiser: `diffusers.UNet2DConditionModel`'s, or
            `diffusers.SD3Transformer2DModel`'s for the ``sd35`` model.
        vae: `diffusers.AutoencoderKL` config.
        text_encoder: `transformers.CLIPTextConfig` arguments of the (first) CLIP text encoder
            (vocabulary size and token ids added).
        text_vocab_size: CLIP tokenizer vocabulary, padded with filler tokens to this size.
        classifier: timm model name of the downstream classifier (random weights).
        classifier_image_size: the classifier's input side in pixels.
        captioner_text: `Qwen2_5_VLConfig` text config (vocabulary and token ids added).
        captioner_vision: `Qwen2_5_VLConfig` vision config.
        captioner_vocab_size: Qwen tokenizer vocabulary, padded to this size.
        captioner_max_pixels: the image processor's ``max_pixels`` (image tokens per picture).
        notes: what was and was not checked against the published models.
        model: the ``--model`` (Stable Diffusion model) it holds: ``sd21``, ``sdxl`` or ``sd35``.
        text_encoder_2: `transformers.CLIPTextConfig` arguments of SD-XL's and SD3's second CLIP
            text encoder (a `CLIPTextModelWithProjection`); None for SD 2.1.
        t5_encoder: `transformers.T5Config` arguments of SD3's third text encoder; None otherwise.
        scheduler: the model's scheduler config (``_class_name`` names the diffusers class).
    """

    name: str
    image_size: int
    denoiser: dict[str, Any]
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
    model: str = "sd21"
    text_encoder_2: dict[str, Any] | None = None
    t5_encoder: dict[str, Any] | None = None
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD21_SCHEDULER))

    @property
    def family(self) -> str:
        """``sd``, ``sdxl`` or ``sd3``, as bob's loader names the model it reads."""
        return MODEL_FAMILIES[self.model]

    @property
    def vae_downsampling(self) -> int:
        """Pixels per latent along a side."""
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    def build_denoiser(self) -> torch.nn.Module:
        """The UNet, or SD3's MMDiT transformer (in the current default device and dtype)."""
        from diffusers import SD3Transformer2DModel, UNet2DConditionModel

        return (SD3Transformer2DModel if self.family == "sd3" else UNet2DConditionModel)(**self.denoiser)

    def build_vae(self) -> torch.nn.Module:
        from diffusers import AutoencoderKL

        return AutoencoderKL(**self.vae)

    def build_text_encoders(self) -> list[torch.nn.Module]:
        """The CLIP text encoders in pipeline order: a `CLIPTextModel` (SD 2.1, SD-XL's first) or
        `CLIPTextModelWithProjection` (SD3's first, the second of SD-XL and SD3)."""
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        vocab = self.text_vocab_size
        configs = [c for c in (self.text_encoder, self.text_encoder_2) if c is not None]
        encoders = []
        for index, config in enumerate(configs):
            text_config = CLIPTextConfig(
                vocab_size=vocab, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1, **config
            )
            projected = index > 0 or self.family == "sd3"
            encoders.append((CLIPTextModelWithProjection if projected else CLIPTextModel)(text_config))
        return encoders

    def build_t5(self) -> torch.nn.Module | None:
        """SD3's T5 encoder; None for the other models."""
        if self.t5_encoder is None:
            return None
        from transformers import T5Config, T5EncoderModel

        return T5EncoderModel(T5Config(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **self.t5_encoder))


TINY = Architectures(
    name="tiny",
    image_size=64,
    denoiser={
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
    denoiser={
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

SDXL_NOTES = [
    "Parameter counts equal the published models': UNet 2,567,463,684, VAE 83,653,863, text encoders "
    "123,060,480 (CLIP ViT-L/14) and 694,659,840 (OpenCLIP ViT-bigG/14 with projection), SD-XL base 1.0.",
    "UNet heads (5, 10, 20), transformer depths (1, 2, 10), linear projections, the 2816-wide added "
    "conditioning (256 per size number) and the VAE's 0.13025 scale agree with Stability AI's sd_xl_base.yaml "
    "(64 channels per head, attention at the two lower resolutions) and with copies of the hub's unet/config.json; "
    "the hub files themselves were not read (no network).",
    "Not checked: the hub's tokenizer merges and tokenizer_2's '!' padding; both tokenizers here are the filler "
    "vocabulary of the real size, and both text encoders always run on 77 positions as in the real model.",
]
SD35_NOTES = [
    "Parameter counts equal those of the published stabilityai/stable-diffusion-3.5-medium parts as diffusers "
    "loads them: transformer 2,243,171,520, VAE 83,819,683, text encoders 123,650,304 (CLIP-L with projection), "
    "694,659,840 (CLIP-G) and 4,762,310,656 (T5-XXL's encoder). The transformer's 384 x 384 x 1536 positional "
    "table is a buffer in diffusers; with it the transformer has 2,469,663,936 values (the model card's 2.5B), "
    "and with CLIP-L, CLIP-G and the VAE 3,371,793,763, Keras Hub's count for this model.",
    "The transformer config (24 blocks of 24 heads x 64, dual attention in blocks 0-12, RMS-normed queries and "
    "keys, positions up to 384), the VAE's scale 1.5305 and shift 0.0609 and the scheduler's shift 3.0 agree "
    "with independent copies of the hub's configs, T5's with copies of google/t5-v1_1-xxl's; the hub files "
    "themselves were not read (no network), nor whether its scheduler shifts dynamically (that moves the "
    "timesteps, not the number of transformer calls).",
    "Not checked: the tokenizers' merges and T5's SentencePiece model; filler vocabularies of the real sizes are "
    "used (T5's padded to the model's 32,128 rows), and the encoders always run on 77 (CLIP) and 256 (T5, the "
    "pipeline's max_sequence_length) positions, as in the real model.",
]

#: CLIP ViT-L/14's text tower (SD-XL's first text encoder, SD3's first with its projection).
CLIP_L_TEXT = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "max_position_embeddings": 77, "projection_dim": 768, "hidden_act": "quick_gelu",
}
#: OpenCLIP ViT-bigG/14's text tower with its projection (the second text encoder of SD-XL and SD3).
CLIP_G_TEXT = {
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20,
    "max_position_embeddings": 77, "projection_dim": 1280, "hidden_act": "gelu",
}

#: SD-XL base 1.0 (UNet, VAE, CLIP ViT-L and OpenCLIP ViT-bigG text towers) in place of SD 2.1-base, at
#: 1024 px; the classifier and captioner are the paper's.
PAPER_SDXL = replace(
    PAPER,
    model="sdxl",
    image_size=1024,
    denoiser={
        "sample_size": 128, "in_channels": 4, "out_channels": 4, "block_out_channels": (320, 640, 1280),
        "layers_per_block": 2, "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20), "cross_attention_dim": 2048,
        "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32, "act_fn": "silu",
        "flip_sin_to_cos": True, "freq_shift": 0,
    },
    vae={**PAPER.vae, "sample_size": 1024, "scaling_factor": 0.13025},
    text_encoder=CLIP_L_TEXT,
    text_encoder_2=CLIP_G_TEXT,
    scheduler=SDXL_SCHEDULER,
    notes=SDXL_NOTES,
)

#: Stable Diffusion 3.5 Medium (MMDiT-X transformer, 16-channel VAE, CLIP-L and CLIP-G with projections,
#: T5-XXL's encoder) in place of SD 2.1-base, at 1024 px; the classifier and captioner are the paper's.
PAPER_SD35 = replace(
    PAPER,
    model="sd35",
    image_size=1024,
    denoiser={
        "sample_size": 128, "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 24,
        "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096,
        "caption_projection_dim": 1536, "pooled_projection_dim": 2048, "pos_embed_max_size": 384,
        "qk_norm": "rms_norm", "dual_attention_layers": tuple(range(13)),
    },
    vae={
        **PAPER.vae, "latent_channels": 16, "sample_size": 1024, "scaling_factor": 1.5305, "shift_factor": 0.0609,
        "use_quant_conv": False, "use_post_quant_conv": False,
    },
    text_encoder=CLIP_L_TEXT,
    text_encoder_2=CLIP_G_TEXT,
    t5_encoder={
        "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
        "feed_forward_proj": "gated-gelu", "vocab_size": 32128, "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6, "tie_word_embeddings": False,
    },
    scheduler=SD3_SCHEDULER,
    notes=SD35_NOTES,
)

#: Tiny SD-XL: the tiny SD's VAE and text tower (twice, the second with its projection), a UNet with
#: SD-XL's block layout, extra transformer layers and pooled-text + size conditioning.
TINY_SDXL = replace(
    TINY,
    model="sdxl",
    denoiser={
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": (32, 64), "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"), "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": (1, 2), "attention_head_dim": (4, 8), "use_linear_projection": True,
        "cross_attention_dim": 64,  # both text towers' hidden states side by side: 32 + 32
        "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + 32,  # six size numbers + the pooled text
        "norm_num_groups": 8,
    },
    text_encoder_2=TINY.text_encoder,
    scheduler=SDXL_SCHEDULER,
)

#: Tiny SD 3.5: a 2-block MMDiT with RMS-normed queries and keys and a dual-attention block, a 16-channel
#: VAE with a shift and no quant convolutions, two projected tiny text towers and a 2-layer T5.
TINY_SD35 = replace(
    TINY,
    model="sd35",
    denoiser={
        "sample_size": 8, "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2,
        "attention_head_dim": 8, "num_attention_heads": 4,
        "joint_attention_dim": 64,  # T5's width, which the CLIP states are padded to
        "caption_projection_dim": 32, "pooled_projection_dim": 64,  # both CLIP projections side by side
        "pos_embed_max_size": 16, "qk_norm": "rms_norm", "dual_attention_layers": (0,),
    },
    vae={
        **TINY.vae, "latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609,
        "use_quant_conv": False, "use_post_quant_conv": False,
    },
    text_encoder_2=TINY.text_encoder,
    t5_encoder={
        "d_model": 64, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4, "feed_forward_proj": "gated-gelu",
        "vocab_size": 256, "relative_attention_num_buckets": 8,
    },
    scheduler=SD3_SCHEDULER,
)

#: ``--size`` -> ``--model`` -> architectures; the SD 2.1 entries are `SIZES`'.
ARCHITECTURES = {
    "tiny": {"sd21": TINY, "sdxl": TINY_SDXL, "sd35": TINY_SD35},
    "paper": {"sd21": PAPER, "sdxl": PAPER_SDXL, "sd35": PAPER_SD35},
}


def architectures(size: str, model: str = "sd21") -> Architectures:
    """The architectures of ``--size`` with ``--model`` as the Stable Diffusion model."""
    return ARCHITECTURES[size][model]

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


def t5_tokenizer(vocab_size: int | None = None):
    """A character-level T5 tokenizer (a `tokenizers` Unigram model, no download) that `AutoTokenizer`
    loads back from its ``tokenizer.json``; padded with filler pieces to ``vocab_size`` tokens (None: none).

    Every character is a token, so a prompt has more tokens than with T5's SentencePiece model, but
    the SD3 pipeline always pads T5's input to its ``max_sequence_length``, so T5's cost is the real one.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    pieces = [(token, 0.0) for token in specials]
    pieces += [(symbol, -1.0) for symbol in sorted(set(string.ascii_lowercase + string.digits + string.punctuation))]
    pieces += [(chr(0x2581), -1.0)]  # SentencePiece's word-boundary mark
    pieces += [(f"filler{i}", -2.0) for i in range((vocab_size or 0) - len(pieces))]
    model = Tokenizer(models.Unigram(pieces, unk_id=2))
    model.normalizer = normalizers.Lowercase()
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=512)


def save_stable_diffusion(
    folder: str | Path, size: Architectures, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Path:
    """A random-weight Stable Diffusion pipeline of ``size`` saved as a diffusers folder (safetensors):
    `StableDiffusionPipeline`, `StableDiffusionXLPipeline` or `StableDiffusion3Pipeline` by ``size.model``,
    with the model's own scheduler.

    ``dtype`` is the weights' dtype, in memory while building and on disk (bfloat16 halves both).
    """
    import diffusers
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(size.text_vocab_size)
    scheduler = getattr(diffusers, size.scheduler["_class_name"]).from_config(size.scheduler)
    with default_dtype(dtype):
        vae = size.build_vae()
        encoders = size.build_text_encoders()
        denoiser = size.build_denoiser()
        t5 = size.build_t5()
    if size.family == "sd":
        pipeline = StableDiffusionPipeline(
            vae=vae, text_encoder=encoders[0], tokenizer=tokenizer, unet=denoiser, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    elif size.family == "sdxl":
        # One filler vocabulary for both (SD-XL's two tokenizers share CLIP's; the second pads with "!").
        pipeline = StableDiffusionXLPipeline(
            vae=vae, text_encoder=encoders[0], text_encoder_2=encoders[1], tokenizer=tokenizer, tokenizer_2=tokenizer,
            unet=denoiser, scheduler=scheduler, add_watermarker=False,
        )
    else:
        pipeline = StableDiffusion3Pipeline(
            transformer=denoiser, scheduler=scheduler, vae=vae, text_encoder=encoders[0], tokenizer=tokenizer,
            text_encoder_2=encoders[1], tokenizer_2=tokenizer, text_encoder_3=t5,
            tokenizer_3=t5_tokenizer(size.t5_encoder["vocab_size"]),
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
