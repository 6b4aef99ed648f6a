"""`python -m bob.toyworld.demo`: BOB end to end on the toy world, real / DataDream / BOB (``--arms``
adds the within-class ablation), a report with grids."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

# Threads that spin while waiting steal the other thread's core on a busy 2-core machine;
# libgomp reads this when torch loads, so it is set before any import of torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from bob.console import input_errors_as_one_line  # noqa: E402
from bob.data.datasets.folders import ClassFolders  # noqa: E402
from bob.data.splits import FewShotSplit  # noqa: E402
from bob.toyworld.captions import DESCRIPTOR  # noqa: E402
from bob.toyworld.dataset import DATASET_NAME, SPLIT_FILE  # noqa: E402
from bob.toyworld.meter import ContextMeter  # noqa: E402
from bob.toyworld.pipeline import ALL_ARMS, PipelineSettings, ToyWorldPipeline, default_jobs, jobs_argument  # noqa: E402
from bob.toyworld.report import (  # noqa: E402
    dependence_table,
    measure_records,
    quality_table,
    results_table,
    synthetic_records,
    write_grids,
    write_report,
)


def measure_and_report(pipeline: ToyWorldPipeline, summary: dict[str, Any]) -> dict[str, Any]:
    """Context dependence of the real shots and of every synthetic set of the run, sample grids, report.md."""
    reader = ClassFolders(str(pipeline.data_root), descriptor=DESCRIPTOR, name=DATASET_NAME)
    split = FewShotSplit.load(pipeline.data_root / SPLIT_FILE, reader)
    names = split.class_names
    sets = {"real": split.train}
    sets.update({arm: synthetic_records(pipeline.out / "synthetic" / arm, names) for arm in pipeline.synthetic_arms})
    meter = ContextMeter()
    dependence = {
        "real test images (reference)": measure_records(split.test, len(names), meter, "real test"),
        **{arm: measure_records(records, len(names), meter, arm) for arm, records in sets.items()},
    }
    grids = write_grids(pipeline.out, sets, names)
    write_report(pipeline.out, summary, dependence, grids)
    return dependence


def main(argv: list[str] | None = None) -> dict[str, Any]:
    defaults = PipelineSettings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="output folder (report.md, grids, every stage's output)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--bias", type=float, default=defaults.bias, help="share of each class's shots in its home background")
    parser.add_argument("--num-classes", type=int, default=defaults.num_classes)
    parser.add_argument("--images-per-class", type=int, default=defaults.images_per_class)
    parser.add_argument("--lora-steps", type=int, default=defaults.lora_steps)
    parser.add_argument("--classifier-epochs", type=int, default=defaults.classifier_epochs)
    parser.add_argument("--prior", default=None, help="diffusers folder of the text-to-image prior (default: the shipped one)")
    parser.add_argument(
        "--arms", nargs="+", choices=ALL_ARMS, default=list(defaults.arms),
        help="classifier arms to run; within_class is the paper's middle ablation (BOB's LoRA, own-class contexts)",
    )
    parser.add_argument(
        "--jobs", type=jobs_argument, default=default_jobs(),
        help="independent stages (the two LoRAs, the generations, the classifiers) run side by side, "
        "sharing the torch threads; 1 runs them one after another (default: %(default)s)",
    )
    parser.add_argument(
        "--tiny", action="store_true",
        help="the smallest run through every stage (about a minute on a CPU): checks an install; the sizes above are ignored",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        settings = PipelineSettings.tiny(seed=args.seed, bias=args.bias, arms=tuple(args.arms), prior=args.prior)
    else:
        settings = PipelineSettings(
            seed=args.seed, bias=args.bias, num_classes=args.num_classes, images_per_class=args.images_per_class,
            lora_steps=args.lora_steps, classifier_epochs=args.classifier_epochs, arms=tuple(args.arms), prior=args.prior,
        )
    started = time.monotonic()
    pipeline = ToyWorldPipeline(args.out, settings, jobs=args.jobs)
    summary = pipeline.run()
    dependence = measure_and_report(pipeline, summary)
    minutes = (time.monotonic() - started) / 60
    print("\n" + results_table(summary["classifier"], dependence))
    print("\n" + dependence_table(dependence))
    print("\n" + quality_table(summary["quality"]))
    print(f"\nreport: {Path(args.out) / 'report.md'}   ({minutes:.1f} min)")
    return {**summary, "dependence": dependence}


if __name__ == "__main__":
    with input_errors_as_one_line():
        main()
