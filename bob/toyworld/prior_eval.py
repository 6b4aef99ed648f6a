"""`python -m bob.toyworld.prior_eval`: how well a toy prior follows the background its prompt asks for."""

from __future__ import annotations

import argparse
import json
import os
import random

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bob.toyworld.demo

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bob.toyworld.captions import DESCRIPTOR  # noqa: E402
from bob.toyworld.contexts import BACKGROUNDS, POSES  # noqa: E402
from bob.toyworld.meter import ContextMeter  # noqa: E402
from bob.toyworld.pipeline import default_prior  # noqa: E402
from bob.toyworld.variants import FAMILY_OF_WING  # noqa: E402


def background_following(prior: str, images_per_background: int = 8, steps: int = 20, guidance: float = 3.0, seed: int = 0) -> dict:
    """Share of images whose measured background is the prompted one (chance 1/8), and the
    entropy of the backgrounds drawn for context-free prompts (3 bits = uniform over 8)."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(prior, safety_checker=None, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    rng = random.Random(seed)
    families = sorted(set(FAMILY_OF_WING.values()))
    prompts, wanted = [], []
    for b, background in enumerate(BACKGROUNDS):
        for _ in range(images_per_background):
            pose = POSES[rng.randrange(len(POSES))]
            prompts.append(
                f"an {DESCRIPTOR} photo of a {rng.choice(families)} in the {rng.choice(background.phrasings)} "
                f"background with the {rng.choice(pose.phrasings)} pose"
            )
            wanted.append(b)
    free = [f"an {DESCRIPTOR} photo of a {rng.choice(families)}" for _ in range(len(prompts))]
    generator = torch.Generator().manual_seed(seed)
    images = pipeline(prompts + free, num_inference_steps=steps, guidance_scale=guidance, generator=generator).images
    meter = ContextMeter()
    measured = meter.predict(images)
    followed = float(np.mean(measured[: len(prompts)] == np.array(wanted)))
    counts = np.bincount(measured[len(prompts) :], minlength=len(BACKGROUNDS)) / len(free)
    entropy = float(-(counts[counts > 0] * np.log2(counts[counts > 0])).sum())
    return {"background_follows_prompt": followed, "context_free_background_entropy_bits": entropy,
            "images": len(images), "steps": steps, "guidance_scale": guidance}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prior", default=str(default_prior()))
    parser.add_argument("--images-per-background", type=int, default=8)
    args = parser.parse_args(argv)
    print(json.dumps(background_following(args.prior, args.images_per_background), indent=2))


if __name__ == "__main__":
    main()
