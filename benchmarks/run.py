"""Time every stage of bob against a plain reference loop on the same models, data and steps.

    python benchmarks/run.py                                   # tiny models on the CPU, a few minutes
    python benchmarks/run.py --stages lora,generation --repeats 3
    python benchmarks/run.py --size paper --device cuda        # SD 2.1-base, ResNet-50, Qwen2.5-VL-7B
    python benchmarks/run.py --models none                     # without the SD-XL and SD 3.5 rows

Variants of one stage alternate within one run (order rotated each repetition); the table gives
the median throughput, its spread, and the median of the paired ratios to the reference.
The LoRA and generation stages also time bob's defaults on SD-XL and SD 3.5 models of the same
size (``--models``); the reference loops are SD 2.1's, so those rows have no ratio.
Writes results.json and results.md into --output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python benchmarks/run.py` puts only benchmarks/ on the path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from benchmarks import memory, report  # noqa: E402
from benchmarks.architectures import MODELS, SIZES, architectures  # noqa: E402
from benchmarks.common import Settings, quiet_logs  # noqa: E402
from benchmarks.timing import Run, VariantResult, alternate  # noqa: E402
from benchmarks.world import World, build_world  # noqa: E402

STAGES = ("lora", "generation", "classifier", "captioning")
#: Stages that also time bob on the other Stable Diffusion models (``--models``): their ``bob_default``.
MODEL_STAGES = ("lora", "generation")
#: Per size: benchmark settings, and the world (classes, shots, images) they run on.
SIZE_SETTINGS = {
    "tiny": {"steps": 16, "lora_batch": 4, "classifier_batch": 16, "generation_steps": 20, "generation_batch": 8,
             "caption_batch": 4, "caption_tokens": 8},
    "paper": {"steps": 10, "lora_batch": 8, "classifier_batch": 64, "generation_steps": 50, "generation_batch": 16,
              "caption_batch": 8, "caption_tokens": 32, "reference_images": 8},
}
SIZE_WORLD = {
    "tiny": {"classes": 4, "shots": 4, "synthetic_per_class": 8, "generate_per_class": 6},
    "paper": {"classes": 4, "shots": 4, "synthetic_per_class": 32, "generate_per_class": 12},
}


def stage_variants(
    stage: str, worlds: dict[str, World], settings: Settings, work: Path
) -> dict[str, tuple[str, bool | None, Any]]:
    """name -> (description, is the reference, callable returning a `Run`): the stage's variants on SD 2.1's
    world, then ``bob_<model>``, bob's defaults on each other model's world, marked None (not the reference,
    and not compared with it: the reference runs another model)."""
    from benchmarks import stage_captioning, stage_classifier, stage_generation, stage_lora

    module = {"lora": stage_lora, "generation": stage_generation, "classifier": stage_classifier,
              "captioning": stage_captioning}[stage]
    found: dict[str, tuple[str, bool | None, Any]] = dict(module.variants(worlds["sd21"], settings, work / stage))
    if stage in MODEL_STAGES:
        for model, world in worlds.items():
            if model != "sd21":
                description, _, function = module.variants(world, settings, work / stage / model)["bob_default"]
                found[f"bob_{model}"] = (description, None, function)
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="model architectures (default: tiny)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    others = [m for m in MODELS if m != "sd21"]
    parser.add_argument("--models", default=",".join(others),
                        help=f"Stable Diffusion models besides SD 2.1 whose bob path the {' and '.join(MODEL_STAGES)} "
                        f"stages also time: a comma-separated subset of {','.join(others)}, or none")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repetitions per variant")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: 1 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per repetition")
    parser.add_argument("--generation-steps", type=int, default=None, help="sampler steps per image")
    parser.add_argument("--generation-batch", type=int, default=None, help="images per batch on bob's path")
    parser.add_argument("--num-workers", type=int, default=None, help="dataloader workers (default: 0 on CPU, 4 on GPU)")
    parser.add_argument("--precision", default=None,
                        help="trainer precision of bob's default variants (default: bf16-mixed on bf16 GPUs, else 32-true)")
    parser.add_argument("--compile", action="store_true", help="also time bob's LoRA step under torch.compile")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory probes")
    parser.add_argument("--work", type=Path, default=None, help="where the models and data are written (reused)")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmarks"), help="results.json / results.md folder")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # stage:variant, run by the memory probe
    return parser.parse_args(argv)


def make_settings(args: argparse.Namespace, device: str) -> Settings:
    values: dict[str, Any] = dict(SIZE_SETTINGS[args.size])
    overrides = {"steps": args.steps, "generation_steps": args.generation_steps, "generation_batch": args.generation_batch}
    values.update({k: v for k, v in overrides.items() if v is not None})
    workers = args.num_workers if args.num_workers is not None else (4 if device == "cuda" else 0)
    return Settings(device=device, num_workers=workers, compile=args.compile, precision=args.precision, **values)


def other_models(args: argparse.Namespace) -> list[str]:
    models = [] if args.models in ("", "none") else args.models.split(",")
    unknown = set(models) - set(MODELS) - {"sd21"}
    if unknown or "sd21" in models:
        raise SystemExit(f"--models takes a subset of {','.join(m for m in MODELS if m != 'sd21')} or none, "
                         f"got {args.models!r}")
    return models


def prepare(args: argparse.Namespace) -> tuple[Settings, dict[str, World], Path]:
    """Settings, and the worlds by model: SD 2.1's (every stage's), and those of ``--models`` when the
    LoRA or generation stage runs (each in its own folder: the paper-size models differ in resolution)."""
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads or (1 if device == "cpu" else torch.get_num_threads()))
    warnings.filterwarnings("ignore")
    quiet_logs()
    work = args.work or Path(tempfile.gettempdir()) / f"bob-benchmarks-{args.size}"
    stages = args.stages.split(",")
    diffusion = bool(set(MODEL_STAGES) & set(stages))
    worlds = {"sd21": build_world(
        work / "world", SIZES[args.size], with_diffusion=diffusion, with_captioner="captioning" in stages,
        **SIZE_WORLD[args.size],
    )}
    for model in other_models(args) if diffusion else []:
        worlds[model] = build_world(
            work / f"world-{model}", architectures(args.size, model), with_captioner=False, **SIZE_WORLD[args.size]
        )
    return make_settings(args, device), worlds, work


def probe(args: argparse.Namespace) -> None:
    """Run one variant once and print its peak memory (for `memory.probe_in_subprocess`)."""
    settings, worlds, work = prepare(args)
    stage, variant = args.probe.split(":")
    function = stage_variants(stage, worlds, settings, work / "probe")[variant][2]
    print(memory.MARKER + json.dumps(memory.peak_rss_increase(function)), flush=True)


def benchmark_stage(
    stage: str, worlds: dict[str, World], settings: Settings, work: Path, args: argparse.Namespace, argv: list[str]
) -> dict[str, VariantResult]:
    variants = stage_variants(stage, worlds, settings, work)
    results = {
        name: VariantResult(name, description, is_reference is True, compared=is_reference is not None)
        for name, (description, is_reference, _) in variants.items()
    }
    timed = {}
    for name, (_, _, function) in variants.items():
        timed[name] = memory.cuda_peak_tracker(results[name], function) if settings.device == "cuda" else function

    def show(name: str, run: Run) -> None:
        print(f"  {stage:<11} {name:<13} {run.throughput:9.3f} {report.UNITS[stage]} ({run.items} in {run.seconds:.2f} s, "
              f"{run.cpu_seconds:.2f} s CPU)", flush=True)

    for name, runs in alternate(timed, args.repeats, on_run=show).items():
        results[name].runs = runs
    if args.memory and settings.device != "cuda":
        for name, result in results.items():
            result.peak_memory_mib = memory.probe_in_subprocess(argv, f"{stage}:{name}")
            result.memory_kind = "RSS increase"
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.probe:
        probe(args)
        return {}
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    load_before = [round(x, 2) for x in os.getloadavg()]
    settings, worlds, work = prepare(args)
    print(f"bob benchmarks: size {args.size}, {settings.device}, {torch.get_num_threads()} thread(s), "
          f"{args.repeats} repetitions; models and data in {work}", flush=True)
    stages = {}
    for stage in args.stages.split(","):
        stages[stage] = report.stage_rows(stage, benchmark_stage(stage, worlds, settings, work, args, argv))
    result = {
        "size": args.size,
        "models": list(worlds),
        "repeats": args.repeats,
        "settings": dataclasses.asdict(settings),
        "architecture_notes": {model: world.size.notes for model, world in worlds.items()},
        "machine": report.machine(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "stages": stages,
        "targets": report.targets(stages, settings.device),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = report.markdown(result)
    (args.output / "results.md").write_text(table, encoding="utf-8")
    print(table)
    return result


if __name__ == "__main__":
    main()
