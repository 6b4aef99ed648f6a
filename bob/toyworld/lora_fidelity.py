"""`python -m bob.toyworld.lora_fidelity`: how well a class-only (DataDream) LoRA recipe draws the classes.

The toy world's third fidelity measurement: the demo's world and shots, DataDream's LoRA
fine-tuned with the demo's recipe plus any LightningCLI overrides given with ``--lora``, a
synthetic set drawn from class-only prompts, and then

- *class fidelity*: the share of the synthetic images the class oracle reads as their class
  (chance 1 / classes; its ceiling is the oracle's accuracy after a VAE round trip);
- the *home-background rate* of the synthetic set (the share drawn in their class's home
  background, chance 1/8): whether the LoRA carried the shots' bias into its samples;
- how the fine-tuned model reads the class names, before any sampling (`bob.toyworld.name_reading`):
  their distinctness in its text encoder, and the diffusion-classifier accuracy of its denoiser on
  the training shots (chance 1 / classes). Near-chance accuracy on the very images it was tuned
  on says the denoiser ignores the name, whatever the recipe.

It skips the classifiers, so one recipe costs a LoRA fit and a generation. Results go to
``<out>/lora_fidelity.json``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bob.toyworld.demo
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from bob.atomic import atomic_write_json  # noqa: E402
from bob.toyworld.dataset import SPLIT_FILE  # noqa: E402
from bob.toyworld.meter import ContextMeter  # noqa: E402
from bob.toyworld.name_reading import diffusion_classifier_accuracy, name_distinctness  # noqa: E402
from bob.toyworld.oracle import ClassOracle  # noqa: E402
from bob.toyworld.pipeline import PipelineSettings, ToyWorldPipeline  # noqa: E402
from bob.toyworld.report import measure_records, synthetic_records  # noqa: E402
from bob.toyworld.science import class_fidelity, class_names_of  # noqa: E402

ARM = "datadream"


def name_reading_after_tuning(pipeline: ToyWorldPipeline, names: list[str]) -> dict[str, Any]:
    """Name distinctness and the diffusion classifier on the training shots, base prior plus the LoRA."""
    import json

    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    folder = pipeline.out / "lora" / ARM
    tuned = StableDiffusionPipeline.from_pretrained(pipeline.prior, safety_checker=None, dtype=torch.float32)
    tuned.load_lora_weights(str(folder), weight_name="pytorch_lora_weights.safetensors")
    tuned.fuse_lora(lora_scale=1.0)
    shots = json.loads((pipeline.data_root / SPLIT_FILE).read_text(encoding="utf-8"))["train"]
    # The world renders at the size the LoRA was tuned at, so the shots are read as they are.
    pixels = torch.from_numpy(np.stack([
        np.asarray(Image.open(pipeline.data_root / path).convert("RGB"), np.float32) / 255
        for path, _ in shots
    ])).permute(0, 3, 1, 2)
    labels = torch.tensor([names.index(name) for _, name in shots])
    return {"name_distinctness": name_distinctness(tuned, names),
            "diffusion_classifier_on_shots": diffusion_classifier_accuracy(tuned, pixels, labels, names)}


def measure(pipeline: ToyWorldPipeline, oracle: ClassOracle) -> dict[str, Any]:
    """Fine-tunes DataDream's LoRA, draws its set and measures it (the world is rendered once per folder)."""
    if not (pipeline.data_root / SPLIT_FILE).is_file():
        pipeline.data()
    pipeline.lora(ARM)
    pipeline.generate(ARM)
    names = class_names_of(pipeline)
    records = synthetic_records(pipeline.out / "synthetic" / ARM, names)
    dependence = measure_records(records, len(names), ContextMeter(), ARM)
    return {
        "class_fidelity": class_fidelity(pipeline, oracle, names)[ARM],
        "chance": 1.0 / len(names),
        "oracle_on_renders": oracle.render_accuracy,
        "home_rate": dependence["home_rate"],
        **name_reading_after_tuning(pipeline, names),
        "images": len(records),
        "lora_overrides": pipeline.settings.extra.get(f"lora_{ARM}", []),
        "seconds": pipeline.timings,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    defaults = PipelineSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/lora_fidelity")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--lora-steps", type=int, default=defaults.lora_steps)
    parser.add_argument("--images-per-class", type=int, default=10)
    parser.add_argument("--prior", default=None, help="diffusers folder of the text-to-image prior (default: the shipped one)")
    parser.add_argument(
        "--lora", action="append", default=[], metavar="OVERRIDE",
        help="a LightningCLI override of the LoRA stage, e.g. --lora=--model.init_args.unet_rank=32 (repeatable)",
    )
    parser.add_argument("--tiny", action="store_true", help="the smallest sizes (checks an install; numbers mean nothing)")
    args = parser.parse_args(argv)
    common = dict(seed=args.seed, arms=("real", ARM), prior=args.prior, extra={f"lora_{ARM}": list(args.lora)})
    if args.tiny:
        settings = PipelineSettings.tiny(**common)
        oracle = ClassOracle(num_classes=settings.num_classes, renders_per_class=4, steps=2)
    else:
        settings = PipelineSettings(lora_steps=args.lora_steps, images_per_class=args.images_per_class, **common)
        oracle = ClassOracle(num_classes=settings.num_classes)
    pipeline = ToyWorldPipeline(args.out, settings)
    result = measure(pipeline, oracle)
    atomic_write_json(Path(args.out) / "lora_fidelity.json", result)
    print(
        f"class fidelity {result['class_fidelity']:.1%} of {result['images']} images (chance {result['chance']:.1%}, "
        f"oracle on renders {result['oracle_on_renders']:.1%}); home-background rate {result['home_rate']:.3f} "
        f"(chance 0.125); diffusion classifier on the shots "
        f"{result['diffusion_classifier_on_shots']['all_timesteps']:.1%}, name distinctness {result['name_distinctness']:.3f}; "
        f"written to {Path(args.out) / 'lora_fidelity.json'}"
    )
    return result


if __name__ == "__main__":
    main()
