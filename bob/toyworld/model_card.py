"""Saving the toy prior as a diffusers pipeline folder (fp16) with a model card, atomically."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import torch

from bob.atomic import atomic_write_json, atomic_write_text, plain_permissions
from bob.toyworld.prior_parts import build_sampling_scheduler

TRAINING_FILE = "training.json"


def write_training_facts(folder: str | Path, facts: dict) -> None:
    atomic_write_json(Path(folder) / TRAINING_FILE, facts)


def read_training_facts(folder: str | Path) -> dict:
    path = Path(folder) / TRAINING_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _count(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"


def _latent_shape(vae) -> str:
    side = vae.config.sample_size // 2 ** (len(vae.config.block_out_channels) - 1)
    return f"{side}x{side}x{vae.config.latent_channels}"


def _attention_grids(unet, latent_side: int) -> str:
    config = unet.config
    levels = [i for i, kind in enumerate(config.down_block_types) if "CrossAttn" in kind]
    # diffusers' `attention_head_dim` is the number of heads of each level (a naming kept for old configs).
    heads = config.attention_head_dim
    heads = list(heads) if isinstance(heads, list | tuple) else [heads] * len(config.block_out_channels)
    shapes = [f"{heads[i]} heads of {config.block_out_channels[i] // heads[i]} channels" for i in levels]
    grids = " and ".join(f"{latent_side // 2**i}x{latent_side // 2**i}" for i in levels)
    return f"{grids} ({', '.join(dict.fromkeys(shapes))})"


def model_card(facts: dict, vae_facts: dict, parts: dict[str, torch.nn.Module], command: str) -> str:
    vae, unet = parts["vae"], parts["unet"]
    hyper = facts.get("hyperparameters", {})
    latent = _latent_shape(vae)
    weighting = vae_facts.get("object_weight", 1.0)
    vae_loss = "plain MSE" if weighting == 1.0 else f"MSE with aircraft pixels weighted {weighting:g}x"
    schedule = vae_facts.get("schedule_steps")
    stopped = f" (stopped at step {vae_facts.get('steps')} of a {schedule}-step schedule)" if schedule else ""
    vae_line = (
        f"{vae_facts.get('steps')} steps at batch {vae_facts.get('batch_size')}{stopped}, "
        f"{vae_facts.get('wall_time_minutes')} min, final reconstruction MSE {vae_facts.get('final_mse')} "
        f"(images in [-1, 1]; trained on {vae_loss})"
        if vae_facts
        else "(no training record found beside the VAE)"
    )
    return f"""# bob toy-world prior

A small Stable-Diffusion-shaped text-to-image model (`StableDiffusionPipeline`: `UNet2DConditionModel`,
`AutoencoderKL`, `CLIPTextModel`, `CLIPTokenizer`, DPM-Solver++ scheduler) for 64x64 images of
bob's procedural toy world. It exists so the four BOB stages run, and can be measured, on a CPU
without downloads.

## Data
The broad toy world: {facts.get('num_variants')} aircraft variants (random combinations of wing
planform, engine pods, tail, wingtip, body and nose colours; the 16 few-shot classes are held
out), {facts.get('pool_size')} rendered scenes (seed {facts.get('data_seed')}), backgrounds and
poses uniform. Captions name the coarse family (jetliner, transport, fighter, glider) and/or a broad
variant's model name, the background and the pose, in the prompt forms of bob's stages; 8% are
empty for classifier-free guidance. No few-shot class name appears in any caption.

## Model
- UNet: {_count(unet)} parameters, latents {latent}, cross-attention at {_attention_grids(unet, int(latent.split("x")[0]))}{_pooled_text_clause(unet)}.
- Text encoder: {_count(parts['text_encoder'])} parameters; word-level BPE vocabulary of
  {len(parts['tokenizer'])} tokens learned from the world's caption words. Every model name, of the
  broad world and of the few-shot classes, is one token; the few-shot names' embeddings are never
  trained here (no caption holds them), and any other name splits into known pieces.
  {_text_encoder_line(hyper)}
- VAE: {_count(vae)} parameters, 64x64x3 <-> {latent}; {vae_line}.
- EMA of the training weights; UNet and VAE stored in fp16, text encoder in fp32; all load as fp32
  by default.

## Training
- {facts.get('steps')} steps at batch {facts.get('batch_size')}, {facts.get('wall_time_minutes')} min
  wall time on {facts.get('torch_threads')} CPU threads ({"UNet and text encoder" if hyper.get("train_text_encoder", True) else "UNet"}; VAE above).
- Final training loss (moving average, {_loss_name(hyper)}): {facts.get('final_loss_ema')}.
- {_schedule_line(hyper)}; hyperparameters:
  `{json.dumps(facts.get('hyperparameters', {}), sort_keys=True)}`

## Reproduce
```
{command}
```
"""


def export_pipeline(
    folder: str | Path, vae, text_encoder, tokenizer, unet, training_scheduler, facts: dict, vae_folder: str,
    command: str,
) -> Path:
    """Write the pipeline and its model card into ``folder``, replacing it whole.

    UNet and VAE are stored in fp16 (diffusers loads them as fp32 unless asked otherwise); the
    text encoder stays fp32, because transformers 5 loads weights in their stored dtype and a
    plain ``StableDiffusionPipeline.from_pretrained(folder)`` would then mix dtypes on a CPU.
    """
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    pipeline = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).to(torch.float16),
        text_encoder=copy.deepcopy(text_encoder).to(torch.float32),
        tokenizer=tokenizer,
        unet=copy.deepcopy(unet).to(torch.float16),
        scheduler=build_sampling_scheduler(training_scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    parts = {"unet": unet, "text_encoder": text_encoder, "vae": vae, "tokenizer": tokenizer}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        pipeline.save_pretrained(staging, safe_serialization=True)
        atomic_write_text(staging / "README.md", model_card(facts, read_training_facts(vae_folder), parts, command))
        write_training_facts(staging, facts)
        if folder.exists():
            shutil.rmtree(folder)
        plain_permissions(staging)  # mkdtemp and safetensors make owner-only folders and files
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _loss_name(hyperparameters: dict) -> str:
    target = "velocity" if hyperparameters.get("prediction_type") == "v_prediction" else "epsilon"
    weighting = "min-SNR weighted " if hyperparameters.get("min_snr_gamma", 0) > 0 else ""
    return f"{weighting}{target} MSE"


def _schedule_line(hyperparameters: dict) -> str:
    if hyperparameters.get("zero_terminal_snr"):
        return ("DDPM cosine noise schedule rescaled to zero terminal SNR, v-prediction, sampled with trailing "
                "timesteps from pure noise")
    target = "v-prediction" if hyperparameters.get("prediction_type") == "v_prediction" else "epsilon prediction"
    return f"DDPM cosine noise schedule, {target}"


def _pooled_text_clause(unet) -> str:
    if unet.config.get("addition_embed_type") == "text":
        return "; a pooling of the prompt's encoding is also added to the timestep embedding"
    return ""


def _text_encoder_line(hyperparameters: dict) -> str:
    if hyperparameters.get("train_text_encoder", True):
        return "Trained with the UNet."
    return ("Frozen at its seeded random initialisation, as Stable Diffusion keeps its text encoder frozen: "
            "it keeps every name, seen in training or not, apart from the others.")
