"""The toy prior's training step (stage B) on this machine's CPU: eager against torch.compile.

    python -m benchmarks.toy_prior_step [--threads 1] [--repeats 4] [--steps 4] [--out runs/benchmarks/toy_prior_step.json]

Pretraining the prior is bounded by CPU time (docs/toyworld.md), so a faster step is more steps
in the same budget. Each variant is `ToyPriorPretraining.training_step` at the shipped recipe's
shapes (batch 32 of 32x32x4 latents, captions of the broad world, the step's backward pass and
an AdamW update), on the same random weights; the variants alternate, and the medians of
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

from benchmarks.timing import Clock, Run, alternate  # noqa: E402
from bob.atomic import atomic_write_json  # noqa: E402

BATCH = 32


def shipped_module():
    """The stage-B module with the shipped config's architecture, on the shipped prior's VAE."""
    from bob.toyworld.pipeline import default_prior
    from bob.toyworld.pretrain_prior import ToyPriorPretraining

    module = ToyPriorPretraining(
        vae=str(default_prior() / "vae"), unet_channels=(32, 64, 128, 128), plain_levels=2,
        prediction_type="v_prediction", zero_terminal_snr=True, min_snr_gamma=0.0,
    )
    module.configure_model()
    return module


def batch() -> dict:
    from bob.toyworld.broad_world import broad_scenes
    from bob.toyworld.captions import broad_caption
    from bob.toyworld.round_trip import render_tensor

    scenes = broad_scenes(BATCH, 0, 256)
    rng = random.Random(0)
    return {
        "image": render_tensor(scenes), "mask": torch.ones(BATCH, 1, 64, 64),
        "caption": [broad_caption(scene, rng, 0.0) for scene in scenes], "index": torch.arange(BATCH),
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
    module, data = shipped_module(), batch()
    variants = {"eager": stepper(module, data, False, args.steps), "torch.compile": stepper(module, data, True, args.steps)}
    runs = alternate(variants, args.repeats, on_run=lambda name, run: print(
        f"{name}: {run.throughput:.3f} steps/s, {run.cpu_throughput:.3f} steps per CPU-second", flush=True))
    result = {
        "threads": args.threads, "batch": BATCH, "torch": torch.__version__,
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
