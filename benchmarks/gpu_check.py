"""GPU check: SD 2.1-base-sized LoRA steps and generation, the release's recipe against bob's, with model FLOP utilisation.

    python benchmarks/gpu_check.py                  # a CUDA machine, no downloads, about 15 minutes (estimated)
    python benchmarks/gpu_check.py --compile        # also bob's LoRA step under torch.compile (+1-2 minutes)
    python benchmarks/gpu_check.py --no-generation-options   # without the generation options (about 6 minutes)
    python benchmarks/gpu_check.py --size tiny --device cpu --repeats 1 --steps 2 --generation-steps 2
    python benchmarks/gpu_check.py --model sdxl     # SD-XL base 1.0 at 1024 px (sd35: SD 3.5 Medium) instead

Builds random-weight SD 2.1-base components from configs at 512 px and times, alternating:
LoRA fine-tuning in the release's recipe (plain loop, fp32, VAE and text encoder every step)
against bob's (same settings, then bf16 mixed precision with the latent cache; SDPA attention
on both, diffusers' default); generation at 50 steps and CFG 2 with the release's batch-1 fp16
pipeline loop against the same pipeline batched and bob's batched stage, and on CUDA that stage with each of
its speed options (compile_unet, channels_last, both, and VAE slicing off). Model FLOPs are counted on the meta device and
divided by the device's dense bf16 rate (data sheet, or --peak-tflops) and by the rate a large
bf16 matmul reaches here. Writes gpu_check.json and gpu_check.md into --output.

--model sdxl / sd35 times SD-XL base 1.0 or SD 3.5 Medium (random weights, 1024 px, bf16 on disk) with
their t2i overlays' LoRA settings; the plain LoRA loop is SD 2.1's, so there bob at the release's
settings (fp32, no caches) is the LoRA reference, while generation's reference is the model's own
diffusers pipeline, one image per call. The FLOPs and MFU are that model's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from benchmarks import flops, memory, report, stage_generation, stage_lora  # noqa: E402
from benchmarks.architectures import MODELS, SIZES, architectures  # noqa: E402
from benchmarks.common import Settings, quiet_logs  # noqa: E402
from benchmarks.recipes import lora_targets  # noqa: E402
from benchmarks.timing import Run, VariantResult, alternate, paired_ratio  # noqa: E402
from benchmarks.world import build_world  # noqa: E402

#: LoRA variants that skip the VAE after the first epoch (bob's latent cache).
CACHED = {"bob_default", "bob_compiled", "bob_latent_crops"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--model", choices=MODELS, default="sd21",
                        help="Stable Diffusion model: SD 2.1-base (the paper), SD-XL base 1.0 or SD 3.5 Medium")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repetitions per variant")
    parser.add_argument("--steps", type=int, default=10, help="timed LoRA steps per repetition (after one epoch)")
    parser.add_argument("--lora-batch", type=int, default=8, help="LoRA batch (the paper: 8 per GPU)")
    parser.add_argument("--generation-steps", type=int, default=50)
    parser.add_argument("--generation-batch", type=int, default=16, help="images per batch on bob's path")
    parser.add_argument("--reference-images", type=int, default=4, help="images the batch-1 reference makes")
    parser.add_argument("--compile", action="store_true", help="also time bob's LoRA step under torch.compile")
    parser.add_argument(
        "--generation-options", action=argparse.BooleanOptionalAction, default=None,
        help="also time bob's generation with compile_unet / channels_last on and VAE slicing off "
        "(default: on CUDA only; compiling on a CPU takes minutes)",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 TFLOP/s of this device")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: 1 on CPU)")
    parser.add_argument("--work", type=Path, default=None, help="where the models and data are written (reused)")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmarks/gpu_check"))
    return parser.parse_args(argv)


def timed(variants: dict[str, tuple[str, bool, Any]], device: str, repeats: int, label: str) -> dict[str, VariantResult]:
    results = {name: VariantResult(name, description, is_reference) for name, (description, is_reference, _) in variants.items()}
    functions = {
        name: memory.cuda_peak_tracker(results[name], function) if device == "cuda" else function
        for name, (_, _, function) in variants.items()
    }

    def show(name: str, run: Run) -> None:
        print(f"  {label:<10} {name:<13} {run.throughput:9.3f}/s ({run.items} in {run.seconds:.2f} s)", flush=True)

    for name, runs in alternate(functions, repeats, on_run=show).items():
        results[name].runs = runs
    return results


def utilisation(throughput: float, flops_per_item: float, peak_tflops: float | None) -> float | None:
    return throughput * flops_per_item / (peak_tflops * 1e12) if peak_tflops else None


def rows(results: dict[str, VariantResult], flops_of: dict[str, float], peak: float | None, matmul: float) -> list[dict[str, Any]]:
    reference = next(r for r in results.values() if r.reference)
    found = []
    for name, result in results.items():
        row = result.to_dict()
        row["vs_reference"] = 1.0 if result.reference else paired_ratio(result, reference)
        row["tflop_per_item"] = flops_of[name] / 1e12
        row["achieved_tflops"] = result.median * flops_of[name] / 1e12
        row["mfu_data_sheet"] = utilisation(result.median, flops_of[name], peak)
        row["mfu_measured_matmul"] = utilisation(result.median, flops_of[name], matmul)
        found.append(row)
    return found


def percent(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "n/a"


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    device = info["gpu"] or f"{info['cpu']} ({info['torch_threads']} thread(s))"
    lines = [
        f"GPU check, size `{result['size']}`" + ("" if result["model"] == "sd21" else f", model `{result['model']}`")
        + f", {device}, {result['repeats']} alternating repetitions, {info['date']}.",
        f"Peak dense bf16: {result['peak_tflops'] or 'unknown'} TFLOP/s (data sheet); a {result['matmul_side']}² "
        f"{result['matmul_dtype']} matmul reaches {result['matmul_tflops']:.1f} TFLOP/s here. "
        f"Attention: {result['attention_processor']}.",
        "",
        "| stage | variant | throughput, median (min-max) | vs reference | TFLOP/item | TFLOP/s | MFU (data sheet) "
        "| MFU (measured matmul) | peak memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stage, unit in (("lora", "samples/s"), ("generation", "images/s")):
        for row in result["stages"][stage]:
            lines.append(
                f"| {report.TITLES[stage]} ({unit}) | {row['description']} | {row['median']:.3g} ({row['min']:.3g}-"
                f"{row['max']:.3g}) | {row['vs_reference']:.2f}x | {row['tflop_per_item']:.3g} | "
                f"{row['achieved_tflops']:.3g} | {percent(row['mfu_data_sheet'])} | {percent(row['mfu_measured_matmul'])} "
                f"| {report.format_memory(row)} |"
            )
    lines += ["", f"Command: `{info['command']}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(args.threads or 1)
    warnings.filterwarnings("ignore")
    quiet_logs()
    size = architectures(args.size, args.model)
    suffix = "" if args.model == "sd21" else f"-{args.model}"
    work = args.work or Path(tempfile.gettempdir()) / f"bob-gpu-check-{args.size}{suffix}"
    settings = Settings(
        device=device, steps=args.steps, lora_batch=args.lora_batch, generation_steps=args.generation_steps,
        generation_batch=args.generation_batch, num_workers=4 if device == "cuda" else 0, compile=args.compile,
        reference_images=args.reference_images,
    )
    print(f"gpu check: size {args.size}, model {args.model} on {device}; building random-weight models in {work}",
          flush=True)
    world = build_world(
        work / "world", size, classes=4, shots=4, synthetic_per_class=1,
        generate_per_class=3 * args.generation_batch // 4, with_captioner=False,
    )
    lora = stage_lora.variants(world, settings, work / "lora")
    generation = stage_generation.variants(world, settings, work / "generation")
    generation.pop("bob_same")  # batch 1 through bob: framework overhead, which benchmarks/run.py covers
    with_options = args.generation_options if args.generation_options is not None else device == "cuda"
    if with_options:
        generation |= stage_generation.option_variants(world, settings, work / "generation")
    else:
        print("gpu check: bob's generation options (compile_unet, channels_last, vae_slicing) not timed "
              "(the default off CUDA); --generation-options times them", flush=True)
    lora_results = timed(lora, device, args.repeats, "LoRA")
    generation_results = timed(generation, device, args.repeats, "generation")

    step = flops.lora_step_flops(size, args.lora_batch, targets=lora_targets(args.model)[0])
    image = flops.generation_flops(size, args.generation_steps, settings.guidance)
    peak = args.peak_tflops or (flops.bf16_peak_tflops(torch.cuda.get_device_name()) if device == "cuda" else None)
    matmul_dtype, side = (torch.bfloat16, 8192) if device == "cuda" else (torch.float32, 1024)
    matmul = flops.measured_matmul_tflops(device, matmul_dtype, side)
    with torch.device("meta"):
        processor = type(next(iter(size.build_denoiser().attn_processors.values()))).__name__
    result = {
        "size": args.size,
        "model": args.model,
        "repeats": args.repeats,
        "settings": vars(args) | {"output": str(args.output), "work": str(work)},
        "architecture_notes": size.notes,
        "machine": report.machine(),
        "peak_tflops": peak,
        "matmul_tflops": matmul,
        "matmul_dtype": str(matmul_dtype).removeprefix("torch."),
        "matmul_side": side,
        "attention_processor": processor,
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        "stages": {
            "lora": rows(lora_results, {n: step["cached" if n in CACHED else "full"] for n in lora}, peak, matmul),
            "generation": rows(generation_results, dict.fromkeys(generation, image), peak, matmul),
        },
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    table = markdown(result)
    (args.output / "gpu_check.md").write_text(table, encoding="utf-8")
    print(table)
    return result


if __name__ == "__main__":
    main()
