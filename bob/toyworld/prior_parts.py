"""Builders of the toy prior's UNet, text encoder and schedulers (Stable Diffusion's classes, small)."""

from __future__ import annotations


def build_unet(
    channels: tuple[int, ...] = (64, 128, 128), cross_attention_dim: int = 128, latent_size: int = 16,
    latent_channels: int = 8, plain_levels: int = 1, pooled_text: bool = False,
    attention_head_width: int = 4,
):
    """A `UNet2DConditionModel` with cross-attention on all but the ``plain_levels`` finest levels
    (attention over a 32x32 grid costs a CPU more than the rest of the step).

    ``pooled_text`` adds diffusers' ``addition_embed_type="text"``: an attention pooling of the
    text encoder's output added to the timestep embedding, so the prompt reaches every ResNet
    block at every level, as a class embedding does in class-conditional diffusion. It lives
    inside the UNet, so `StableDiffusionPipeline` runs it unchanged. The embedding then scales
    and shifts each block's features after its group norm (``resnet_time_scale_shift=
    "scale_shift"``, as class-conditional diffusion does): added before the norm, as Stable
    Diffusion adds its timestep embedding, a per-channel shift is erased by a group norm of one
    channel a group (this UNet's first level) and mostly erased at the others.

    ``attention_head_width`` is the channels of each attention head (Stable Diffusion's are 64
    wide); the default 4 gives the shipped prior's 32 heads at 128 channels. diffusers reads its
    ``attention_head_dim`` argument as the number of heads of each level (a naming kept for old
    configs), so that is what it is given."""
    from diffusers import UNet2DConditionModel

    if not 1 <= plain_levels < len(channels):
        raise ValueError(f"plain_levels={plain_levels} must leave 1 to {len(channels) - 1} attention levels")
    if attention_head_width < 1 or any(c % attention_head_width for c in channels):
        raise ValueError(
            f"attention_head_width={attention_head_width} must divide every level's channels {tuple(channels)}")
    attention = len(channels) - plain_levels
    down = ("DownBlock2D",) * plain_levels + ("CrossAttnDownBlock2D",) * attention
    up = ("CrossAttnUpBlock2D",) * attention + ("UpBlock2D",) * plain_levels
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=tuple(c // attention_head_width for c in channels),
        norm_num_groups=min(32, channels[0]),
        addition_embed_type="text" if pooled_text else None,
        resnet_time_scale_shift="scale_shift" if pooled_text else "default",
        # diffusers' default of 64 heads would leave 2 dimensions a head at this width.
        addition_embed_type_num_heads=max(1, cross_attention_dim // 32),
    )


def build_text_encoder(tokenizer, hidden_size: int = 128, layers: int = 3):
    """A `CLIPTextModel` over ``tokenizer``'s vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden_size // 32),
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_training_scheduler(prediction_type: str = "epsilon", zero_terminal_snr: bool = False):
    """DDPM with a cosine schedule: at 16x16 latents the linear SD schedule leaves too little signal late.

    ``zero_terminal_snr`` rescales the schedule so its last step is pure noise (Lin et al. 2024),
    as the sampler's first step is: the cosine schedule's last step keeps a signal of 2e-9, but a
    32x32 latent averages its noise over many pixels, so a model that only ever saw such steps reads
    the large shapes (the background) out of the sampler's starting noise instead of the prompt.
    It needs ``prediction_type="v_prediction"``: the noise alone says nothing at zero signal.
    """
    from diffusers import DDPMScheduler

    if zero_terminal_snr and prediction_type != "v_prediction":
        raise ValueError("zero_terminal_snr needs prediction_type='v_prediction' (epsilon is undefined at zero signal)")
    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type,
        clip_sample=False, steps_offset=1, rescale_betas_zero_snr=zero_terminal_snr,
    )


def build_sampling_scheduler(training_scheduler):
    """The scheduler shipped with the pipeline: DPM-Solver++, good in 20 steps, same noise schedule.

    With a zero-terminal-SNR schedule sampling starts at the last step (``trailing`` spacing), where
    training saw pure noise. Otherwise ``leading`` spacing starts it near t = 950 (signal share
    0.6%, like Stable Diffusion's last step), not at t = 999: there the cosine schedule leaves a
    signal of 2e-9, and an epsilon model's first estimate of the clean latent divides by it;
    measured, the latents blew up to a standard deviation of 1700 and every image was noise.
    """
    from diffusers import DPMSolverMultistepScheduler

    spacing = "trailing" if training_scheduler.config.rescale_betas_zero_snr else "leading"
    return DPMSolverMultistepScheduler.from_config(training_scheduler.config, timestep_spacing=spacing)
