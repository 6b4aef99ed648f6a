"""GPU hours of the whole Aircraft 5-shot pipeline, bob against the authors' release, from counted FLOPs.

Model FLOPs per sample (counted on the meta device, `benchmarks/flops.py`) times the samples each stage
of the shipped recipe processes, at an assumed model FLOP utilisation (MFU) of a GPU's data-sheet rate.

    python benchmarks/gpu_hours.py                            # paper size, H100 SXM dense bf16, 40% MFU (assumed)
    python benchmarks/gpu_hours.py --mfu 0.3 --release-mfu 0.1
    python benchmarks/gpu_hours.py --size tiny --no-captioner # the same arithmetic on the tiny models, seconds
    python benchmarks/gpu_hours.py --model sdxl               # SD-XL base 1.0 in stages 2 and 3 (sd35: SD 3.5 Medium)

Every count is read from the shipped configs (configs/, with configs/t2i/<model>.yaml and
configs/generate/<model>.yaml composed on top for --model sdxl / sd35), the defaults of bob's classes,
or the dataset's sizes in docs/datasets.md; the third table names where each came from. The MFU is an assumption until
benchmarks/gpu_check.py has measured it on a GPU.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import flops, recipes  # noqa: E402
from benchmarks.architectures import MODEL_TITLES, MODELS, SIZES, Architectures, architectures  # noqa: E402

#: An Aircraft photo (height, width): the size docs/benchmarks.md's data-pipeline tables use for
#: Aircraft (photos vary; the caption stage shrinks only those over its ``max_side``).
AIRCRAFT_PHOTO = (683, 1024)
H100_SXM = "H100 SXM"


@dataclass(frozen=True)
class Recipe:
    """The counts of one few-shot run through all four stages, and where each came from (``sources``)."""

    classes: int
    shots: int
    val_images: int
    test_images: int
    photo_hw: tuple[int, int]
    caption_max_side: int
    caption_questions: list[str]
    caption_answer_tokens: int
    lora_epochs: int
    lora_batch: int
    lora_effective_batch: int
    lora_rank: int
    train_text_encoder: bool
    latent_cache_views: int
    grid_every: int
    grid_images: int
    grid_steps: int
    grid_guidance: float
    images_per_class: int
    generation_steps: int
    guidance: float
    classifier_epochs: int
    classifier_batch: int
    real_repeats: int
    backbone: str
    sweep_points: int
    sweep_epochs: int
    model: str
    lora_image_size: int
    generation_image_size: int
    lora_targets: list[str]
    text_lora_targets: list[str]
    gradient_checkpointing: bool
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def train_images(self) -> int:
        return self.classes * self.shots

    @property
    def lora_samples(self) -> int:
        return self.train_images * self.lora_epochs

    @property
    def lora_optimizer_steps(self) -> int:
        """Optimizer steps on one device: micro-batches per epoch, accumulated ``effective / batch`` at a time."""
        micro = math.ceil(self.train_images / self.lora_batch)
        return self.lora_epochs * math.ceil(micro / (self.lora_effective_batch // self.lora_batch))

    @property
    def sample_grids(self) -> int:
        """`SampleGrid` grids: one when training starts, one every ``grid_every`` steps, one at the end."""
        steps = self.lora_optimizer_steps
        return 1 + steps // self.grid_every + (1 if steps % self.grid_every else 0)

    @property
    def synthetic_images(self) -> int:
        return self.classes * self.images_per_class

    @property
    def classifier_epoch_images(self) -> int:
        """Training images per epoch: real shots x repeats + synthetic, the last partial batch dropped."""
        pool = self.train_images * self.real_repeats + self.synthetic_images
        return pool // self.classifier_batch * self.classifier_batch


def _transform(spec: dict[str, Any]) -> Any:
    """A torchvision transform from a config's ``class_path`` / ``init_args`` (nested ``transforms`` too)."""
    module, _, name = spec["class_path"].rpartition(".")
    arguments = dict(spec.get("init_args") or {})
    if "transforms" in arguments:
        arguments["transforms"] = [_transform(t) for t in arguments["transforms"]]
    return getattr(importlib.import_module(module), name)(**arguments)


def aircraft_recipe(configs: Path = ROOT / "configs", model: str = "sd21") -> Recipe:
    """The Aircraft 5-shot run of the shipped configs: each stage's config merged with the dataset overlay,
    and stages 2 and 3 with ``model``'s overlay (configs/t2i/<model>.yaml, configs/generate/<model>.yaml)."""
    from bob.datamodules.captions import CaptionDataModule
    from bob.datamodules.fewshot import IMAGES_PER_CLASS
    from bob.modules.captioner import DEFAULT_QUESTIONS, Captioner
    from bob.modules.diffusion.caching import is_deterministic
    from bob.modules.diffusion.finetuner import LoRAFineTuner
    from bob.modules.generator import SyntheticImageGenerator
    from bob.sweep.__main__ import parse as sweep_arguments

    t2i = recipes.composed("t2i", model, configs=configs)
    generate = recipes.composed("generate", model, configs=configs)
    classifier = recipes.load_yaml(configs / "classifier.yaml")
    shots = t2i["data"]["init_args"]["shots"]
    grid = next(c["init_args"] for c in t2i["trainer"]["callbacks"] if c["class_path"].endswith("SampleGrid"))
    views = recipes.model_argument(t2i, "latent_cache_views", LoRAFineTuner)
    transform = _transform(t2i["data"]["init_args"]["train_transform"])
    if views is None:  # LoRAFineTuner.setup: one view when the transform is deterministic, else none
        views = 1 if is_deterministic(transform) else 0
    backbone = classifier["model"]["init_args"]["backbone"]["class_path"]
    backbone_file = {"CLIPBackbone": "clip"}.get(backbone, backbone)
    points = math.prod(
        len(values) for values in recipes.load_yaml(configs / f"classifier/grids/{backbone_file}.yaml").values()
    )
    questions = recipes.class_default(Captioner, "questions") or DEFAULT_QUESTIONS
    questions = [q.format(descriptor="aircraft", a_descriptor="an aircraft") for q in questions.values()]
    sources = {
        "classes": "docs/datasets.md: FGVCAircraft, 100 variants",
        "shots": "configs/datasets/aircraft.yaml `shots`",
        "val_images": "docs/datasets.md, docs/parity.md `split.validation`: Aircraft 1600",
        "test_images": "docs/datasets.md: Aircraft test split 3333",
        "photo_hw": "the Aircraft size of docs/benchmarks.md's data-pipeline tables (photos vary)",
        "caption_max_side": "`CaptionDataModule.max_side` default (longer side shrunk to it)",
        "caption_questions": "`Captioner` default questions (the paper's background and pose)",
        "caption_answer_tokens": "`Captioner.max_new_tokens` default (a bound: answers stop earlier)",
        "lora_epochs": "configs/t2i.yaml `trainer.max_epochs`; docs/parity.md `t2i.epochs` (release: 400)",
        "lora_batch": "configs/t2i.yaml `data.init_args.batch_size` (release: 8 per GPU)",
        "lora_effective_batch": "`LoRAFineTuner.effective_batch_size` default; docs/parity.md `t2i.batch`",
        "lora_rank": "`LoRAFineTuner.unet_rank` / `text_encoder_rank` defaults; docs/parity.md `t2i.lora`",
        "train_text_encoder": "`LoRAFineTuner.train_text_encoder` default; docs/parity.md `t2i.lora` (always trained)",
        "latent_cache_views": "`LoRAFineTuner.latent_cache_views` auto with configs/t2i.yaml's Resize + RandomCrop",
        "grid_every": "configs/t2i.yaml `SampleGrid.every_n_steps`",
        "grid_images": "configs/t2i.yaml `SampleGrid` num_classes x num_contexts",
        "grid_steps": "configs/t2i.yaml `SampleGrid.num_inference_steps`",
        "grid_guidance": "configs/t2i.yaml `SampleGrid.guidance_scale`",
        "images_per_class": "configs/generate.yaml `images_per_class`; docs/parity.md `generate.count`",
        "generation_steps": "`SyntheticImageGenerator.num_inference_steps` default; docs/parity.md `generate.sampler`",
        "guidance": "`SyntheticImageGenerator.guidance_scale` default; docs/parity.md `generate.sampler`",
        "classifier_epochs": "configs/classifier.yaml `trainer.max_epochs`; docs/parity.md `classifier.schedule`",
        "classifier_batch": "configs/classifier.yaml `data.init_args.batch_size`",
        "real_repeats": "100 // shots (`real_repeats: null`); docs/parity.md `classifier.real_repeats`",
        "backbone": "configs/classifier.yaml `backbone.class_path`",
        "sweep_points": f"configs/classifier/grids/{backbone_file}.yaml (product of the value lists)",
        "sweep_epochs": "`python -m bob.sweep --sweep-epochs` default; docs/reproduce.md",
    }
    generation_side = recipes.model_argument(generate, "height", SyntheticImageGenerator)
    if generation_side != recipes.model_argument(generate, "width", SyntheticImageGenerator):
        raise ValueError("the FLOP count takes square images; the composed generate config sets another shape")
    unet_targets, text_targets = recipes.lora_targets(model, configs)
    if model != "sd21":
        # Where the model's overlays change the recipe (the SD 2.1 table stays as it was).
        t2i_file = recipes.overlay_path("t2i", model, configs).relative_to(configs.parent)
        generate_file = recipes.overlay_path("generate", model, configs).relative_to(configs.parent)
        generate_set = recipes.overlay("generate", model, configs)["model"]["init_args"]
        for name, argument in (("generation_steps", "num_inference_steps"), ("guidance", "guidance_scale")):
            if argument in generate_set:
                sources[name] = f"{generate_file} `{argument}`"
        t2i_set = recipes.t2i_model_arguments(model, configs)
        sources |= {
            "model": f"`--model`: {t2i_file}, {generate_file}",
            "lora_image_size": f"{t2i_file} `data.init_args.image_size` (also `SampleGrid`'s side)",
            "generation_image_size": f"{generate_file} `height` / `width`",
            "lora_targets": f"{t2i_file} `unet_targets`" if "unet_targets" in t2i_set
            else "`LoRAFineTuner.unet_targets` default (names absent from the model skipped)",
            "gradient_checkpointing": f"{t2i_file} `gradient_checkpointing`",
        }
    return Recipe(
        classes=100,
        shots=shots,
        val_images=1600,
        test_images=3333,
        photo_hw=AIRCRAFT_PHOTO,
        caption_max_side=recipes.class_default(CaptionDataModule, "max_side"),
        caption_questions=questions,
        caption_answer_tokens=recipes.class_default(Captioner, "max_new_tokens"),
        lora_epochs=t2i["trainer"]["max_epochs"],
        lora_batch=t2i["data"]["init_args"]["batch_size"],
        lora_effective_batch=recipes.model_argument(t2i, "effective_batch_size", LoRAFineTuner),
        lora_rank=recipes.model_argument(t2i, "unet_rank", LoRAFineTuner),
        train_text_encoder=recipes.model_argument(t2i, "train_text_encoder", LoRAFineTuner),
        latent_cache_views=views,
        grid_every=grid["every_n_steps"],
        grid_images=grid["num_classes"] * grid["num_contexts"],
        grid_steps=grid["num_inference_steps"],
        grid_guidance=grid["guidance_scale"],
        images_per_class=generate["data"]["init_args"]["images_per_class"],
        generation_steps=recipes.model_argument(generate, "num_inference_steps", SyntheticImageGenerator),
        guidance=recipes.model_argument(generate, "guidance_scale", SyntheticImageGenerator),
        classifier_epochs=classifier["trainer"]["max_epochs"],
        classifier_batch=classifier["data"]["init_args"]["batch_size"],
        real_repeats=max(1, IMAGES_PER_CLASS // shots),
        backbone=backbone_file,
        sweep_points=points,
        sweep_epochs=sweep_arguments(["--grid", "-", "--out", "-", "--", "fit"])[0].sweep_epochs,
        model=model,
        lora_image_size=t2i["data"]["init_args"]["image_size"],
        generation_image_size=generation_side,
        lora_targets=unet_targets,
        text_lora_targets=text_targets,
        gradient_checkpointing=recipes.model_argument(t2i, "gradient_checkpointing", LoRAFineTuner),
        sources=sources,
    )


def _row(stage: str, key: str, variant: str, parts: dict[str, float], reference: bool = False) -> dict[str, Any]:
    return {
        "stage": stage, "key": key, "variant": variant, "parts": parts, "flops": sum(parts.values()), "reference": reference,
    }


def _backbones(
    size: Architectures, recipe: Recipe, configs: Path, clip_prompt_tokens: int
) -> dict[str, tuple[str, Any, int]]:
    """name -> (description, bob backbone built on the meta device, input side): the shipped backbone
    configs at the paper's size, the size's own timm classifier at ``tiny``."""
    if size.name == "tiny":
        init = {"model_name": size.classifier, "pretrained": False, "finetune": "full"}
        side = size.classifier_image_size
        return {"timm": (f"timm {size.classifier}, full", flops.timm_backbone(init, recipe.classes, side), side)}
    found = {}
    for path in sorted((configs / "classifier/backbones").glob("*.yaml")):
        spec = recipes.load_yaml(path)["model"]["init_args"]["backbone"]
        init = spec.get("init_args") or {}
        if spec["class_path"].endswith("CLIPBackbone"):
            backbone = flops.clip_backbone(recipe.classes, clip_prompt_tokens, init)
            description = f"CLIP ViT-B/16, LoRA r {init.get('lora_rank')} ({clip_prompt_tokens}-token class prompts)"
        else:
            backbone = flops.timm_backbone(init, recipe.classes, 224)
            description = f"timm {init['model_name']}, {init.get('finetune', 'full')}"
        found[path.stem] = (description, backbone, 224)
    return found


#: How the tables name each part of a Stable Diffusion model, by family (SD 2.1's as they always were).
PART_NAMES = {
    "sd": {"vae_encoder": "VAE encoder", "text_encoder": "text encoder", "denoiser": "UNet", "vae_decoder": "VAE decoder"},
    "sdxl": {"vae_encoder": "VAE encoder", "text_encoder": "text encoders", "denoiser": "UNet",
             "vae_decoder": "VAE decoder"},
    "sd3": {"vae_encoder": "VAE encoder", "text_encoder": "CLIP encoders", "t5_encoder": "T5 encoder",
            "denoiser": "transformer", "vae_decoder": "VAE decoder"},
}
SAMPLER_NAMES = {"PNDMScheduler": "PNDM", "EulerDiscreteScheduler": "Euler", "FlowMatchEulerDiscreteScheduler": "flow-matching Euler"}


def counted_sides(size: Architectures, recipe: Recipe) -> tuple[int, int]:
    """The training and generation sides the FLOPs are counted at: the recipe's, or the tiny models' own
    (64 px) at ``--size tiny``, whose arithmetic is a smoke test of the paper size's."""
    if size.name == "tiny":
        return size.image_size, size.image_size
    return recipe.lora_image_size, recipe.generation_image_size


def diffusion_rows(size: Architectures, recipe: Recipe) -> list[dict[str, Any]]:
    """FLOPs per LoRA training sample, generated image and sample-grid image of ``size``'s Stable
    Diffusion model (stages 2 and 3), with and without each of bob's changes that alters them."""
    family = size.family
    names = PART_NAMES[family]
    encoder, denoiser = names["text_encoder"], names["denoiser"]
    sd21 = size.model == "sd21"
    train_side, generation_side = counted_sides(size, recipe)
    stage = "LoRA training sample"
    lora_args = {"rank": recipe.lora_rank, "targets": recipe.lora_targets, "text_targets": recipe.text_lora_targets,
                 "image_size": train_side}
    trained = flops.lora_sample_parts(size, train_text_encoder=True, **lora_args)
    frozen = flops.lora_sample_parts(size, train_text_encoder=False, **lora_args)
    epochs = recipe.lora_epochs

    def lora(parts: dict[str, float], vae_share: float = 1.0, text_share: float = 1.0,
             t5_share: float = 1 / epochs) -> dict[str, float]:
        """``*_share``: the part's runs per sample (1: every step; k / epochs: k cached encodings per
        image). bob runs SD3's T5 once per distinct prompt, one per image, whatever its other settings."""
        shares = {"vae_encoder": vae_share, "text_encoder": text_share, "t5_encoder": t5_share, "denoiser": 1.0}
        return {names[k]: parts[k] * share for k, share in shares.items() if k in names}

    cache = "on" if recipe.latent_cache_views else "off"
    # latent_crops encodes the photo resized to the crop's short side, trimmed to the 8 px grid.
    crop = train_side
    grid_hw = tuple(round(x * crop / min(recipe.photo_hw)) // 8 * 8 for x in recipe.photo_hw)
    grid_share = grid_hw[0] * grid_hw[1] / crop**2
    t5 = f"; T5 once per prompt (one per image) in {epochs} epochs" if family == "sd3" else ""
    if sd21:
        release = "release: VAE encoder, text encoder (LoRA, forward + backward) and UNet every step"
        trains = "text encoder trains"
    else:
        forward_t5 = ", T5 encoder (forward)" if family == "sd3" else ""
        release = (f"the release's recipe on {MODEL_TITLES[size.model]} (the release is SD 2.1-base's; a plain loop): "
                   f"VAE encoder, {encoder} (LoRA, forward + backward){forward_t5} and {denoiser} every step")
        trains = f"{encoder} train"
    rows = [
        _row(stage, "lora_release", release, lora(trained, t5_share=1.0), reference=True),
        _row(stage, "lora_bob", f"bob, shipped config (random crop: latent cache {cache}; {trains}: no text cache{t5})",
             lora(trained, vae_share=recipe.latent_cache_views / epochs if recipe.latent_cache_views else 1.0)),
        _row(stage, "lora_latent_cache", f"bob + `latent_cache_views: 1`: VAE encoder once per image in {epochs} epochs",
             lora(trained, vae_share=1 / epochs)),
        _row(stage, "lora_latent_crops", f"bob + `latent_crops: true`: VAE encoder once per resized image "
             f"({grid_hw[1]}x{grid_hw[0]}, {grid_share:.2f}x a crop's pixels) in {epochs} epochs, a new crop every step",
             lora(trained, vae_share=grid_share / epochs)),
        _row(stage, "lora_text_cache", f"bob + `train_text_encoder: false` (not the paper's recipe): {encoder} "
             f"forward once per prompt (one per image) in {epochs} epochs", lora(frozen, text_share=1 / epochs)),
        _row(stage, "lora_both_caches", "bob + both caches", lora(frozen, vae_share=1 / epochs, text_share=1 / epochs)),
    ]
    if recipe.gradient_checkpointing:
        rows.append(_row(
            "gradient-checkpointing recompute, per LoRA sample", "lora_recompute",
            f"`gradient_checkpointing: true` runs the {denoiser}'s forward again during the backward: hardware work, "
            "not model FLOPs (in no total; an MFU counted on model FLOPs absorbs it)",
            {f"{denoiser} forward": trained["denoiser_forward"]},
        ))

    stage = "generated image"
    sampler = SAMPLER_NAMES.get(size.scheduler["_class_name"], size.scheduler["_class_name"])

    def image(steps: int, guidance: float, lora_rank: int | None, side: int) -> dict[str, float]:
        parts = flops.generation_parts(size, steps, guidance, lora_rank=lora_rank, image_size=side,
                                       targets=recipe.lora_targets)
        return {names[k]: v for k, v in parts.items()}

    calls = flops.sampler_unet_calls(recipe.generation_steps, size.scheduler)
    guidance = f"{recipe.generation_steps} {sampler} steps ({calls} {denoiser} calls) x 2 rows (CFG {recipe.guidance})"
    if not sd21:
        guidance += f", {generation_side}x{generation_side} px"
    rows += [
        _row(stage, "generation_release", f"release: LoRA loaded unfused, batch 1; {guidance}",
             image(recipe.generation_steps, recipe.guidance, recipe.lora_rank, generation_side), reference=True),
        _row(stage, "generation_bob", "bob: LoRA folded into the weights (batching changes no FLOPs)",
             image(recipe.generation_steps, recipe.guidance, None, generation_side)),
    ]
    grid_calls = flops.sampler_unet_calls(recipe.grid_steps, size.scheduler)
    rows.append(_row(
        "sample-grid image", "grid",
        f"bob's `SampleGrid` during LoRA training: {recipe.grid_steps} steps ({grid_calls} {denoiser} calls), "
        f"CFG {recipe.grid_guidance}, LoRA unfused" + ("" if sd21 else f", {train_side}x{train_side} px"),
        image(recipe.grid_steps, recipe.grid_guidance, recipe.lora_rank, train_side),
    ))
    return rows


def per_sample_rows(
    size: Architectures, recipe: Recipe, clip_prompt_tokens: int = flops.TOKENS, captioner: bool = True,
    configs: Path = ROOT / "configs",
) -> list[dict[str, Any]]:
    """FLOPs per sample of every stage, with and without each of bob's changes that alters them.

    Each row: ``stage``, ``key``, ``variant``, ``parts`` (name -> FLOPs), ``flops`` (their sum) and
    ``reference`` (the release's way, which the stage's other rows are compared with).
    """
    rows = []
    if captioner:
        side = max(recipe.photo_hw)
        scale = min(1.0, recipe.caption_max_side / side)
        photo = tuple(round(x * scale) for x in recipe.photo_hw)
        vision = language = 0.0
        for question in recipe.caption_questions:
            parts = flops.caption_parts(size, photo, flops.chat_text_tokens(question), recipe.caption_answer_tokens)
            vision += parts["vision"]
            language += parts["language"]
        rows.append(_row(
            "captioning, per image", "caption",
            f"{len(recipe.caption_questions)} questions, each a generate call with the image ({parts['image_tokens']} "
            f"image tokens at {photo[1]}x{photo[0]}, up to {recipe.caption_answer_tokens} answer tokens)",
            {"vision tower": vision, "language model": language}, reference=True,
        ))

    rows += diffusion_rows(size, recipe)
    for name, (description, backbone, side) in _backbones(size, recipe, configs, clip_prompt_tokens).items():
        parts = flops.classifier_sample_parts(backbone, side, recipe.classes)
        train = {"image": parts["image"]}
        if parts["per_step"]:
            train[f"prompts / batch {recipe.classifier_batch}"] = parts["per_step"] / recipe.classifier_batch
        shipped = " (shipped default)" if name == recipe.backbone else ""
        rows.append(_row("classifier training image", f"classifier_{name}", f"{description}{shipped}", train))
        rows.append(_row("classifier evaluation image", f"eval_{name}", f"{description}, forward{shipped}",
                         {"image": parts["eval_image"]}))
    return rows


def _hours(total_flops: float, peak_tflops: float, mfu: float) -> float:
    return total_flops / (peak_tflops * 1e12 * mfu) / 3600


def stage_rows(
    per_sample: list[dict[str, Any]], recipe: Recipe, peak_tflops: float, mfu: float, release_mfu: float | None = None
) -> list[dict[str, Any]]:
    """The pipeline's stages, each ``samples x FLOPs per sample`` for bob's defaults and the release's way,
    in FLOPs and GPU hours at ``peak_tflops x mfu`` (``release_mfu`` for the release; default ``mfu``)."""
    by = {row["key"]: row["flops"] for row in per_sample}
    release_mfu = mfu if release_mfu is None else release_mfu
    clip = f"classifier_{recipe.backbone}"
    if clip not in by:  # the tiny size has one timm classifier
        clip = next(k for k in by if k.startswith("classifier_"))
    evaluation = "eval_" + clip.removeprefix("classifier_")
    epoch, val = recipe.classifier_epoch_images, recipe.val_images
    sweep_runs = recipe.sweep_points * recipe.sweep_epochs
    stages = []

    def add(stage: str, samples: str, bob: float | None, release: float | None, per_bob: float | None = None,
            per_release: float | None = None, in_total: bool = True) -> None:
        stages.append({
            "stage": stage, "samples": samples, "in_total": in_total,
            "bob": {"per_sample": per_bob, "flops": bob, "gpu_hours": None if bob is None else _hours(bob, peak_tflops, mfu)},
            "release": {"per_sample": per_release, "flops": release,
                        "gpu_hours": None if release is None else _hours(release, peak_tflops, release_mfu)},
        })

    if "caption" in by:
        n = recipe.train_images
        add("1. captioning (the release publishes its banks; counted as the paper's captioner)",
            f"{n:,} images ({recipe.classes} classes x {recipe.shots} shots)", n * by["caption"], n * by["caption"],
            by["caption"], by["caption"])
    n = recipe.lora_samples
    add("2. LoRA fine-tuning", f"{n:,} samples ({recipe.train_images} images x {recipe.lora_epochs} epochs)",
        n * by["lora_bob"], n * by["lora_release"], by["lora_bob"], by["lora_release"])
    add("2. LoRA fine-tuning, bob + `latent_cache_views: 1` (opt-in: one crop per image; not in the total)",
        f"{n:,} samples", n * by["lora_latent_cache"], None, by["lora_latent_cache"], in_total=False)
    add("2. LoRA fine-tuning, bob + `latent_crops: true` (opt-in: random crops on the latent grid; not in the total)",
        f"{n:,} samples", n * by["lora_latent_crops"], None, by["lora_latent_crops"], in_total=False)
    grids = recipe.sample_grids * recipe.grid_images
    add("2. LoRA sample grids (bob's monitoring; the release's not counted)",
        f"{grids} images ({recipe.sample_grids} grids of {recipe.grid_images} in "
        f"{recipe.lora_optimizer_steps:,} optimizer steps)",
        grids * by["grid"], None, by["grid"])
    n = recipe.synthetic_images
    add("3. generation", f"{n:,} images ({recipe.classes} classes x {recipe.images_per_class})",
        n * by["generation_bob"], n * by["generation_release"], by["generation_bob"], by["generation_release"])
    n = recipe.classifier_epochs * epoch
    model = {row["key"]: row["variant"] for row in per_sample}[clip].removesuffix(" (shipped default)")
    add(f"4. classifier training: {model}",
        f"{n:,} images ({recipe.classifier_epochs} epochs x {epoch:,}: {recipe.train_images} x {recipe.real_repeats} real "
        f"+ {recipe.synthetic_images:,} synthetic, batch {recipe.classifier_batch}, last partial batch dropped)",
        n * by[clip], n * by[clip], by[clip], by[clip])
    n = recipe.classifier_epochs * val + recipe.test_images
    add("4. classifier evaluation",
        f"{n:,} images ({recipe.classifier_epochs} x {val:,} validation + {recipe.test_images:,} test)",
        n * by[evaluation], n * by[evaluation], by[evaluation], by[evaluation])
    sweep = sweep_runs * (epoch * by[clip] + val * by[evaluation])
    add("4. classifier sweep (the paper's protocol)",
        f"{recipe.sweep_points} points x {recipe.sweep_epochs} epochs x ({epoch:,} training + {val:,} validation images)",
        sweep, sweep)
    totals = {}
    for side in ("bob", "release"):
        counted = [s[side]["flops"] or 0.0 for s in stages if s["in_total"]]
        hours = [s[side]["gpu_hours"] or 0.0 for s in stages if s["in_total"]]
        totals[side] = {"per_sample": None, "flops": sum(counted), "gpu_hours": sum(hours)}
    stages.append({"stage": "total", "samples": "", "in_total": False, **totals})
    return stages


def _number(value: float | None, scale: float) -> str:
    """Three significant digits, with thousands written out (no exponent)."""
    if value is None:
        return "—"
    value /= scale
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def markdown(result: dict[str, Any]) -> str:
    recipe: Recipe = result["recipe"]
    size = result["size"]
    model = "" if recipe.model == "sd21" else f", {MODEL_TITLES[recipe.model]} in stages 2 and 3"
    lines = [
        f"FLOPs per sample at size `{size}`{model} (counted on the meta device; forward + backward for training):",
        "",
        "| stage | variant | parts (TFLOP) | TFLOP per sample | vs release |",
        "|---|---|---|---|---|",
    ]
    references = {row["stage"]: row["flops"] for row in result["per_sample"] if row["reference"]}
    for row in result["per_sample"]:
        parts = ", ".join(f"{name} {value / 1e12:.3g}" for name, value in row["parts"].items())
        ratio = row["flops"] / references[row["stage"]] if row["stage"] in references else None
        lines.append(f"| {row['stage']} | {row['variant']} | {parts} | {row['flops'] / 1e12:.3g} | "
                     f"{'—' if ratio is None else f'{ratio:.3f}x'} |")
    peak, mfu, release_mfu = result["peak_tflops"], result["mfu"], result["release_mfu"]
    lines += [
        "",
        f"Aircraft {recipe.shots}-shot, whole pipeline: GPU hours = FLOPs / ({peak} TFLOP/s ({result['peak_source']}) "
        f"x MFU) / 3600, with an MFU of {mfu:.0%} for bob and {release_mfu:.0%} for the release: "
        "**an assumption**, unless taken from benchmarks/gpu_check.py's MFU measured on that GPU."
        + ("" if recipe.model == "sd21" else
           f" The release's columns for stages 2 and 3 apply its recipe (plain loops, no caches, LoRA unfused, batch 1) "
           f"to {MODEL_TITLES[recipe.model]}; the authors' release is SD 2.1-base's."),
        "",
        "| stage | samples | bob TFLOP/sample | bob PFLOP | bob GPU-h | release TFLOP/sample | release PFLOP "
        "| release GPU-h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["stages"]:
        bob, release = row["bob"], row["release"]
        lines.append(
            f"| {row['stage']} | {row['samples']} | {_number(bob['per_sample'], 1e12)} | {_number(bob['flops'], 1e15)} | "
            f"{_number(bob['gpu_hours'], 1)} | {_number(release['per_sample'], 1e12)} | "
            f"{_number(release['flops'], 1e15)} | {_number(release['gpu_hours'], 1)} |"
        )
    lines += ["", "| count | value | from |", "|---|---|---|"]
    for name, source in recipe.sources.items():
        value = getattr(recipe, name)
        if name == "caption_questions":
            value = len(value)
        elif name == "photo_hw":
            value = f"{value[1]}x{value[0]}"
        lines.append(f"| `{name}` | {value} | {source} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--model", choices=MODELS, default="sd21",
                        help="Stable Diffusion model of stages 2 and 3: SD 2.1-base (the paper), SD-XL base 1.0, SD 3.5 Medium")
    parser.add_argument("--gpu", default=H100_SXM, choices=sorted(flops.BF16_PEAK_TFLOPS),
                        help="whose data-sheet dense bf16 rate to use")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 TFLOP/s (default: --gpu's data sheet)")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOP utilisation of bob's stages")
    parser.add_argument("--release-mfu", type=float, default=None, help="assumed MFU of the release's (default: --mfu)")
    parser.add_argument("--clip-prompt-tokens", type=int, default=flops.TOKENS,
                        help="padded length of the CLIP head's class prompts (77, the tower's limit, is a bound)")
    parser.add_argument("--no-captioner", dest="captioner", action="store_false", help="leave the 7B captioner out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    args = parse_args(argv)
    recipe = aircraft_recipe(model=args.model)
    # After Lightning's import, which sets its level: bob's LoRA helper names the recipe's targets a model
    # lacks (SD's UNets have no add_k_proj) at info level.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    size = architectures(args.size, args.model)
    per_sample = per_sample_rows(size, recipe, args.clip_prompt_tokens, args.captioner)
    peak = args.peak_tflops or flops.BF16_PEAK_TFLOPS[args.gpu]
    release_mfu = args.mfu if args.release_mfu is None else args.release_mfu
    result = {
        "size": args.size, "recipe": recipe, "per_sample": per_sample, "peak_tflops": peak,
        "peak_source": "--peak-tflops" if args.peak_tflops else f"{args.gpu} dense bf16, data sheet",
        "mfu": args.mfu, "release_mfu": release_mfu,
        "stages": stage_rows(per_sample, recipe, peak, args.mfu, release_mfu),
    }
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
