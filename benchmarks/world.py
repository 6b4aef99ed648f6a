"""The benchmark's data and models on disk: a few-shot dataset, caption bank, synthetic set, LoRA, models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.architectures import Architectures, save_captioner, save_stable_diffusion
from bob.data import ClassFolders
from bob.data.caption_bank import CaptionBank, CaptionRecord
from bob.data.generation_plan import GenerationPlan
from bob.data.prompts import CLASS_TEMPLATE, CONTEXT_TEMPLATE, PromptTemplate
from bob.data.synthetic_set import SyntheticSetFolder
from bob.datamodules.fewshot import FewShotDataModule
from bob.datamodules.generation import GenerationDataModule

DESCRIPTOR = "aircraft"
#: Answers of the kind a 7B VLM gives (short phrases and whole sentences), for realistic prompt lengths.
BACKGROUNDS = [
    "Clear blue sky", "Grass, sky, hangar", "The aircraft is parked on a tarmac with hangars and mountains in the background",
    "Cloudy sky", "Airport terminal and jet bridges", "Runway with trees", "Sea and coastline", "Snowy mountains",
]
POSES = [
    "Taxiing on runway", "Flying, banking left", "Parked, side view", "Landing with gear down",
    "The aircraft is climbing steeply after take-off", "Front view, parked", "Cruising level", "Turning on taxiway",
]


@dataclass(frozen=True)
class TrainItem:
    """One training shot as the plain reference loops see it: file, label, full prompt."""

    path: Path
    label: int
    prompt: str


@dataclass(frozen=True)
class World:
    """Everything both code paths read, written once per benchmark run.

    Args:
        root: the folder it lives in.
        size: the model architectures.
        data: `ClassFolders` root of the few-shot dataset.
        split_file: the saved few-shot split.
        caption_bank: caption bank folder of the training shots.
        synthetic: a finished synthetic set (classifier input).
        stable_diffusion: diffusers folder of the random-weight Stable Diffusion model of ``size.model``
            (None when not needed).
        lora: folder with a random, non-zero ``pytorch_lora_weights.safetensors`` (None likewise).
        captioner: transformers folder of the random-weight Qwen2.5-VL (None likewise).
        class_names: class names in label order.
        shots: training images per class.
        train: the training shots with their prompts (context template, as stage 2 builds them).
        generation: (prompt, seed) of every image the generation benchmark makes, in plan order.
    """

    root: Path
    size: Architectures
    data: Path
    split_file: Path
    caption_bank: Path
    synthetic: Path
    stable_diffusion: Path | None
    lora: Path | None
    captioner: Path | None
    class_names: list[str]
    shots: int
    train: list[TrainItem]
    generation: list[tuple[str, int]]


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colour fields with noise: decodes and compresses like a photo, unlike flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(3 * x + rng.uniform(0, 6)), np.cos(2 * y + rng.uniform(0, 6)), x * y], axis=-1)
    image = (base - base.min()) / (np.ptp(base) + 1e-9) * 200 + rng.normal(0, 8, base.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_dataset(root: Path, classes: list[str], per_class: dict[str, int], width: int, height: int) -> Path:
    """``root/{train,test}/<class>/<n>.jpg``, the generic `ClassFolders` layout."""
    seed = 0
    for part, count in per_class.items():
        for name in classes:
            for index in range(count):
                seed += 1
                path = root / part / name / f"{index:03d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                photo(width, height, seed).save(path, quality=90)
    return root


def write_synthetic_set(folder: Path, classes: list[str], per_class: int, side: int) -> Path:
    """A finished synthetic set written through the generation stage's own folder writer."""
    plan = GenerationPlan(classes, classes, [per_class] * len(classes), PromptTemplate(CLASS_TEMPLATE, DESCRIPTOR), "none")
    target = SyntheticSetFolder(folder, image_format="jpg")
    target.start({"benchmark": True}, {"class_names": classes})
    for item in plan.items:
        target.write(item, photo(side, side, 100_000 + item.seed % 100_000), {})
    target.finish([item.key for item in plan.items], {"class_names": classes})
    return folder


def write_random_lora(stable_diffusion: Path, folder: Path, model: str = "sd21", rank: int = 16, seed: int = 0) -> Path:
    """An adapter with non-zero weights (peft starts B at zero, which would change nothing) on the layers
    stage 2 adapts for ``model`` (`recipes.lora_targets`): the denoiser and every CLIP text encoder,
    written by bob's own exporter in the model's pipeline format."""
    from benchmarks.recipes import lora_targets
    from bob.modules.diffusion.components import load_stable_diffusion
    from bob.modules.diffusion.lora import attach_lora, save_lora_weights

    if (folder / "pytorch_lora_weights.safetensors").is_file():
        return folder
    parts = load_stable_diffusion(str(stable_diffusion))
    denoiser_targets, text_targets = lora_targets(model)
    encoders = [e for e in (parts.text_encoder, parts.text_encoder_2) if e is not None]
    torch.manual_seed(seed)
    attach_lora(parts.denoiser, rank, rank, denoiser_targets, "gaussian", parts.denoiser_name)
    for encoder in encoders:
        attach_lora(encoder, rank, rank, text_targets, "gaussian", "text encoder")
    with torch.no_grad():
        for module in (parts.denoiser, *encoders):
            for name, parameter in module.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0.0, 0.02)
    save_lora_weights(folder, parts.family, parts.denoiser, *encoders)
    return folder


def build_world(
    root: str | Path, size: Architectures, classes: int = 4, shots: int = 4, synthetic_per_class: int = 8,
    generate_per_class: int = 4, photo_size: tuple[int, int] | None = None, with_diffusion: bool = True,
    with_captioner: bool = True,
) -> World:
    """Write (or reuse) the dataset, split, caption bank, synthetic set and the models asked for under ``root``.

    The Stable Diffusion model is ``size.model``'s, in a folder named after it (``stable_diffusion`` for
    SD 2.1, ``stable_diffusion_sdxl``...), so worlds of several models can share one root.
    """
    root = Path(root)
    names = [f"variant-{i:02d}" for i in range(classes)]
    width, height = photo_size or (size.image_size * 3 // 2, size.image_size * 9 // 8)
    data = root / "data"
    if not data.exists():
        write_dataset(data, names, {"train": shots + 1, "test": 1}, width, height)
    reader = ClassFolders(str(data), descriptor=DESCRIPTOR, name="bench")
    split_file = root / "split.json"
    split = FewShotDataModule(reader, shots=shots, seed=0, split_file=str(split_file), val_per_class=1).split
    contexts = {
        record.sample_id: {"background": BACKGROUNDS[i % len(BACKGROUNDS)], "pose": POSES[(3 * i) % len(POSES)]}
        for i, record in enumerate(split.train)
    }
    bank = root / "caption_bank"
    if not bank.exists():
        records = [CaptionRecord(r.sample_id, r.class_name, contexts[r.sample_id]) for r in split.train]
        CaptionBank(records, manifest={"source": "benchmark"}).save(bank)
    synthetic = root / "synthetic"
    if not synthetic.exists():
        write_synthetic_set(synthetic, names, synthetic_per_class, size.classifier_image_size * 5 // 4)
    template = PromptTemplate(CONTEXT_TEMPLATE, DESCRIPTOR)
    train = [
        TrainItem(r.path, r.label, template.format(reader.prompt_names[r.label], contexts[r.sample_id])) for r in split.train
    ]
    # The generation stage's own plan (marginal contexts, per-image seeds), so both paths draw the same images.
    planner = GenerationDataModule(
        reader, output_dir=str(root / "plan_only"), caption_bank=str(bank), images_per_class=generate_per_class,
        shots=shots, split_file=str(split_file), val_per_class=1,
    )
    prompts = [(item.prompt, item.seed) for item in planner.plan.items]
    suffix = "" if size.model == "sd21" else f"_{size.model}"
    # SD 3.5 and SD-XL at the paper's size hold 8 and 3.5 billion parameters: bf16 on disk halves them.
    dtype = torch.float32 if size.model == "sd21" or size.name == "tiny" else torch.bfloat16
    stable_diffusion = save_stable_diffusion(root / f"stable_diffusion{suffix}", size, dtype=dtype) if with_diffusion else None
    return World(
        root=root,
        size=size,
        data=data,
        split_file=split_file,
        caption_bank=bank,
        synthetic=synthetic,
        stable_diffusion=stable_diffusion,
        lora=write_random_lora(stable_diffusion, root / f"lora{suffix}", size.model) if stable_diffusion else None,
        captioner=save_captioner(root / "captioner", size) if with_captioner else None,
        class_names=names,
        shots=shots,
        train=train,
        generation=prompts,
    )
