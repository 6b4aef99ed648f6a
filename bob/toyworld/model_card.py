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


def model_card(facts: dict, vae_facts: dict, parts: dict[str, torch.nn.Module], command: str) -> str:
    vae_line = (
        f"{vae_facts.get('steps')} steps at batch {vae_facts.get('batch_size')}, "
        f"{vae_facts.get('wall_time_minutes')} min, final reconstruction MSE {vae_facts.get('final_mse')} "
        "(images in [-1, 1])"
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
variant's model code, the background and the pose, in the prompt forms of bob's stages; 8% are
empty for classifier-free guidance. No few-shot class name appears in any caption.

## Model
- UNet: {_count(parts['unet'])} parameters, latents 16x16x{parts['vae'].config.latent_channels}, cross-attention at 8x8 and 4x4.
- Text encoder: {_count(parts['text_encoder'])} parameters; word-level BPE vocabulary of
  {len(parts['tokenizer'])} tokens learned from the world's caption words (any new model code splits
  into known letters and digits).
- VAE: {_count(parts['vae'])} parameters, 64x64x3 <-> 16x16x{parts['vae'].config.latent_channels}; {vae_line}.
- EMA of the training weights; UNet and VAE stored in fp16, text encoder in fp32; all load as fp32
  by default.

## Training
- {facts.get('steps')} steps at batch {facts.get('batch_size')}, {facts.get('wall_time_minutes')} min
  wall time on {facts.get('torch_threads')} CPU threads (UNet and text encoder; VAE above).
- Final training loss (moving average, min-SNR weighted epsilon MSE): {facts.get('final_loss_ema')}.
- DDPM cosine noise schedule, epsilon prediction; hyperparameters:
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
