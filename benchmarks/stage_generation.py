"""Stage 3 timed: bob's batched generation stage against the release's one-image-per-call pipeline loop."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Settings, dataset_section, run_fresh_predict, trainer_section
from benchmarks.timing import Clock, Run
from benchmarks.world import World

_runs = itertools.count()


def pipeline_dtype(settings: Settings) -> torch.dtype:
    """The release generated in fp16 on GPUs; bob's ``dtype: auto`` picks the same, and fp32 on CPUs."""
    return torch.float16 if settings.device == "cuda" else torch.float32


def reference(world: World, settings: Settings, out: Path, batch_size: int = 1) -> Run:
    """A plain `StableDiffusionPipeline` loop saving PNGs; at batch 1 (one image per call) it is the release's loop."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(
        world.stable_diffusion, dtype=pipeline_dtype(settings), safety_checker=None, requires_safety_checker=False
    )
    pipeline.load_lora_weights(str(world.lora))
    pipeline.to(settings.device)
    pipeline.set_progress_bar_config(disable=True)
    out.mkdir(parents=True, exist_ok=True)
    side = world.size.image_size
    items = world.generation[: settings.reference_images] if batch_size == 1 else world.generation
    clock = Clock(settings.device)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = pipeline(
            [prompt for prompt, _ in chunk], height=side, width=side, num_inference_steps=settings.generation_steps,
            guidance_scale=settings.guidance, generator=[torch.Generator("cpu").manual_seed(seed) for _, seed in chunk],
        ).images
        for index, image in enumerate(images, start):
            image.save(out / f"{index:05d}.png")
        clock.mark(len(chunk))
    del pipeline
    return clock.run(1)


def ours_config(world: World, settings: Settings, run_dir: Path, batch_size: int) -> dict[str, Any]:
    """`configs/generate.yaml` on the benchmark's model, adapter and caption bank."""
    side = world.size.image_size
    per_class = len(world.generation) // len(world.class_names)
    trainer = trainer_section(settings, run_dir)
    trainer["callbacks"] = [{"class_path": "SyntheticSetWriter"}, *trainer["callbacks"]]
    return {
        "seed_everything": 0,
        "trainer": trainer,
        "model": {
            "class_path": "SyntheticImageGenerator",
            "init_args": {
                "base_model": str(world.stable_diffusion), "lora": str(world.lora), "lora_scale": 1.0,
                "guidance_scale": settings.guidance, "num_inference_steps": settings.generation_steps,
                "height": side, "width": side, "dtype": "auto",
            },
        },
        "data": {
            "class_path": "GenerationDataModule",
            "init_args": {
                "dataset": dataset_section(world), "output_dir": str(run_dir / "synthetic"),
                "caption_bank": str(world.caption_bank), "strategy": "marginal", "images_per_class": per_class,
                "generation_seed": 0, "image_format": "png", "shots": world.shots, "seed": 0,
                "split_file": str(world.split_file), "val_per_class": 1, "batch_size": batch_size,
                "num_workers": 0,
            },
        },
    }


def ours(world: World, settings: Settings, work: Path, batch_size: int) -> Run:
    run_dir = work / f"run{next(_runs)}"
    return run_fresh_predict(ours_config(world, settings, run_dir, batch_size), run_dir, len(world.generation), "generation")


def timed_reference(world: World, settings: Settings, work: Path, batch_size: int = 1) -> Run:
    out = work / f"reference{next(_runs)}"
    try:
        return reference(world, settings, out, batch_size)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def variants(world: World, settings: Settings, work: Path) -> dict[str, tuple[str, bool, Any]]:
    """name -> (description, is the reference, callable returning a `Run`)."""
    dtype = str(pipeline_dtype(settings)).removeprefix("torch.")
    batch = settings.generation_batch
    return {
        "reference": (f"StableDiffusionPipeline, one image per call, {dtype} (the release)", True,
                      lambda: timed_reference(world, settings, work)),
        "bob_same": (f"bob, batch 1, {dtype}", False, lambda: ours(world, settings, work, batch_size=1)),
        "plain_batched": (f"StableDiffusionPipeline, batch {batch} per call, {dtype} (batching alone)", False,
                          lambda: timed_reference(world, settings, work, batch_size=batch)),
        "bob_default": (f"bob, batch {batch}, {dtype}", False, lambda: ours(world, settings, work, batch_size=batch)),
    }
