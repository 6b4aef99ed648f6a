"""Stage 1 timed: bob's batched `Captioner` against a plain transformers loop, one image and question per call."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Settings, dataset_section, run_fresh_predict, trainer_section
from benchmarks.timing import Clock, Run
from benchmarks.world import DESCRIPTOR, World

QUESTIONS = [
    f"Describe the {attribute} of the {DESCRIPTOR} in as few words as possible. Refer to the {DESCRIPTOR} as simply 'an {DESCRIPTOR}'."
    for attribute in ("background", "pose")
]
MAX_SIDE = 1024

_runs = itertools.count()


def model_dtype(settings: Settings) -> torch.dtype:
    """bob's ``dtype: auto``: bfloat16 on a GPU, float32 on a CPU; the reference uses the same."""
    return torch.bfloat16 if settings.device == "cuda" else torch.float32


def reference(world: World, settings: Settings) -> Run:
    """`generate` once per (image, question), greedy, as a plain script would caption a folder."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(world.captioner)
    model = AutoModelForImageTextToText.from_pretrained(world.captioner, dtype=model_dtype(settings)).to(settings.device)
    model.eval()
    clock = Clock(settings.device)
    with torch.no_grad():
        for item in world.train[: settings.reference_images]:
            with Image.open(item.path) as opened:
                image = opened.convert("RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
            for question in QUESTIONS:
                messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
                text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                inputs = processor(text=[text], images=[image], return_tensors="pt").to(settings.device, dtype=model.dtype)
                output = model.generate(**inputs, max_new_tokens=settings.caption_tokens, do_sample=False)
                processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            clock.mark(1)
    return clock.run(1)


def ours_config(world: World, settings: Settings, run_dir: Path, batch_size: int) -> dict[str, Any]:
    """`configs/captions.yaml` on the benchmark's model and data."""
    trainer = trainer_section(settings, run_dir)
    trainer["callbacks"] = [
        {"class_path": "CaptionWriter", "init_args": {"output_dir": str(run_dir / "captions")}}, *trainer["callbacks"]
    ]
    return {
        "seed_everything": 0,
        "trainer": trainer,
        "model": {
            "class_path": "Captioner",
            "init_args": {"model": str(world.captioner), "max_new_tokens": settings.caption_tokens, "dtype": "auto"},
        },
        "data": {
            "class_path": "CaptionDataModule",
            "init_args": {
                "dataset": dataset_section(world), "shots": world.shots, "seed": 0, "split_file": str(world.split_file),
                "val_per_class": 1, "max_side": MAX_SIDE, "batch_size": batch_size, "num_workers": settings.num_workers,
            },
        },
    }


def ours(world: World, settings: Settings, work: Path, batch_size: int) -> Run:
    run_dir = work / f"run{next(_runs)}"
    return run_fresh_predict(ours_config(world, settings, run_dir, batch_size), run_dir, len(world.train), "caption")


def variants(world: World, settings: Settings, work: Path) -> dict[str, tuple[str, bool, Any]]:
    """name -> (description, is the reference, callable returning a `Run`)."""
    dtype = str(model_dtype(settings)).removeprefix("torch.")
    return {
        "reference": (f"transformers generate, one image and question per call, {dtype}", True,
                      lambda: reference(world, settings)),
        "bob_same": (f"bob, batch 1, {dtype}", False, lambda: ours(world, settings, work, batch_size=1)),
        "bob_default": (f"bob, batch {settings.caption_batch}, {dtype}", False,
                        lambda: ours(world, settings, work, batch_size=settings.caption_batch)),
    }
