"""The toy prior's training step (stage B) on this machine's CPU: eager against torch.compile.

    python -m benchmarks.toy_prior_step [--threads 1] [--repeats 4] [--steps 4] [--out runs/benchmarks/toy_prior_step.json]

Pretraining the prior is bounded by CPU time (docs/toyworld.md), so a faster step is more steps
in the same budget. Each variant is `ToyPriorPretraining.training_step` with the shipped recipe
(`configs/toyworld/prior.yaml`: its architecture, batch 32 of 32x32x4 latents, broad-world
captions), its backward pass and an AdamW update, on the same random weights; the variants alternate, and the medians of
steps per CPU-second and per wall-clock second are printed with their paired ratio.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.timing import Clock, Run, alternate  # noqa: E402
from bob.atomic import atomic_write_json  # noqa: E402


def shipped_recipe() -> tuple[dict, int]:
    """Stage B's model arguments and batch size as `configs/toyworld/prior.yaml` gives them."""
    from bob.toyworld.pretrain import CONFIGS

    config = yaml.safe_load((CONFIGS / "prior.yaml").read_text(encoding="utf-8"))
    return config["model"]["init_args"], config["data"]["init_args"]["batch_size"]


def shipped_module(init_args: dict):
    """The stage-B module of the shipped recipe, on the shipped prior's VAE (nothing is exported)."""
    from bob.toyworld.pipeline import default_prior
    from bob.toyworld.pretrain_prior import ToyPriorPretraining

    module = ToyPriorPretraining(**{**init_args, "vae": str(default_prior() / "vae")})
    module.configure_model()
    return module


def batch(size: int) -> dict:
    from bob.toyworld.broad_world import broad_scenes
    from bob.toyworld.captions import broad_caption
    from bob.toyworld.render import IMAGE_SIZE
    from bob.toyworld.round_trip import render_tensor

    scenes = broad_scenes(size, 0, 256)
    rng = random.Random(0)
    return {
        "image": render_tensor(scenes), "mask": torch.ones(size, 1, IMAGE_SIZE, IMAGE_SIZE),
        "caption": [broad_caption(scene, rng, 0.0) for scene in scenes], "index": torch.arange(size),
    }


def stepper(module, data: dict, compiled: bool, steps: int):
    module = copy.deepcopy(module)
    if compiled:
        module.unet = torch.compile(module.unet)
    optimizer = module.configure_optimizers()["optimizer"]

    def step() -> None:
        loss = module.training_step(data, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # compiles (or warms up) outside the clock
    step()

    def run() -> Run:
        clock = Clock()
        clock.mark(0)
        for _ in range(steps):
            step()
            clock.mark(1)
        return clock.run(warmup=1)

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per repetition")
    parser.add_argument("--out", default="runs/benchmarks/toy_prior_step.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    init_args, batch_size = shipped_recipe()
    module, data = shipped_module(init_args), batch(batch_size)
    variants = {"eager": stepper(module, data, False, args.steps), "torch.compile": stepper(module, data, True, args.steps)}
    runs = alternate(variants, args.repeats, on_run=lambda name, run: print(
        f"{name}: {run.throughput:.3f} steps/s, {run.cpu_throughput:.3f} steps per CPU-second", flush=True))
    result = {
        "threads": args.threads, "batch": batch_size, "torch": torch.__version__,
        "median_steps_per_second": {name: statistics.median(r.throughput for r in rs) for name, rs in runs.items()},
        "median_steps_per_cpu_second": {name: statistics.median(r.cpu_throughput for r in rs) for name, rs in runs.items()},
        "paired_ratio_compiled_over_eager_cpu_time": statistics.median(
            c.cpu_throughput / e.cpu_throughput for c, e in zip(runs["torch.compile"], runs["eager"], strict=True)),
    }
    atomic_write_json(Path(args.out), result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
