"""The toy prior's training step (stage B) on this machine's CPU: eager against torch.compile,
or the shipped recipe against the recipe with some of its settings changed.

    python -m benchmarks.toy_prior_step [--threads 1] [--repeats 4] [--steps 4] [--out runs/benchmarks/toy_prior_step.json]
    python -m benchmarks.toy_prior_step --set attention_head_width=32   # both eager

Pretraining the prior is bounded by CPU time (docs/toyworld.md), so a faster step is more steps
in the same budget. Each variant is `ToyPriorPretraining.training_step` with the shipped recipe
(`configs/toyworld/prior.yaml`: its architecture, batch 32 of 32x32x4 latents, broad-world
captions), its backward pass and an AdamW update, on the same random weights; the variants alternate, and the medians of
steps per CPU-second and per wall-clock second are printed with their paired ratio.
"""

from __future__ import annotations

import argparse
import copy
import inspect
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


def recipe_change(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of a stage-B init argument, the value read as YAML (``32``, ``false``, ``[32, 64]``)."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE, e.g. attention_head_width=32")
    return key, yaml.safe_load(value)


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
    parser.add_argument(
        "--set", dest="changes", type=recipe_change, action="append", default=[], metavar="KEY=VALUE",
        help="time the recipe with this stage-B argument changed against the shipped one, both eager (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    changed = dict(args.changes)
    if changed:
        from bob.toyworld.pretrain_prior import ToyPriorPretraining

        unknown = sorted(set(changed) - set(inspect.signature(ToyPriorPretraining).parameters))
        if unknown:
            parser.error(f"--set {', '.join(unknown)}: not arguments of ToyPriorPretraining")
    torch.manual_seed(0)
    init_args, batch_size = shipped_recipe()
    module, data = shipped_module(init_args), batch(batch_size)
    if changed:
        torch.manual_seed(0)
        label = ", ".join(f"{key}={value}" for key, value in changed.items())
        variants = {"shipped": stepper(module, data, False, args.steps),
                    label: stepper(shipped_module({**init_args, **changed}), data, False, args.steps)}
    else:
        variants = {"eager": stepper(module, data, False, args.steps), "torch.compile": stepper(module, data, True, args.steps)}
    first, second = variants
    runs = alternate(variants, args.repeats, on_run=lambda name, run: print(
        f"{name}: {run.throughput:.3f} steps/s, {run.cpu_throughput:.3f} steps per CPU-second", flush=True))
    result = {
        "threads": args.threads, "batch": batch_size, "torch": torch.__version__,
        "median_steps_per_second": {name: statistics.median(r.throughput for r in rs) for name, rs in runs.items()},
        "median_steps_per_cpu_second": {name: statistics.median(r.cpu_throughput for r in rs) for name, rs in runs.items()},
        # Steps per CPU-second of the second variant over the first's, repetition by repetition.
        "compared": f"{second} over {first}",
        "paired_ratio_cpu_time": statistics.median(
            b.cpu_throughput / a.cpu_throughput for a, b in zip(runs[first], runs[second], strict=True)),
    }
    atomic_write_json(Path(args.out), result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
