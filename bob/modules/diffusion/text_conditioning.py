"""How a prompt conditions the denoiser, computed as the model's own diffusers pipeline computes it.

SD 1.x / 2.x: the text encoder's last hidden states. SD-XL: the penultimate hidden states of
both CLIP encoders side by side, the second one's pooled projection, and the six size and crop
numbers (`StableDiffusionXLPipeline.encode_prompt` and ``_get_add_time_ids``). SD3: both CLIP
encoders' penultimate hidden states side by side, zero-padded to T5's width and followed by
T5's tokens, and both CLIP pooled projections side by side (`StableDiffusion3Pipeline.encode_prompt`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Per prompt: ``(hidden states,)`` for SD 1.x / 2.x, ``(hidden states, pooled embedding)`` for SD-XL and SD3.
TextEmbeddings = tuple[torch.Tensor, ...]


def encode_tokens(
    family: str,
    text_encoders: Sequence[torch.nn.Module],
    ids: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
    t5_embeddings: torch.Tensor | None = None,
) -> TextEmbeddings:
    """The text embeddings of a batch of token ids (one id tensor per text encoder).

    For SD3, ``text_encoders`` and ``ids`` are the two CLIP encoders' and ``t5_embeddings`` is
    T5's output for the same prompts (computed apart: T5 is never trained, so it is cached).
    """
    if family == "sd":
        return (text_encoders[0](ids[0], attention_mask=masks[0])[0],)
    hidden, pooled = [], []
    for encoder, tokens in zip(text_encoders, ids, strict=True):
        output = encoder(tokens, output_hidden_states=True)
        pooled.append(output[0])  # CLIPTextModelWithProjection's text_embeds (SD-XL keeps the last one only)
        hidden.append(output.hidden_states[-2])
    clip = torch.cat(hidden, dim=-1)
    if family == "sdxl":
        return clip, pooled[-1]
    if t5_embeddings is None:
        raise ValueError("SD3 conditioning needs the T5 embeddings of the prompts")
    clip = torch.nn.functional.pad(clip, (0, t5_embeddings.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5_embeddings.to(clip.dtype)], dim=-2), torch.cat(pooled, dim=-1)


def size_conditioning(height: int, width: int, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """SD-XL's ``time_ids`` for whole, uncropped ``height x width`` images: original size, crop
    corner (0, 0) and target size, what the pipeline uses when it generates at that size (its
    defaults). Training passes each image's own numbers where it knows them."""
    return torch.tensor([height, width, 0, 0, height, width], device=device, dtype=dtype).repeat(batch_size, 1)


def denoiser_conditioning(
    family: str, embeddings: TextEmbeddings, height: int, width: int, time_ids: torch.Tensor | None = None
) -> dict:
    """The keyword arguments that condition the UNet's or transformer's forward on these embeddings
    (SD-XL: and on ``time_ids``, by default `size_conditioning`)."""
    hidden = embeddings[0]
    if family == "sd":
        return {"encoder_hidden_states": hidden}
    pooled = embeddings[1]
    if family == "sd3":
        return {"encoder_hidden_states": hidden, "pooled_projections": pooled}
    if time_ids is None:
        time_ids = size_conditioning(height, width, hidden.shape[0], hidden.device, pooled.dtype)
    return {"encoder_hidden_states": hidden, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}


def denoise(
    family: str, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
    embeddings: TextEmbeddings, height: int, width: int, time_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The denoiser's prediction for ``noisy`` at ``timesteps``: a UNet's (``sample`` first) or
    SD3's transformer's (``hidden_states`` first), conditioned on the prompt embeddings."""
    conditioning = denoiser_conditioning(family, embeddings, height, width, time_ids)
    if family == "sd3":
        return denoiser(hidden_states=noisy, timestep=timesteps, **conditioning).sample
    return denoiser(noisy, timesteps, **conditioning).sample
