"""CLIP as a classifier: cosine similarity between image features and text features of class prompts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bob.data.errors import BobInputError
from bob.data.prompts import CLIP_HEAD_TEMPLATE, PromptTemplate
from bob.hub import check_model_available
from bob.modules.classifier.backbone import Backbone, FineTune, set_trainable

#: OpenAI CLIP's pixel statistics (the paper: CLIP normalisation for CLIP).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPBackbone(Backbone):
    """A transformers ``CLIPModel`` whose classifier is the text tower reading one prompt per class.

    logits = logit_scale · cos(image feature, text feature of "{a_descriptor} photo of a
    {class_name}"). With ``lora`` (the paper's recipe) adapters sit on ``q_proj`` and ``v_proj``
    of every attention block of both towers and the text features are recomputed each training
    step, so the text head learns too; with ``linear`` the towers are frozen and the head is a
    trainable matrix initialised with the zero-shot text features.

    Args:
        model: hub id or local folder of a transformers CLIP model (with its tokenizer).
        prompt: template of the class prompts (see `bob.data.prompts.PromptTemplate`).
        finetune: ``lora``, ``full`` or ``linear`` (see `Backbone`).
        lora_rank: rank r of each LoRA adapter.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: dropout on the LoRA branch input.
        lora_targets: attention projections that get adapters, in both towers.
    """

    def __init__(
        self,
        model: str = "openai/clip-vit-base-patch16",
        prompt: str = CLIP_HEAD_TEMPLATE,
        finetune: FineTune = "lora",
        lora_rank: int = 16,
        lora_alpha: float = 32,
        lora_dropout: float = 0.1,
        lora_targets: Sequence[str] = ("q_proj", "v_proj"),
    ):
        super().__init__(finetune, lora_rank, lora_alpha, lora_dropout, lora_targets)
        self.model_name = model
        self.prompt = prompt
        self.clip: nn.Module | None = None
        self.head: nn.Parameter | None = None
        self._cached_text: Tensor | None = None

    def init_arguments(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "prompt": self.prompt, "finetune": self.finetune, "lora_rank": self.lora_rank,
            "lora_alpha": self.lora_alpha, "lora_dropout": self.lora_dropout, "lora_targets": self.lora_targets,
        }

    def build(
        self, num_classes: int, prompt_names: list[str], descriptor: str, image_size: int, pretrained_weights: bool = True
    ) -> None:
        from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

        if len(prompt_names) != num_classes:
            raise BobInputError(f"CLIPBackbone got {len(prompt_names)} class names for {num_classes} classes")
        check_model_available(self.model_name, "config.json")
        if pretrained_weights or self.finetune != "full":
            clip = CLIPModel.from_pretrained(self.model_name)
        else:
            clip = CLIPModel(CLIPConfig.from_pretrained(self.model_name))
        tokenizer = CLIPTokenizer.from_pretrained(self.model_name)
        if len(tokenizer) <= len(tokenizer.all_special_tokens):
            raise BobInputError(f"the tokenizer of {self.model_name} has no vocabulary ({len(tokenizer)} tokens)")
        expected = clip.config.vision_config.image_size
        if image_size != expected:
            raise BobInputError(
                f"{self.model_name} takes {expected}px images but the data gives {image_size}px; "
                f"set data.image_size={expected}"
            )
        template = PromptTemplate(self.prompt, descriptor)
        tokens = tokenizer([template.format(name) for name in prompt_names], padding=True, return_tensors="pt")
        # A buffer, so the prompts follow the model to its device; rebuilt from the config, never
        # saved. No padding mask: the text tower is causal, so the end token, whose state is the
        # prompt's feature, never sees the padding after it; and transformers would read a
        # mask back from the device at every training step to pick its attention path.
        self.register_buffer("prompt_ids", tokens.input_ids, persistent=False)

        if self.finetune == "lora":
            clip = self.attach_lora(clip)
        else:
            set_trainable(clip, self.finetune == "full")
        clip.logit_scale.requires_grad_(False)
        self.clip = clip
        if self.finetune == "linear":
            with torch.no_grad():
                self.head = nn.Parameter(self.encode_text().clone())
        self.set_normalization(CLIP_MEAN, CLIP_STD)
        self.built = True

    def feature_extractor(self) -> nn.Module:
        return self.clip

    def encode_text(self) -> Tensor:
        text = self.clip.text_model(input_ids=self.prompt_ids)
        return F.normalize(self.clip.text_projection(text.pooler_output), dim=-1)

    def text_features(self) -> Tensor:
        if self.head is not None:
            return F.normalize(self.head, dim=-1)
        if self.training and self.finetune != "linear":
            return self.encode_text()
        # The text tower is fixed during evaluation: encode the prompts once per eval phase.
        if self._cached_text is None:
            with torch.no_grad():
                self._cached_text = self.encode_text()
        return self._cached_text

    def train(self, mode: bool = True) -> CLIPBackbone:
        self._cached_text = None
        return super().train(mode)

    def classify(self, pixels: Tensor) -> Tensor:
        image = self.clip.vision_model(pixel_values=pixels).pooler_output
        image = F.normalize(self.clip.visual_projection(image), dim=-1)
        text = self.text_features().to(image.dtype)
        return self.clip.logit_scale.exp() * image @ text.t()
