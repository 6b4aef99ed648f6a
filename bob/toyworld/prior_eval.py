"""`python -m bob.toyworld.prior_eval`: how well a toy prior follows the background, and the model name, its prompt asks for."""

from __future__ import annotations

import argparse
import json
import os
import random

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bob.toyworld.demo

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bob.toyworld.contexts import BACKGROUNDS, POSES  # noqa: E402
from bob.toyworld.meter import ContextMeter  # noqa: E402
from bob.toyworld.name_reading import class_prompt  # noqa: E402
from bob.toyworld.pipeline import default_prior  # noqa: E402
from bob.toyworld.round_trip import random_scenes, render_tensor, vae_round_trip  # noqa: E402
from bob.toyworld.variants import FAMILY_OF_WING, PART_NAMES, Variant, broad_variants  # noqa: E402


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
                f"{class_prompt(rng.choice(families))} in the {rng.choice(background.phrasings)} "
                f"background with the {rng.choice(pose.phrasings)} pose"
            )
            wanted.append(b)
    free = [class_prompt(rng.choice(families)) for _ in range(len(prompts))]
    generator = torch.Generator().manual_seed(seed)
    images = pipeline(prompts + free, num_inference_steps=steps, guidance_scale=guidance, generator=generator).images
    meter = ContextMeter()
    measured = meter.predict(images)
    followed = float(np.mean(measured[: len(prompts)] == np.array(wanted)))
    counts = np.bincount(measured[len(prompts) :], minlength=len(BACKGROUNDS)) / len(free)
    entropy = float(-(counts[counts > 0] * np.log2(counts[counts > 0])).sum())
    return {"background_follows_prompt": followed, "context_free_background_entropy_bits": entropy,
            "images": len(images), "steps": steps, "guidance_scale": guidance}


def code_following(
    prior: str, checkpoint: str, split_file: str, variants: int = 64, images_per_variant: int = 4,
    steps: int = 20, guidance: float = 3.0, seed: int = 0,
) -> dict:
    """Whether the prior draws a broad-world variant from its model name alone ("an aircraft photo
    of a Korvan", the class-only prompt form): top-1 accuracy of the 256-way broad-world
    classifier that `python -m bob.toyworld.backbone` trains (its checkpoint, head included, and
    the split file naming its classes) on the generated images; chance is 1/256."""
    from diffusers import StableDiffusionPipeline

    class_names, network = broad_classifier(checkpoint, split_file)
    pipeline = StableDiffusionPipeline.from_pretrained(prior, safety_checker=None, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    chosen = random.Random(seed).sample(range(len(class_names)), variants)
    labels = [c for c in chosen for _ in range(images_per_variant)]
    prompts = [class_prompt(class_names[c]) for c in labels]
    predicted = network(_generate(pipeline, prompts, steps, guidance, seed)).argmax(1).numpy()
    with torch.no_grad():
        # The ceiling: the same classifier on renders of the same variants after a VAE round trip.
        variant_of = {v.name: v for v in broad_variants()}
        renders, round_trip = vae_round_trip(pipeline.vae, random_scenes([variant_of[class_names[c]] for c in labels], seed))
        on_renders = network(renders).argmax(1).numpy()
        on_round_trip = network(round_trip).argmax(1).numpy()
    truth = np.array(labels)
    by_label = [variant_of[name] for name in class_names]
    return {
        "code_follows_prompt": float(np.mean(predicted == truth)),
        "parts_follow_prompt": part_agreement([by_label[p] for p in predicted], [by_label[t] for t in truth], by_label),
        "classifier_on_renders": float(np.mean(on_renders == truth)),
        "classifier_on_vae_round_trip": float(np.mean(on_round_trip == truth)),
        # The ceiling per part: what the same classifier's picks share with round-tripped renders.
        "parts_on_vae_round_trip": part_agreement([by_label[p] for p in on_round_trip], [by_label[t] for t in truth], by_label),
        "code_chance": 1 / len(class_names), "code_images": len(labels), "code_variants": variants,
    }


def family_following(
    prior: str, checkpoint: str, split_file: str, images_per_family: int = 16, steps: int = 20,
    guidance: float = 3.0, seed: int = 0,
) -> dict:
    """Whether the prior draws the wing planform a family word asks for ("an aircraft photo of a
    fighter"): the share of images whose variant, as the broad-world classifier reads it, has the
    family's wing. Family words are in a fifth of the pretraining captions against a 1/256 share
    for each model name, so this separates "the aircraft is not conditioned at all" from "names
    are too rare to be bound"."""
    from diffusers import StableDiffusionPipeline

    class_names, network = broad_classifier(checkpoint, split_file)
    pipeline = StableDiffusionPipeline.from_pretrained(prior, safety_checker=None, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    wings = sorted(FAMILY_OF_WING)
    wanted = [w for w in wings for _ in range(images_per_family)]
    prompts = [class_prompt(FAMILY_OF_WING[w]) for w in wanted]
    predicted = network(_generate(pipeline, prompts, steps, guidance, seed)).argmax(1).numpy()
    wing_of = {v.name: v.wing for v in broad_variants()}
    drawn = [wing_of[class_names[p]] for p in predicted]
    return {"family_follows_prompt": float(np.mean([d == w for d, w in zip(drawn, wanted, strict=True)])),
            "family_chance": 1 / len(wings), "family_images": len(prompts)}


def broad_classifier(checkpoint: str, split_file: str) -> tuple[list[str], torch.nn.Module]:
    """The class names and the network of the 256-way broad-world classifier that
    `python -m bob.toyworld.backbone` trains; the network takes images in [0, 1]."""
    import timm

    class_names = json.loads(open(split_file, encoding="utf-8").read())["class_names"]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    network = timm.create_model("test_resnet", pretrained=False, num_classes=len(class_names))
    network.load_state_dict({k.removeprefix("backbone.net."): v for k, v in state.items() if k.startswith("backbone.net.")})
    network.eval()
    mean = torch.tensor(network.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(network.pretrained_cfg["std"]).view(1, 3, 1, 1)
    return class_names, torch.nn.Sequential(_Normalize(mean, std), network).requires_grad_(False)


class _Normalize(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


def _generate(pipeline, prompts: list[str], steps: int, guidance: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    pixels = []
    for start in range(0, len(prompts), 64):
        batch = pipeline(prompts[start:start + 64], num_inference_steps=steps, guidance_scale=guidance,
                         generator=generator, output_type="pt").images
        pixels.append(batch.clamp(0, 1))
    return torch.cat(pixels)


@torch.no_grad()
def name_conditioning(prior: str, images: int = 96, timesteps: tuple[int, ...] = (200, 400, 600, 800, 950), seed: int = 5) -> dict:
    """Whether the prior's denoiser uses the model name: its training loss on broad-world renders
    captioned "an aircraft photo of a <name> in the <background> background" with the true name
    and with another render's name, same noise. Equal losses mean the name is ignored."""
    from diffusers import StableDiffusionPipeline

    from bob.toyworld.broad_world import broad_scenes
    from bob.toyworld.name_reading import denoising_losses, encode_latents, encode_prompts

    pipeline = StableDiffusionPipeline.from_pretrained(prior, safety_checker=None, dtype=torch.float32)
    scenes = broad_scenes(images, seed, len(broad_variants()))
    pixels = render_tensor(scenes)
    latents = encode_latents(pipeline, pixels, batch_size=images)
    others = random.Random(seed).sample(range(images), images)

    def embed(names: list[str]):
        return encode_prompts(pipeline, [
            f"{class_prompt(name)} in the {BACKGROUNDS[s.background].phrasings[0]} background"
            for name, s in zip(names, scenes, strict=True)
        ])

    true = embed([s.variant.name for s in scenes])
    wrong = embed([scenes[i].variant.name for i in others])
    rows = {}
    for t in timesteps:
        losses = [denoising_losses(pipeline, latents, e, t, batch_size=images) for e in (true, wrong)]
        rows[str(t)] = {"true_name": float(losses[0].mean()), "other_name": float(losses[1].mean()),
                        "true_name_lower_share": float((losses[0] < losses[1]).float().mean())}
    return {"name_conditioning_loss": rows, "name_conditioning_images": images}


@torch.no_grad()
def background_reading(prior: str, images_per_background: int = 10, seed: int = 7,
                       timesteps: tuple[int, ...] = (300, 500, 700, 900)) -> dict:
    """The diffusion classifier of `bob.toyworld.name_reading` asked for the background instead of
    the name: broad-world renders of one family, read against "an aircraft photo of a <family> in
    the <background> background" for each background (chance 1/8). A prior that follows
    background prompts scores high here, so a name read at chance by the same measurement is the
    denoiser ignoring the name, not the measurement failing to see conditioning."""
    from diffusers import StableDiffusionPipeline

    from bob.toyworld.name_reading import diffusion_classifier_accuracy
    from bob.toyworld.render import Scene

    pipeline = StableDiffusionPipeline.from_pretrained(prior, safety_checker=None, dtype=torch.float32)
    family = sorted(set(FAMILY_OF_WING.values()))[0]
    variants = [v for v in broad_variants() if v.family == family]
    rng = random.Random(seed)
    scenes = [Scene(rng.choice(variants), b, rng.randrange(len(POSES)), seed * 100_000 + i)
              for i, b in enumerate(b for b in range(len(BACKGROUNDS)) for _ in range(images_per_background))]
    pixels = render_tensor(scenes)
    labels = torch.tensor([s.background for s in scenes])
    phrases = [background.phrasings[0] for background in BACKGROUNDS]
    result = diffusion_classifier_accuracy(pipeline, pixels, labels, phrases, timesteps, seed,
                                           prompt=lambda phrase: f"{class_prompt(family)} in the {phrase} background")
    return {"background_reading_by_diffusion_classifier": result}


@torch.no_grad()
def name_distinctness_by_kind(prior: str) -> dict:
    """How far apart the text encoder keeps the words a class-only prompt can name: the four family
    words, the broad world's model names (trained on) and the few-shot classes' names (never in a
    pretraining caption), each as `bob.toyworld.name_reading.name_distinctness`."""
    from diffusers import StableDiffusionPipeline

    from bob.toyworld.name_reading import name_distinctness
    from bob.toyworld.variants import FEWSHOT_VARIANTS

    pipeline = StableDiffusionPipeline.from_pretrained(prior, safety_checker=None, dtype=torch.float32)
    kinds = {"families": sorted(set(FAMILY_OF_WING.values())), "broad_names": [v.name for v in broad_variants()],
             "fewshot_names": [v.name for v in FEWSHOT_VARIANTS]}
    return {"name_distinctness": {kind: name_distinctness(pipeline, words) for kind, words in kinds.items()}}


def part_agreement(drawn: list[Variant], named: list[Variant], population: list[Variant]) -> dict:
    """Coarser than the variant: for each part (wing planform, engines, tail, wingtip, body and
    nose colour), the share of drawn variants (the classifier's picks) that have the named
    variant's value, and its chance: that two variants drawn uniformly from ``population`` (the
    classifier's classes) share it. A part can follow the name while the variant does not.
    ``most_drawn`` is the share of picks with the part's most frequent value: near 1, the
    classifier reads every image's part alike, and the share is the named variants' base rate."""
    rows = {}
    for part in PART_NAMES:
        shares = np.unique([getattr(v, part) for v in population], return_counts=True)[1] / len(population)
        drawn_counts = np.unique([getattr(v, part) for v in drawn], return_counts=True)[1]
        same = [getattr(d, part) == getattr(n, part) for d, n in zip(drawn, named, strict=True)]
        rows[part] = {"share": float(np.mean(same)), "chance": float((shares**2).sum()),
                      "most_drawn": float(drawn_counts.max() / len(drawn))}
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prior", default=str(default_prior()))
    parser.add_argument("--images-per-background", type=int, default=8)
    parser.add_argument("--broad-classifier", default=None,
                        help="checkpoint of `python -m bob.toyworld.backbone` (with its head): also measure code following")
    parser.add_argument("--broad-split", default="runs/toyworld/backbone_data/split.json",
                        help="the split file naming that classifier's classes")
    args = parser.parse_args(argv)
    results = background_following(args.prior, args.images_per_background)
    results.update(name_conditioning(args.prior))
    results.update(name_distinctness_by_kind(args.prior))
    results.update(background_reading(args.prior))
    if args.broad_classifier:
        results.update(family_following(args.prior, args.broad_classifier, args.broad_split))
        results.update(code_following(args.prior, args.broad_classifier, args.broad_split))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
