"""The backbone interface: images in [0, 1] to class logits, with its own normalisation and fine-tuning mode."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import Tensor, nn

from bob.data.errors import BobInputError
from bob.modules.class_specs import class_path, plain

FineTune = Literal["full", "lora", "linear"]


class Backbone(nn.Module, ABC):
    """A classification network chosen by ``class_path`` in the classifier's config.

    Construction is cheap and only records the configuration; `build` loads the weights once
    the classifier knows the classes (it is called from ``Classifier.configure_model``).
    Inputs are float images in [0, 1]; the backbone applies its own normalisation, so
    datamodules stay model-agnostic. `spec` is the backbone as a config names it
    (``class_path`` + ``init_args``), which classifier checkpoints keep to rebuild it.

    Args:
        finetune: ``full`` trains every weight; ``lora`` trains low-rank adapters on
            ``lora_targets`` plus the classification head; ``linear`` trains the head only.
        lora_rank: rank r of each LoRA adapter.
        lora_alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        lora_dropout: dropout on the LoRA branch input.
        lora_targets: names of the linear layers that get adapters (peft ``target_modules``).
    """

    def __init__(
        self,
        finetune: FineTune = "full",
        lora_rank: int = 16,
        lora_alpha: float = 32,
        lora_dropout: float = 0.1,
        lora_targets: Sequence[str] = ("q_proj", "v_proj"),
    ):
        super().__init__()
        if finetune not in ("full", "lora", "linear"):
            raise BobInputError(f"finetune must be 'full', 'lora' or 'linear', got {finetune!r}")
        self.finetune = finetune
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_targets = list(lora_targets)
        self.built = False
        # Placeholders until `build` knows the weights' statistics; not saved in checkpoints.
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.ones(1, 3, 1, 1), persistent=False)

    def init_arguments(self) -> dict[str, Any]:
        """The keyword arguments that make this backbone again; a subclass whose attributes do not
        carry its argument names says so by overriding this."""
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        return {name: getattr(self, name) for name in names}

    def spec(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": {...}}``: this backbone as a config names it."""
        return {"class_path": class_path(type(self)), "init_args": plain(self.init_arguments())}

    @abstractmethod
    def build(
        self, num_classes: int, prompt_names: list[str], descriptor: str, image_size: int, pretrained_weights: bool = True
    ) -> None:
        """Load weights, attach the head (and adapters), set which parameters train.

        ``pretrained_weights=False`` builds the network without reading its pretrained weights,
        for a checkpoint that holds every weight (``finetune: full``) and replaces them anyway.
        """

    @abstractmethod
    def classify(self, pixels: Tensor) -> Tensor:
        """Logits for normalised pixels."""

    @abstractmethod
    def feature_extractor(self) -> nn.Module:
        """The part that ``linear`` fine-tuning freezes (kept in eval mode there)."""

    def forward(self, images: Tensor) -> Tensor:
        if not self.built:
            raise RuntimeError(f"{type(self).__name__}.build() must run before the forward pass")
        return self.classify((images - self.mean) / self.std)

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean.copy_(torch.tensor(mean, dtype=self.mean.dtype).view(1, 3, 1, 1))
        self.std.copy_(torch.tensor(std, dtype=self.std.dtype).view(1, 3, 1, 1))

    def attach_lora(self, model: nn.Module) -> nn.Module:
        """Inject LoRA adapters into ``model``; peft freezes every other weight of it."""
        config = LoraConfig(
            r=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_targets,
        )
        try:
            return inject_adapter_in_model(config, model)
        except ValueError as error:
            raise BobInputError(
                f"cannot attach LoRA to {type(model).__name__} with lora_targets={self.lora_targets}: {error}. "
                "Name linear layers the model has (e.g. 'qkv' for timm ViTs, 'q_proj'/'v_proj' for CLIP)."
            ) from error

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        # A linear probe reads fixed features: no batch-norm statistics updates, no dropout.
        if self.built and self.finetune == "linear":
            self.feature_extractor().eval()
        return self

    def no_weight_decay(self) -> set[str]:
        """Names (in this module) of multi-dimensional parameters exempt from weight decay."""
        return set()

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups of the trainable parameters.

        Biases, norms, other 1-D parameters and those named by `no_weight_decay` (position
        embeddings, class tokens) get no weight decay (the timm/MAE convention);
        groups without a ``weight_decay`` key take the optimizer's value, and a group's
        ``lr_scale`` (if any) multiplies the optimizer's learning rate.
        """
        excluded = self.no_weight_decay()
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim <= 1 or name in excluded else decay).append(parameter)
        return [group for group in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if group["params"]]


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)
