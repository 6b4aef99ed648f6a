"""The shipped configs as a user composes them: ``-c configs/<stage>.yaml -c configs/datasets/<dataset>.yaml
-c configs/<stage>/<model>.yaml``, read without running the CLI."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
#: ``--model`` -> its overlay's name in configs/t2i/ and configs/generate/ (None: the base configs' SD 2.1-base).
MODEL_OVERLAYS = {"sd21": None, "sdxl": "sdxl", "sd35": "sd35"}


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def class_default(cls: type, name: str) -> Any:
    """The default of ``cls``'s ``__init__`` argument ``name``."""
    return inspect.signature(cls).parameters[name].default


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` on ``base``: mappings merged key by key, anything else (lists included) replaced,
    as a later ``-c`` file overrides an earlier one."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def overlay_path(stage: str, model: str, configs: Path = CONFIGS) -> Path | None:
    """configs/<stage>/<model>.yaml (``stage``: ``t2i`` or ``generate``); None for SD 2.1, the base configs' model."""
    name = MODEL_OVERLAYS[model]
    return None if name is None else configs / stage / f"{name}.yaml"


def overlay(stage: str, model: str, configs: Path = CONFIGS) -> dict[str, Any]:
    """What the model's overlay sets (empty for SD 2.1)."""
    path = overlay_path(stage, model, configs)
    return {} if path is None else load_yaml(path)


def composed(stage: str, model: str = "sd21", dataset: str | None = "aircraft", configs: Path = CONFIGS) -> dict[str, Any]:
    """configs/<stage>.yaml, then the dataset's overlay, then the model's, merged in that order."""
    config = load_yaml(configs / f"{stage}.yaml")
    if dataset is not None:
        config = merge(config, load_yaml(configs / "datasets" / f"{dataset}.yaml"))
    return merge(config, overlay(stage, model, configs))


def model_argument(config: dict[str, Any], name: str, cls: type) -> Any:
    """``model.init_args.<name>`` of a composed config, or ``cls``'s default where no file sets it."""
    return (config["model"].get("init_args") or {}).get(name, class_default(cls, name))


def lora_targets(model: str, configs: Path = CONFIGS) -> tuple[list[str], list[str]]:
    """The layer names stage 2 adapts on ``model``: the denoiser's and the CLIP text encoders'
    (`LoRAFineTuner`'s ``unet_targets`` and ``text_encoder_targets``, as the composed t2i config sets them)."""
    from bob.modules.diffusion.finetuner import LoRAFineTuner

    config = composed("t2i", model, configs=configs)
    return (list(model_argument(config, "unet_targets", LoRAFineTuner)),
            list(model_argument(config, "text_encoder_targets", LoRAFineTuner)))


def t2i_model_arguments(model: str, configs: Path = CONFIGS) -> dict[str, Any]:
    """The `LoRAFineTuner` arguments the model's t2i overlay sets besides ``base_model`` (its LoRA
    targets, flow-matching weighting, gradient checkpointing); empty for SD 2.1."""
    arguments = dict((overlay("t2i", model, configs).get("model") or {}).get("init_args") or {})
    arguments.pop("base_model", None)
    return arguments
