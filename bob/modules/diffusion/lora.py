"""peft LoRA on diffusers / transformers modules: target checks and the diffusers adapter format."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from lightning.pytorch.utilities import rank_zero_info
from peft import LoraConfig
from peft.tuners.lora import Embedding as LoRAEmbedding
from peft.utils import get_peft_model_state_dict

from bob.atomic import atomic_write
from bob.data.errors import BobInputError

#: The file `StableDiffusionPipeline.load_lora_weights(folder)` looks for.
LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
LORA_MANIFEST_FILE = "manifest.json"

LoRAInit = Literal["gaussian", "kaiming"]


class LoRATargetError(BobInputError):
    """None of the requested LoRA target modules exist in the model."""


def _matches(module_name: str, target: str) -> bool:
    # peft's own rule for a list of target names: the full name or its dotted suffix.
    return module_name == target or module_name.endswith(f".{target}")


def adaptable_module_names(model: torch.nn.Module) -> list[str]:
    """Short names (``to_q``, ``to_out.0``) of the Linear and Conv2d layers LoRA can target."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            parts = name.split(".")
            names.add(".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1])
    return sorted(names)


def resolve_targets(model: torch.nn.Module, targets: list[str], component: str) -> list[str]:
    """The targets that exist in ``model``; an error listing the available names when none does.

    Targets present in some models only (the paper's ``add_k_proj``/``add_v_proj`` exist in
    attention with added key/value projections, not in SD 1.5/2.1/XL) are skipped with a log
    line, so one recipe serves all.
    """
    names = [name for name, _ in model.named_modules()]
    matched = [t for t in targets if any(_matches(n, t) for n in names)]
    if not matched:
        raise LoRATargetError(
            f"none of the LoRA targets {targets} exist in the {component} ({type(model).__name__}); "
            f"its Linear/Conv2d layers are named {adaptable_module_names(model)}"
        )
    skipped = [t for t in targets if t not in matched]
    if skipped:
        rank_zero_info(f"LoRA on the {component}: targets {skipped} are not in this model and are skipped")
    return matched


def attach_lora(
    model: torch.nn.Module, rank: int, alpha: float, targets: list[str], init: LoRAInit, component: str
) -> list[str]:
    """Add a trainable fp32 LoRA adapter to a frozen diffusers or transformers model.

    Returns the target names that matched (recorded in the adapter's manifest).
    """
    if rank < 1:
        raise BobInputError(f"LoRA rank of the {component} must be at least 1, got {rank}")
    matched = resolve_targets(model, targets, component)
    model.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        init_lora_weights="gaussian" if init == "gaussian" else True,
        target_modules=matched,
    )
    model.add_adapter(config)
    # The frozen base may be stored in bf16/fp16; the optimizer must see fp32 LoRA weights.
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return matched


def diffusers_lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights of ``model`` as diffusers' ``save_lora_weights`` takes them, fp32, on the CPU.

    The keys stay in peft's format (``lora_A`` / ``lora_B``), which ``load_lora_weights`` reads
    as it is: converted to diffusers' older names, an adapter on both convolutions and linear
    layers reloads with its convolutions only (diffusers 0.42), so the images would change.
    """
    # peft's "auto" looks for the base model's config.json (on the hub when a local folder has
    # none at its top) only to learn whether the vocabulary grew, and warns when it cannot tell;
    # bob never resizes a vocabulary, so whole embedding layers are saved exactly when adapted.
    adapts_embeddings = any(isinstance(module, LoRAEmbedding) for module in model.modules())
    state = get_peft_model_state_dict(model, save_embedding_layers=adapts_embeddings)
    return {key: value.detach().float().cpu().contiguous() for key, value in state.items()}


def adapter_metadata(model: torch.nn.Module) -> dict[str, Any]:
    """The peft config of the default adapter; the loader reads rank and alpha from it."""
    return model.peft_config["default"].to_dict()


#: The pipeline class whose ``save_lora_weights`` writes each family's adapter, and its denoiser's key.
_SAVERS = {
    "sd": (StableDiffusionPipeline, "unet"),
    "sdxl": (StableDiffusionXLPipeline, "unet"),
    "sd3": (StableDiffusion3Pipeline, "transformer"),
}


def save_lora_weights(folder: str | Path, family: str, denoiser: torch.nn.Module, *text_encoders: torch.nn.Module) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` of a ``family`` model (``sd``, ``sdxl``,
    ``sd3``): the denoiser's adapter and those of the adapted text encoders, in pipeline order
    (one for SD 1.x / 2.x, the two CLIP encoders for SD-XL and SD3). Atomic, readable as any
    file the run writes (safetensors alone would leave it owner-only). The keys are the
    pipeline's own, so its ``load_lora_weights`` reads them."""
    saver, denoiser_key = _SAVERS[family]
    if len(text_encoders) > (1 if family == "sd" else 2):
        raise ValueError(f"a {family} adapter has at most {1 if family == 'sd' else 2} text encoders, got {len(text_encoders)}")
    folder = Path(folder)
    layers = {
        f"{denoiser_key}_lora_layers": diffusers_lora_state(denoiser),
        f"{denoiser_key}_lora_adapter_metadata": adapter_metadata(denoiser),
    }
    for prefix, encoder in zip(("text_encoder", "text_encoder_2"), text_encoders, strict=False):
        layers[f"{prefix}_lora_layers"] = diffusers_lora_state(encoder)
        layers[f"{prefix}_lora_adapter_metadata"] = adapter_metadata(encoder)

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".lora-") as staging:
            saver.save_lora_weights(staging, weight_name=LORA_WEIGHTS_FILE, safe_serialization=True, **layers)
            os.replace(Path(staging) / LORA_WEIGHTS_FILE, tmp)

    return atomic_write(folder / LORA_WEIGHTS_FILE, write)
