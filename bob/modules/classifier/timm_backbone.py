"""Any timm image model as a classifier with a new head: ResNet-50, MAE ViT-B/16 and the rest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from bob.data.errors import BobInputError
from bob.modules.classifier.backbone import Backbone, FineTune, set_trainable
from bob.timm_checks import check_timm_name, check_timm_weights_available


class TimmBackbone(Backbone):
    """A timm model with a freshly initialised head of ``num_classes`` outputs.

    ``resnet50.tv2_in1k`` is torchvision's ResNet-50 ``IMAGENET1K_V2`` checkpoint as hosted by
    timm; ``vit_base_patch16_224.mae`` is the self-supervised MAE ViT-B/16 (use it with
    ``layer_decay``). Normalisation comes from the weights' own pretrained config.

    Args:
        model_name: a timm model name, optionally with a weights tag (``resnet50.tv2_in1k``).
        pretrained: load the pretrained weights (from the Hugging Face hub cache); tests pass false.
        finetune: ``full`` (the paper's choice for ResNet-50 and MAE), ``lora`` or ``linear``.
        layer_decay: layer-wise learning-rate decay (MAE fine-tuning: 0.65 or 0.75); the
            learning rate of block i of n is scaled by ``layer_decay ** (n - i)``. None disables it.
        model_kwargs: extra ``timm.create_model`` arguments, e.g. ``drop_path_rate: 0.1``,
            ``global_pool: avg`` or ``pretrained_cfg_overlay: {file: weights.safetensors}`` for
            weights stored on disk.
        lora_rank: rank r of each LoRA adapter.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: dropout on the LoRA branch input.
        lora_targets: layers that get adapters (``qkv`` in timm ViTs).
        head_init_std: initialise the new head's weights from a truncated normal with this
            standard deviation and its bias at zero (MAE's fine-tuning recipe: 2e-5); None keeps
            timm's initialisation.
    """

    def __init__(
        self,
        model_name: str = "resnet50.tv2_in1k",
        pretrained: bool = True,
        finetune: FineTune = "full",
        layer_decay: float | None = None,
        model_kwargs: dict[str, Any] | None = None,
        lora_rank: int = 16,
        lora_alpha: float = 32,
        lora_dropout: float = 0.1,
        lora_targets: Sequence[str] = ("qkv",),
        head_init_std: float | None = None,
    ):
        super().__init__(finetune, lora_rank, lora_alpha, lora_dropout, lora_targets)
        if head_init_std is not None and head_init_std <= 0:
            raise BobInputError(f"head_init_std must be positive, got {head_init_std}")
        self.head_init_std = head_init_std
        check_timm_name(model_name, pretrained)
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise BobInputError(f"layer_decay must be in (0, 1], got {layer_decay}")
        self.model_name = model_name
        self.pretrained = pretrained
        self.layer_decay = layer_decay
        self.model_kwargs = dict(model_kwargs or {})
        self.net: nn.Module | None = None

    def _check_weights_available(self) -> None:
        if self.pretrained and "pretrained_cfg_overlay" not in self.model_kwargs:
            check_timm_weights_available(self.model_name)

    def build(
        self, num_classes: int, prompt_names: list[str], descriptor: str, image_size: int, pretrained_weights: bool = True
    ) -> None:
        import timm

        pretrained = self.pretrained and pretrained_weights
        if pretrained:
            self._check_weights_available()
        try:
            # ViTs are built for one input size; timm resamples their position embeddings to it.
            net = timm.create_model(
                self.model_name, pretrained=pretrained, num_classes=num_classes,
                **{"img_size": image_size, **self.model_kwargs},
            )
        except TypeError as error:  # convolutional networks take any size and no such argument
            if "img_size" not in str(error) or "img_size" in self.model_kwargs:
                raise
            net = timm.create_model(self.model_name, pretrained=pretrained, num_classes=num_classes, **self.model_kwargs)
        head = net.get_classifier()
        if self.head_init_std is not None:
            nn.init.trunc_normal_(head.weight, std=self.head_init_std)
            nn.init.zeros_(head.bias)
        if self.finetune == "lora":
            net = self.attach_lora(net)
        else:
            set_trainable(net, self.finetune == "full")
        set_trainable(head, True)
        self.net = net
        config = net.pretrained_cfg
        self.set_normalization(config["mean"], config["std"])
        self.built = True

    def feature_extractor(self) -> nn.Module:
        return self.net

    def classify(self, pixels: Tensor) -> Tensor:
        return self.net(pixels)

    def no_weight_decay(self) -> set[str]:
        names = getattr(self.net, "no_weight_decay", set)()  # position embeddings, class token
        return {f"net.{name}" for name in names}

    def param_groups(self) -> list[dict[str, Any]]:
        if self.layer_decay is None:
            return super().param_groups()
        from timm.optim import param_groups_layer_decay

        groups = param_groups_layer_decay(
            self.net, weight_decay=1.0, layer_decay=self.layer_decay,
            no_weight_decay_list=[name.removeprefix("net.") for name in self.no_weight_decay()],
        )
        for group in groups:
            # weight_decay=1.0 above only marks the decayed groups; they take the optimizer's value.
            if group["weight_decay"]:
                del group["weight_decay"]
        return [group for group in groups if group["params"]]

