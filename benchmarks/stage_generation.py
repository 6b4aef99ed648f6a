"""Stage 3 timed: bob's batched generation stage against the release's one-image-per-call pipeline loop
(the model's own diffusers pipeline: `StableDiffusionPipeline`, `StableDiffusionXLPipeline` or
`StableDiffusion3Pipeline`)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from benchmarks.architectures import MODEL_TITLES
from benchmarks.common import CLOCK, Settings, dataset_section, run_fresh_predict, trainer_section
from benchmarks.timing import Clock, Run, ThroughputClock
from benchmarks.world import World

_runs = itertools.count()


class WrittenImagesClock(ThroughputClock):
    """bob's generation clock: its last mark waits until the writer has written every image.

    `SyntheticSetWriter` encodes and writes PNGs on background threads and waits for them in
    ``teardown``, after ``on_predict_end``; without this wait the clock stopped with the last
    batch's files still being written, while the reference loops' clocks include their own
    ``image.save``.
    """

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        from bob.callbacks.synthetic_writer import SyntheticSetWriter

        for callback in trainer.callbacks:
            writes = getattr(callback, "_writes", None) if isinstance(callback, SyntheticSetWriter) else None
            if writes is not None:
                writes.wait()
        super().on_predict_end(trainer, pl_module)


GENERATION_CLOCK = {"class_path": f"{__name__}.WrittenImagesClock"}


def pipeline_dtype(settings: Settings) -> torch.dtype:
    """The release generated in fp16 on GPUs; bob's ``dtype: auto`` picks the same, and fp32 on CPUs."""
    return torch.float16 if settings.device == "cuda" else torch.float32


def pipeline_class(world: World) -> str:
    """The diffusers pipeline class the world's model folder names."""
    return json.loads((world.stable_diffusion / "model_index.json").read_text(encoding="utf-8"))["_class_name"]


def reference(world: World, settings: Settings, out: Path, batch_size: int = 1) -> Run:
    """A plain loop over the model's own diffusers pipeline saving PNGs; at batch 1 (one image per call)
    it is the release's loop."""
    from diffusers import DiffusionPipeline

    # SD 1.x / 2.x pipelines also take a safety checker, which the release turned off.
    extra = {"safety_checker": None, "requires_safety_checker": False} if world.size.family == "sd" else {}
    pipeline = DiffusionPipeline.from_pretrained(world.stable_diffusion, dtype=pipeline_dtype(settings), **extra)
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


def ours_config(world: World, settings: Settings, run_dir: Path, batch_size: int, **options: Any) -> dict[str, Any]:
    """`configs/generate.yaml` on the benchmark's model, adapter and caption bank; ``options`` are
    further `SyntheticImageGenerator` arguments (``compile_unet``, ``channels_last``, ``vae_slicing``)."""
    side = world.size.image_size
    per_class = len(world.generation) // len(world.class_names)
    trainer = trainer_section(settings, run_dir)
    clocks = [GENERATION_CLOCK if callback == CLOCK else callback for callback in trainer["callbacks"]]
    trainer["callbacks"] = [{"class_path": "SyntheticSetWriter"}, *clocks]
    return {
        "seed_everything": 0,
        "trainer": trainer,
        "model": {
            "class_path": "SyntheticImageGenerator",
            "init_args": {
                "base_model": str(world.stable_diffusion), "lora": str(world.lora), "lora_scale": 1.0,
                "guidance_scale": settings.guidance, "num_inference_steps": settings.generation_steps,
                "height": side, "width": side, "dtype": "auto", **options,
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


def ours(world: World, settings: Settings, work: Path, batch_size: int, **options: Any) -> Run:
    run_dir = work / f"run{next(_runs)}"
    config = ours_config(world, settings, run_dir, batch_size, **options)
    return run_fresh_predict(config, run_dir, len(world.generation), "generation")


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
    pipeline = pipeline_class(world)
    on = "" if world.size.model == "sd21" else f" on {MODEL_TITLES[world.size.model]}"
    return {
        "reference": (f"{pipeline}, one image per call, {dtype} (the release)", True,
                      lambda: timed_reference(world, settings, work)),
        "bob_same": (f"bob{on}, batch 1, {dtype}", False, lambda: ours(world, settings, work, batch_size=1)),
        "plain_batched": (f"{pipeline}, batch {batch} per call, {dtype} (batching alone)", False,
                          lambda: timed_reference(world, settings, work, batch_size=batch)),
        "bob_default": (f"bob{on}, batch {batch}, {dtype}", False, lambda: ours(world, settings, work, batch_size=batch)),
    }


#: bob's generation speed options the GPU check times against ``bob_default``: name -> (label, arguments).
OPTIONS = {
    "bob_channels_last": ("channels_last", {"channels_last": True}),
    "bob_compiled": ("compile_unet", {"compile_unet": True}),
    "bob_compiled_cl": ("compile_unet + channels_last", {"compile_unet": True, "channels_last": True}),
    "bob_no_vae_slicing": ("vae_slicing off", {"vae_slicing": False}),
}


def option_variants(world: World, settings: Settings, work: Path) -> dict[str, tuple[str, bool, Any]]:
    """bob's batched stage with each speed option of `SyntheticImageGenerator` (``bob_default``
    has them at their defaults: no compile, no channels-last, VAE slicing on).

    A compiled variant compiles in its first batch, which the clock's warm-up mark leaves out.
    Each of its repetitions loads a new UNet and starts from cleared dynamo caches (so no
    repetition runs eagerly for having hit dynamo's recompile limit); inductor's on-disk cache
    makes the later compilations faster.
    """
    dtype = str(pipeline_dtype(settings)).removeprefix("torch.")
    batch = settings.generation_batch

    def timed(options: dict[str, Any]) -> Any:
        def run() -> Run:
            if options.get("compile_unet"):
                torch._dynamo.reset()
            return ours(world, settings, work, batch_size=batch, **options)

        return run

    on = "" if world.size.model == "sd21" else f" on {MODEL_TITLES[world.size.model]}"
    return {
        name: (f"bob{on}, batch {batch}, {dtype}, {label}", False, timed(options))
        for name, (label, options) in OPTIONS.items()
    }
