"""The caption stage's model: a vision-language chat model answering class-agnostic questions."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torchvision.transforms.functional import to_pil_image

from bob.data.caption_cleaning import COMMON_WORDS, LeakRedactor, normalize_answer
from bob.data.class_names import with_article
from bob.data.errors import BobInputError
from bob.hub import check_model_available
from bob.modules.precision import DtypeChoice, resolve_dtype

log = logging.getLogger(__name__)

#: The paper, stage 1: the descriptor stands in for the class name, so no class leaks into the question.
DEFAULT_QUESTIONS = {
    "background": "Describe the background of the {descriptor} in as few words as possible. "
    "Refer to the {descriptor} as simply '{a_descriptor}'.",
    "pose": "Describe the pose of the {descriptor} in as few words as possible. "
    "Refer to the {descriptor} as simply '{a_descriptor}'.",
}


class Captioner(LightningModule):
    """Describes every image with class-agnostic attributes (background, pose...) using any
    transformers image-text-to-text chat model (Qwen2.5-VL, LLaVA, Idefics, Gemma 3...).

    ``predict_step`` returns one dict per image: ``sample_id``, ``class_name``, ``attributes``
    (attribute -> cleaned answer), ``raw`` (answers that cleaning changed), ``notes``; or
    ``sample_id``, ``class_name``, ``error`` for an image that could not be captioned. A
    `CaptionWriter` turns them into a caption bank. Cleaning: whitespace and trailing period
    are stripped; a mention of the image's class is replaced by the descriptor (note
    ``redacted:<attribute>``); an empty answer is asked again once with sampling (note
    ``retried:<attribute>``) and, if still empty, reported as an error.

    Args:
        model: hub id or local folder of the chat model, loaded with ``AutoProcessor`` and
            ``AutoModelForImageTextToText``.
        questions: attribute name -> question, in prompt order; ``{descriptor}`` and
            ``{a_descriptor}`` ("an aircraft") are filled in. Never put the class name in a
            question. None asks the paper's background and pose questions.
        descriptor: the dataset's super-category (linked from the data).
        class_names: raw class names in label order (linked from the data); a caption naming
            its image's class (in any spelling of the name) is redacted.
        max_new_tokens: longest answer generated; the paper's answers stay under 40 tokens.
        dtype: weights' dtype; ``auto`` follows a 16-bit trainer precision, otherwise bfloat16
            on a GPU and float32 on a CPU.
        revision: hub revision (branch, tag or commit) of ``model``, for reproducible banks.
        trust_remote_code: allow the model's own code from the hub to run; needed only by
            models transformers does not implement.
        attn_implementation: e.g. ``sdpa`` or ``flash_attention_2``; None lets transformers choose.
        redact_leaks: replace mentions of an image's class by the descriptor. Off by default:
            the authors' banks keep the answers as the model gave them (only the trailing period
            is stripped), and redaction can garble a context ("a red convertible car" in a car
            dataset whose class names contain "convertible").
        common_words: words never taken as naming a class on their own; None uses
            `bob.data.caption_cleaning.COMMON_WORDS` (colours, sizes, place words).
        retry_temperature: sampling temperature of the one retry after an empty answer.
    """

    def __init__(
        self,
        model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        questions: dict[str, str] | None = None,
        descriptor: str = "object",
        class_names: list[str] | None = None,
        max_new_tokens: int = 48,
        dtype: DtypeChoice = "auto",
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        redact_leaks: bool = False,
        common_words: list[str] | None = None,
        retry_temperature: float = 0.7,
    ):
        super().__init__()
        self.model_name = model
        self.questions = dict(questions or DEFAULT_QUESTIONS)
        if not self.questions:
            raise BobInputError("questions is empty; give at least one attribute -> question")
        self.descriptor = descriptor
        self.class_names = list(class_names or [])
        self.max_new_tokens = max_new_tokens
        self.dtype_name = dtype
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self.attn_implementation = attn_implementation
        self.redactor = (
            LeakRedactor(descriptor, frozenset(common_words) if common_words is not None else COMMON_WORDS)
            if redact_leaks
            else None
        )
        self.retry_temperature = retry_temperature
        self.prompts = {name: self._fill(question) for name, question in self.questions.items()}
        self.processor: Any = None
        self.vlm: torch.nn.Module | None = None

    def _fill(self, question: str) -> str:
        try:
            return question.format(descriptor=self.descriptor, a_descriptor=with_article(self.descriptor))
        except (KeyError, IndexError) as error:
            raise BobInputError(
                f"question {question!r} has a placeholder other than {{descriptor}} and {{a_descriptor}}: {error}"
            ) from error

    @property
    def attributes(self) -> list[str]:
        return list(self.questions)

    @property
    def caption_settings(self) -> dict[str, Any]:
        """What decides the answers; a caption folder is only resumed with the same settings."""
        return {
            "model": self.model_name,
            "revision": self.revision,
            "questions": self.prompts,
            "max_new_tokens": self.max_new_tokens,
            "dtype": self.dtype_name,
            "redact_leaks": self.redactor is not None,
            "retry_temperature": self.retry_temperature,
        }

    def _torch_dtype(self) -> torch.dtype:
        trainer = self.trainer
        return resolve_dtype(self.dtype_name, trainer.precision, trainer.strategy.root_device, on_gpu=torch.bfloat16)

    def configure_model(self) -> None:
        if self.vlm is not None:
            return
        from transformers import AutoModelForImageTextToText, AutoProcessor

        check_model_available(self.model_name, "config.json")
        dtype = self._torch_dtype()
        rank_zero_info(f"loading captioner {self.model_name} ({dtype})")
        common = {"revision": self.revision, "trust_remote_code": self.trust_remote_code}
        self.processor = AutoProcessor.from_pretrained(self.model_name, **common)
        # Batched generation appends to the end of every row, so prompts are padded on the left.
        self.processor.tokenizer.padding_side = "left"
        extra = {"attn_implementation": self.attn_implementation} if self.attn_implementation else {}
        self.vlm = AutoModelForImageTextToText.from_pretrained(self.model_name, dtype=dtype, **common, **extra)
        self.vlm.eval().requires_grad_(False)

    def _class_name(self, label: int) -> str:
        if not 0 <= label < len(self.class_names):
            raise BobInputError(
                f"label {label} has no class name (the captioner knows {len(self.class_names)} classes); "
                "class_names is linked from the data, so use a datamodule that provides it"
            )
        return self.class_names[label]

    def _generate(self, images: list[Image.Image], prompt: str, sample: bool = False) -> list[str]:
        """One answer per image to the same question, decoded without the prompt."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text] * len(images), images=images, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device, dtype=self.vlm.dtype)
        options = {"do_sample": True, "temperature": self.retry_temperature} if sample else {"do_sample": False}
        output = self.vlm.generate(**inputs, max_new_tokens=self.max_new_tokens, **options)
        return self.processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def _retry(self, image: Image.Image, prompt: str, sample_id: str, attribute: str) -> str:
        # Greedy decoding would repeat the empty answer; a seed from the sample keeps the retry
        # reproducible whatever the batch, rank or order.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(zlib.crc32(f"{sample_id}|{attribute}".encode()))
            return self._generate([image], prompt, sample=True)[0]

    def _clean(self, answer: str, class_name: str) -> tuple[str, bool]:
        text = normalize_answer(answer)
        if self.redactor is None or not text:
            return text, False
        text, mentions = self.redactor.redact(text, class_name)
        return text, mentions > 0

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        labels = [int(label) for label in batch["label"]]
        errors = batch.get("error") or [None] * len(labels)
        results: list[dict[str, Any]] = [
            {"sample_id": sample_id, "class_name": self._class_name(label)}
            for sample_id, label in zip(batch["sample_id"], labels, strict=True)
        ]
        for result, error in zip(results, errors, strict=True):
            if error is None:
                result.update(attributes={}, raw={}, notes=[])
            else:
                result["error"] = error
                log.warning("cannot caption %s: %s", result["sample_id"], error)
        valid = [i for i, error in enumerate(errors) if error is None]
        images = {i: to_pil_image(batch["image"][i].float().clamp(0, 1).cpu()) for i in valid}
        for attribute, prompt in self.prompts.items():
            answers = self._generate([images[i] for i in valid], prompt) if valid else []
            for i, answer in zip(valid, answers, strict=True):
                self._record_answer(results[i], images[i], prompt, attribute, answer)
        return [self._finish(r) for r in results]

    def _record_answer(
        self, result: dict[str, Any], image: Image.Image, prompt: str, attribute: str, answer: str
    ) -> None:
        text, redacted = self._clean(answer, result["class_name"])
        if not text:
            result["notes"].append(f"retried:{attribute}")
            answer = self._retry(image, prompt, result["sample_id"], attribute)
            text, redacted = self._clean(answer, result["class_name"])
        if not text:
            result.setdefault("empty", []).append(attribute)
            return
        if redacted:
            result["notes"].append(f"redacted:{attribute}")
        if text != answer:
            result["raw"][attribute] = answer
        result["attributes"][attribute] = text

    def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        empty = result.pop("empty", None)
        if not empty:
            return result
        reason = f"empty answer to the {', '.join(empty)} question(s), also after one retry"
        log.warning("cannot caption %s: %s", result["sample_id"], reason)
        return {"sample_id": result["sample_id"], "class_name": result["class_name"], "error": reason}
