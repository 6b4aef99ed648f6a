"""LoRA fine-tuning in fp32 against bf16-mixed on the toy world: loss curves, synthetic sets, step times.

    python benchmarks/lora_precision.py                      # 3 seeds, BOB arm; 53 min on the shared 2-core CPU
    python benchmarks/lora_precision.py --arms bob datadream # both generative arms (about twice as long)
    python benchmarks/lora_precision.py --seeds 0 --num-classes 4 --steps 6 --images-per-class 1 \
        --oracle-steps 5 --out /tmp/p                        # smoke run, about a minute

Per seed, one toy world (data and caption bank, `bob.toyworld.pipeline`). Then, per precision,
the toy world's LoRA recipe (`configs/toyworld/t2i.yaml`, or `t2i_datadream.yaml`) from the same
seed on the same shots, differing only in

- fp32: ``--trainer.precision=32-true --model.init_args.frozen_dtype=float32`` (the authors'
  release), and
- bf16: ``--trainer.precision=bf16-mixed --model.init_args.frozen_dtype=auto`` (bob's
  ``configs/t2i.yaml``: frozen UNet, VAE and text encoder stored in bfloat16, LoRA weights float32).

Each adapter then draws the same generation plan (same generation seed, sampling in fp32), and
the synthetic sets are measured as the toy world measures them: class fidelity by the class
oracle, home-background rate and NMI(class; background) by the context meter, per-class FID/KID
against the real test images by the quality stage (`configs/toyworld/quality.yaml`), and how far
each bf16 image lies from its fp32 twin. Timesteps, noise and batches come from
the same seeded generators in both runs, so the losses are paired step by step.
Writes results.json (per-seed numbers, loss curves, machine) and results.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python benchmarks/lora_precision.py` puts only benchmarks/ on the path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bob.toyworld.demo
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.report import machine  # noqa: E402
from benchmarks.timing import ThroughputClock  # noqa: E402
from bob.atomic import atomic_write_json, atomic_write_text  # noqa: E402

#: precision name -> the overrides of the LoRA stage that select it.
PRECISIONS = {
    "fp32": ["--trainer.precision=32-true", "--model.init_args.frozen_dtype=float32"],
    "bf16": ["--trainer.precision=bf16-mixed", "--model.init_args.frozen_dtype=auto"],
}
ARM_CHOICES = ("bob", "datadream")


class StepRecorder(ThroughputClock):
    """`ThroughputClock` that also keeps every step's training loss (the value logged as
    ``train/loss``) and writes losses and clock marks to ``path`` when fitting ends."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        marks = self.clock.marks
        atomic_write_json(self.path, {
            "loss": self.losses,
            "wall": [m[0] - marks[0][0] for m in marks],
            "cpu": [m[1] - marks[0][1] for m in marks],
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
        })


def _config_callbacks(config: Path) -> list[Any]:
    """The trainer callbacks a stage config lists."""
    return yaml.safe_load(config.read_text(encoding="utf-8"))["trainer"].get("callbacks") or []


def _mean_std(values: list[float], digits: int = 3, scale: float = 1.0) -> str:
    values = [scale * v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def step_times(record: dict[str, Any], skip: int) -> dict[str, float]:
    """Median and mean wall and CPU seconds per step after the first ``skip`` steps (the epoch
    that fills the latent cache)."""
    wall, cpu = np.diff(record["wall"]), np.diff(record["cpu"])
    skip = min(max(skip - 1, 0), len(wall) - 1)
    wall, cpu = wall[skip:], cpu[skip:]
    return {"wall_median": float(np.median(wall)), "wall_mean": float(wall.mean()),
            "cpu_median": float(np.median(cpu)), "cpu_mean": float(cpu.mean())}


def loss_summary(losses: dict[str, list[float]], window: int) -> dict[str, Any]:
    """Final-window mean loss per precision and the paired per-step difference bf16 - fp32."""
    fp32, bf16 = np.asarray(losses["fp32"]), np.asarray(losses["bf16"])
    diff = bf16 - fp32
    return {
        "final_mean_fp32": float(fp32[-window:].mean()),
        "final_mean_bf16": float(bf16[-window:].mean()),
        "final_mean_diff": float(diff[-window:].mean()),
        "mean_diff": float(diff.mean()),
        "mean_abs_diff": float(np.abs(diff).mean()),
        "mean_abs_rel_diff": float(np.mean(np.abs(diff) / np.maximum(fp32, 1e-12))),
        "first_step_diff": float(diff[0]),
        "window": window,
    }


def _pixels(records: list[Any]) -> dict[str, np.ndarray]:
    """Every image of a synthetic set as uint8 HWC, by sample id (its plan item)."""
    out = {}
    for record in records:
        with Image.open(record.path) as image:
            out[record.sample_id] = np.asarray(image.convert("RGB"))
    return out


def class_fidelity(records: list[Any], oracle: Any) -> float:
    """Share of a synthetic set's images the class oracle reads as their intended class: the
    measure of `bob.toyworld.science.class_fidelity`, which reads both arms' folders at once."""
    pixels = _pixels(records)
    predicted = oracle.predict([pixels[r.sample_id] for r in records])
    return float(np.mean(predicted == np.array([r.label for r in records])))


def quality(pipeline: Any, arm: str) -> dict[str, Any]:
    """`ToyWorldPipeline.quality` without its BOB-against-DataDream comparison (a one-arm run has
    no DataDream set): the same stage, config and overrides otherwise."""
    from bob.toyworld.pipeline import QUALITY_KEYS, default_backbone

    folder = pipeline.out / "synthetic" / arm
    cli = pipeline._run(f"quality_{arm}", "test", "quality.yaml", [
        f"--data.init_args.synthetic={folder}",
        f"--model.init_args.extractor.init_args.weights_file={default_backbone()}",
        f"--model.init_args.feature_cache={pipeline.out / 'quality_cache'}",
    ])
    report = json.loads((folder / f"{cli.model.report_name}.json").read_text(encoding="utf-8"))
    return {key: report["overall"].get(key) for key in QUALITY_KEYS}


def paired_images(fp32: list[Any], bf16: list[Any], oracle: Any, meter: Any) -> dict[str, float]:
    """How far each bf16 image lies from the fp32 image of the same plan item (same prompt, same
    seed), against the distance between two different fp32 images; and how often the class oracle
    and the context meter read the twins alike."""
    a, b = _pixels(fp32), _pixels(bf16)
    keys = sorted(a.keys() & b.keys())
    if len(keys) != len(a) or len(keys) != len(b):
        raise RuntimeError(f"the two synthetic sets differ in their plan items ({len(a)} and {len(b)} images, {len(keys)} shared)")
    first, second = [a[k] for k in keys], [b[k] for k in keys]

    def mad(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.abs(x.astype(np.float32) - y.astype(np.float32)).mean() / 255.0)

    shifted = first[1:] + first[:1]
    n = len(keys)
    classes, backgrounds = oracle.predict(first + second), meter.predict(first + second)
    return {
        "pixel_mad_paired": float(np.mean([mad(x, y) for x, y in zip(first, second, strict=True)])),
        "pixel_mad_unpaired_fp32": float(np.mean([mad(x, y) for x, y in zip(first, shifted, strict=True)])) if n > 1 else None,
        "oracle_agreement": float(np.mean(classes[:n] == classes[n:])),
        "background_agreement": float(np.mean(backgrounds[:n] == backgrounds[n:])),
    }


def run_seed(seed: int, args: argparse.Namespace, oracle: Any, meter: Any) -> dict[str, Any]:
    from bob.toyworld.pipeline import _STAGE_CONFIGS, PipelineSettings, ToyWorldPipeline
    from bob.toyworld.report import measure_records, synthetic_records
    from bob.toyworld.science import _class_names

    base = args.out / f"seed{seed}"
    settings = PipelineSettings(
        seed=seed, lora_steps=args.steps, images_per_class=args.images_per_class, num_classes=args.num_classes,
    )
    world = ToyWorldPipeline(base, settings)
    base.mkdir(parents=True, exist_ok=True)
    world.data()
    world.captions()
    names = _class_names(world)
    # Alternate which precision runs first, so drifting load on a shared machine favours neither.
    order = list(PRECISIONS) if args.seeds.index(seed) % 2 == 0 else list(PRECISIONS)[::-1]
    result: dict[str, Any] = {"order": order, "precisions": {}}
    synthetic: dict[str, dict[str, list[Any]]] = {}
    for precision in order:
        folder = base / precision
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for shared in ("data", "captions"):  # the very same shots and caption bank in both runs
            (folder / shared).symlink_to(Path("..") / shared, target_is_directory=True)
        extra = {}
        for arm in args.arms:
            clock = {"class_path": "benchmarks.lora_precision.StepRecorder",
                     "init_args": {"path": str(folder / f"steps_{arm}.json")}}
            # First in the list: the pipeline's `--trainer.callbacks.init_args.dirpath` sets the last one.
            callbacks = [clock, *_config_callbacks(world.configs / _STAGE_CONFIGS[arm][0])]
            extra[f"lora_{arm}"] = [
                *PRECISIONS[precision], "--trainer.log_every_n_steps=1", f"--trainer.callbacks={json.dumps(callbacks)}",
            ]
        pipeline = ToyWorldPipeline(folder, replace(settings, extra=extra))
        per_arm: dict[str, Any] = {}
        for arm in args.arms:
            pipeline.lora(arm)
            pipeline.generate(arm)
            steps = json.loads((folder / f"steps_{arm}.json").read_text(encoding="utf-8"))
            records = synthetic_records(folder / "synthetic" / arm, names)
            synthetic.setdefault(arm, {})[precision] = records
            dependence = measure_records(records, len(names), meter, f"seed {seed} {precision} {arm}")
            per_arm[arm] = {
                "loss": steps["loss"],
                "accumulate_grad_batches": steps["accumulate_grad_batches"],
                "time": step_times(steps, skip=args.timing_skip),
                "stage_seconds": {stage: pipeline.timings[f"{stage}_{arm}"] for stage in ("lora", "generate")},
                "class_fidelity": class_fidelity(records, oracle),
                "home_rate": dependence["home_rate"],
                "nmi": dependence["nmi"],
                "nmi_null": dependence["nmi_null"],
                "cramers_v": dependence["cramers_v"],
                "quality": quality(pipeline, arm),
            }
        result["precisions"][precision] = per_arm
    result["compare"] = {}
    for arm in args.arms:
        losses = {p: result["precisions"][p][arm]["loss"] for p in PRECISIONS}
        window = max(1, min(args.window, args.steps))
        result["compare"][arm] = {
            "loss": loss_summary(losses, window),
            "images": paired_images(synthetic[arm]["fp32"], synthetic[arm]["bf16"], oracle, meter),
        }
    return result


ROWS = (
    # label, where, key, digits, scale
    ("final-window mean train/loss", "loss", "final_mean", 4, 1.0),
    ("class fidelity %", "arm", "class_fidelity", 1, 100.0),
    ("home-background rate", "arm", "home_rate", 3, 1.0),
    ("NMI(class; background)", "arm", "nmi", 3, 1.0),
    ("per-class FID, mean", "quality", "fid_mean", 2, 1.0),
    ("per-class KID, mean", "quality", "kid_mean", 3, 1.0),
    ("wall s/step (median)", "time", "wall_median", 3, 1.0),
    ("CPU s/step (median)", "time", "cpu_median", 3, 1.0),
)


def _value(run: dict[str, Any], precision: str, arm: str, where: str, key: str) -> float | None:
    if where == "loss":
        return run["compare"][arm]["loss"][f"{key}_{precision}"]
    values = run["precisions"][precision][arm]
    if where == "quality":
        return None if values["quality"] is None else values["quality"][key]
    if where == "time":
        return values["time"][key]
    return values[key]


def markdown(result: dict[str, Any]) -> str:
    """Per arm: every measure per seed and precision, mean ± sample std, and the paired differences."""
    runs, seeds = result["runs"], sorted(result["runs"], key=int)
    lines = [f"Seeds {', '.join(seeds)}; mean ± sample std over seeds; per-seed values fp32 / bf16.", ""]
    for arm in result["arms"]:
        lines += [f"### {arm}", "", "| measure | fp32 | bf16 | bf16 − fp32 | per seed (fp32 / bf16) |", "|---|---|---|---|---|"]
        for label, where, key, digits, scale in ROWS:
            cells = {p: [_value(runs[s], p, arm, where, key) for s in seeds] for p in PRECISIONS}
            if all(v is None for v in cells["fp32"]):
                continue
            diffs = [b - a for a, b in zip(cells["fp32"], cells["bf16"], strict=True)]
            per_seed = "; ".join(
                f"{s}: {scale * a:.{digits}f} / {scale * b:.{digits}f}" for s, a, b in zip(seeds, cells["fp32"], cells["bf16"], strict=True)
            )
            lines.append(
                f"| {label} | {_mean_std(cells['fp32'], digits, scale)} | {_mean_std(cells['bf16'], digits, scale)} | "
                f"{_mean_std(diffs, digits, scale)} | {per_seed} |"
            )
        lines += ["", "| paired (same seed, same data, same plan) | mean ± std | per seed |", "|---|---|---|"]
        paired_rows = [
            ("train/loss, bf16 − fp32, all steps", "loss", "mean_diff", 6, 1.0),
            ("train/loss, bf16 − fp32, final window", "loss", "final_mean_diff", 6, 1.0),
            ("train/loss, mean abs per-step diff", "loss", "mean_abs_diff", 6, 1.0),
            ("train/loss, mean abs per-step diff, relative %", "loss", "mean_abs_rel_diff", 3, 100.0),
            ("train/loss, diff at step 1 (before any update)", "loss", "first_step_diff", 6, 1.0),
            ("pixel MAD, bf16 image vs its fp32 twin", "images", "pixel_mad_paired", 5, 1.0),
            ("pixel MAD, two different fp32 images (scale)", "images", "pixel_mad_unpaired_fp32", 5, 1.0),
            ("class oracle reads the twins alike %", "images", "oracle_agreement", 1, 100.0),
            ("context meter reads the twins alike %", "images", "background_agreement", 1, 100.0),
        ]
        for label, where, key, digits, scale in paired_rows:
            values = [runs[s]["compare"][arm][where][key] for s in seeds]
            per_seed = "; ".join(f"{s}: {scale * v:.{digits}f}" for s, v in zip(seeds, values, strict=True))
            lines.append(f"| {label} | {_mean_std(values, digits, scale)} | {per_seed} |")
        lines.append("")
    settings = result["settings"]
    lines += [
        f"{settings['steps']} LoRA steps (batch 16, the toy recipe otherwise), {settings['images_per_class']} images per "
        f"class × {settings['num_classes']} classes; final window = last {settings['window']} steps; step times skip the "
        f"first {settings['timing_skip']} steps (latent-cache epoch). {result['machine']['cpu']}, "
        f"{result['machine']['cpu_count']} cores, {result['torch_threads']} torch thread(s), load average "
        f"{result['load_before']} before, {result['load_after']} after. CPU bf16 speed says nothing about GPU speed.",
        "",
        f"Command: `{result['machine']['command']}`",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200, help="LoRA optimizer steps per run (the demo: 300)")
    parser.add_argument("--images-per-class", type=int, default=15, help="synthetic images per class (the demo: 30)")
    parser.add_argument("--num-classes", type=int, default=16)
    parser.add_argument("--arms", nargs="+", choices=ARM_CHOICES, default=["bob"],
                        help="generative arms: bob (context prompts), datadream (class-only prompts)")
    parser.add_argument("--window", type=int, default=50, help="steps of the final loss window")
    parser.add_argument("--timing-skip", type=int, default=5, help="first steps left out of step times (latent-cache epoch)")
    parser.add_argument("--oracle-steps", type=int, default=600, help="training steps of the class oracle (its default)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("runs/lora_precision"))
    args = parser.parse_args(argv)
    args.arms = [arm for arm in ARM_CHOICES if arm in args.arms]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from bob.toyworld.meter import ContextMeter
    from bob.toyworld.oracle import ClassOracle

    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    oracle, meter = ClassOracle(num_classes=args.num_classes, steps=args.oracle_steps), ContextMeter()
    result: dict[str, Any] = {
        "settings": {"steps": args.steps, "images_per_class": args.images_per_class, "num_classes": args.num_classes,
                     "window": max(1, min(args.window, args.steps)), "timing_skip": args.timing_skip},
        "arms": args.arms, "precisions": PRECISIONS, "machine": machine(), "torch_threads": torch.get_num_threads(),
        "load_before": load_before, "oracle_render_accuracy": oracle.render_accuracy, "runs": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        result["runs"][str(seed)] = run_seed(seed, args, oracle, meter)
        result["load_after"] = [round(x, 2) for x in os.getloadavg()]
        result["minutes"] = round((time.monotonic() - started) / 60, 1)
        atomic_write_json(args.out / "results.json", result)
    table = markdown(result)
    atomic_write_text(args.out / "results.md", table)
    print("\n" + table)
    print(f"({result['minutes']} min; {args.out / 'results.json'})")
    return result


if __name__ == "__main__":
    main()
