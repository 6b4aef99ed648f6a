"""Stable Diffusion with LoRA: loading, adapters, caches and the fine-tuning LightningModule."""

from bob.modules.diffusion.finetuner import LoRAFineTuner

__all__ = ["LoRAFineTuner"]
