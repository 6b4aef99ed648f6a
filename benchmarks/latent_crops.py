"""Random crops on the latent grid against random crops in pixels, measured on the toy world.

    python benchmarks/latent_crops.py [--seeds 0 1 2] [--out runs/benchmarks/latent_crops]

1. Latents: few-shot renders resized to 80 px and cropped to 64 at random; the VAE posterior
   mean of the pixel crop against the same window of the whole resized image's posterior
   (offsets on the latent grid), and both decoded against the pixel crop.
2. Training: per seed, BOB's toy LoRA with that resize-and-crop transform, once encoding every
   pixel crop (``latent_crops: false``) and once cropping cached latents (``latent_crops: true``);
   their loss curves, wall time, and the class fidelity of a synthetic set from each (the class
   oracle's accuracy on it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from bob.atomic import atomic_write_json  # noqa: E402

RESIZE, CROP = 80, 64
MODES = {"pixel crops": "false", "latent-grid crops": "true"}


def transform_override() -> str:
    transform = {"class_path": "torchvision.transforms.v2.Compose", "init_args": {"transforms": [
        {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": RESIZE, "antialias": True}},
        {"class_path": "torchvision.transforms.v2.RandomCrop", "init_args": {"size": CROP}},
    ]}}
    return "--data.init_args.train_transform=" + json.dumps(transform)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))


@torch.no_grad()
def latent_agreement(prior: str, images: int = 256, seed: int = 0) -> dict[str, float]:
    """How far a latent-grid crop is from encoding the pixel crop, in latents and in decoded pixels."""
    from bob.modules.diffusion.latent_crops import trim_to_grid
    from bob.toyworld.render import render
    from bob.toyworld.round_trip import load_prior_vae, random_scenes
    from bob.toyworld.variants import FEWSHOT_VARIANTS

    vae = load_prior_vae(prior)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    generator = torch.Generator().manual_seed(seed)
    scenes = random_scenes([FEWSHOT_VARIANTS[i % len(FEWSHOT_VARIANTS)] for i in range(images)], seed)
    resize = v2.Resize(RESIZE, antialias=True)
    rows = {"latent_rel_mse": [], "latent_rel_mse_interior": [], "latent_rel_mse_border": [],
            "psnr_pixel_crop_round_trip": [], "psnr_latent_grid_crop": []}
    crop = CROP // factor
    for scene in scenes:
        image = trim_to_grid(resize(torch.from_numpy(np.array(render(scene))).permute(2, 0, 1)), factor, CROP, "render")
        pixels = image.float().unsqueeze(0) / 255 * 2 - 1
        top = int(torch.randint(pixels.shape[-2] // factor - crop + 1, (), generator=generator))
        left = int(torch.randint(pixels.shape[-1] // factor - crop + 1, (), generator=generator))
        pixel_crop = pixels[..., top * factor:(top + crop) * factor, left * factor:(left + crop) * factor]
        direct = vae.encode(pixel_crop).latent_dist.mean
        windowed = vae.encode(pixels).latent_dist.mean[..., top:top + crop, left:left + crop]
        error = (direct - windowed) ** 2
        power = (direct ** 2).mean()
        ring = max(1, crop // 8)
        interior = error[..., ring:-ring, ring:-ring]
        border = torch.ones_like(error, dtype=torch.bool)
        border[..., ring:-ring, ring:-ring] = False
        rows["latent_rel_mse"].append(float(error.mean() / power))
        rows["latent_rel_mse_interior"].append(float(interior.mean() / power))
        rows["latent_rel_mse_border"].append(float(error[border].mean() / power))
        target = (pixel_crop + 1) / 2
        rows["psnr_pixel_crop_round_trip"].append(psnr(((vae.decode(direct).sample + 1) / 2).clamp(0, 1), target))
        rows["psnr_latent_grid_crop"].append(psnr(((vae.decode(windowed).sample + 1) / 2).clamp(0, 1), target))
    summary = {key: float(np.mean(values)) for key, values in rows.items()}
    summary.update(images=images, factor=factor, resize=RESIZE, crop=CROP)
    return summary


def loss_curve(log_dir: Path) -> list[tuple[int, float]]:
    rows = []
    for path in sorted(log_dir.rglob("metrics.csv")):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss_step"):
                    rows.append((int(row["step"]), float(row["train/loss_step"])))
    return rows


def train_and_sample(out: Path, seed: int, images_per_class: int, lora_steps: int) -> dict[str, dict]:
    from bob.toyworld.oracle import ClassOracle
    from bob.toyworld.pipeline import PipelineSettings, ToyWorldPipeline
    from bob.toyworld.science import class_fidelity

    oracle = ClassOracle()
    shared = ToyWorldPipeline(out, PipelineSettings(seed=seed, arms=("bob",)))
    shared.data()
    shared.captions()
    class_names = json.loads((shared.data_root / "split.json").read_text())["class_names"]
    results = {}
    for mode, flag in MODES.items():
        folder = out / mode.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for part in ("data", "captions"):
            if not (folder / part).exists():
                (folder / part).symlink_to(Path("..") / part)
        settings = PipelineSettings(
            seed=seed, arms=("bob",), images_per_class=images_per_class, lora_steps=lora_steps,
            extra={"lora_bob": [transform_override(), "--model.init_args.latent_cache_views=0",
                                f"--model.init_args.latent_crops={flag}"]},
        )
        pipeline = ToyWorldPipeline(folder, settings)
        started = time.monotonic()
        pipeline.lora("bob")
        lora_seconds = time.monotonic() - started
        pipeline.generate("bob")
        curve = loss_curve(folder / "logs" / "lora_bob")
        last = [loss for step, loss in curve if step >= lora_steps - 100]
        results[mode] = {
            "lora_seconds": round(lora_seconds, 1),
            "loss_last_100_steps": float(np.mean(last)) if last else None,
            "loss_curve": curve,
            "class_fidelity": class_fidelity(pipeline, oracle, class_names)["bob"],
        }
        print(mode, {k: v for k, v in results[mode].items() if k != "loss_curve"}, flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/benchmarks/latent_crops")
    parser.add_argument("--images-per-class", type=int, default=10)
    parser.add_argument("--lora-steps", type=int, default=300)
    parser.add_argument("--skip-training", action="store_true", help="only the latent comparison")
    args = parser.parse_args(argv)
    from bob.toyworld.pipeline import default_prior

    out = Path(args.out)
    report: dict = {"command": "python benchmarks/latent_crops.py " + " ".join(argv or []),
                    "latents": latent_agreement(str(default_prior()))}
    print(json.dumps(report["latents"], indent=2), flush=True)
    if not args.skip_training:
        report["seeds"] = {seed: train_and_sample(out / f"seed{seed}", seed, args.images_per_class, args.lora_steps)
                           for seed in args.seeds}
        for mode in MODES:
            for key in ("class_fidelity", "loss_last_100_steps", "lora_seconds"):
                values = [report["seeds"][s][mode][key] for s in args.seeds]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                print(f"{mode}: {key} {statistics.mean(values):.4f} ± {spread:.4f} (seeds {args.seeds}: {values})")
    atomic_write_json(out / "latent_crops.json", report)


if __name__ == "__main__":
    main()
