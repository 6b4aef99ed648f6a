"""The benchmark's results as JSON and a Markdown table, with the machine and versions that produced them."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import torch

from benchmarks.timing import VariantResult, paired_ratio

PACKAGES = ("torch", "lightning", "diffusers", "transformers", "peft", "timm", "bob")
UNITS = {"lora": "samples/s", "generation": "images/s", "classifier": "images/s", "captioning": "images/s"}
TITLES = {
    "lora": "LoRA fine-tuning",
    "generation": "generation",
    "classifier": "classifier training",
    "captioning": "captioning",
}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What ran the benchmark: processor, accelerator, thread count, load, package versions."""
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "versions": {},
    }
    for package in PACKAGES:
        try:
            info["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info["versions"][package] = None
    return info


def stage_rows(stage: str, results: dict[str, VariantResult]) -> list[dict[str, Any]]:
    reference = next(r for r in results.values() if r.reference)
    rows = []
    for result in results.values():
        row = result.to_dict()
        if result.reference or not result.compared:
            row["vs_reference"] = row["vs_reference_cpu_time"] = 1.0 if result.reference else None
        else:
            row["vs_reference"] = paired_ratio(result, reference)
            row["vs_reference_cpu_time"] = paired_ratio(result, reference, cpu_time=True)
        row["stage"] = stage
        rows.append(row)
    return rows


def targets(rows: dict[str, list[dict[str, Any]]], device: str) -> list[dict[str, Any]]:
    """The speed targets, checked against the measured ratios (None where this run cannot judge).

    On a CPU the CPU-time ratios are used: other processes on a shared machine move wall-clock
    ratios by more than the 10% the targets are about.
    """
    key = "vs_reference_cpu_time" if device == "cpu" else "vs_reference"
    ratio = {(stage, row["name"]): row[key] for stage, stage_rows in rows.items() for row in stage_rows}
    checks = []

    def check(stage: str, variant: str, text: str, passes: Any, judged: bool = True) -> None:
        if (stage, variant) in ratio:
            value = ratio[(stage, variant)]
            checks.append({"target": text, "ratio": value, "clock": key, "met": bool(passes(value)) if judged else None})

    check("lora", "bob_same", "LoRA step, same settings: at most 10% slower (>= 0.90x)", lambda r: r >= 0.9)
    check("lora", "bob_default", "LoRA step, bob defaults: faster than the reference (> 1x)", lambda r: r > 1)
    check("classifier", "bob_same", "classifier step, same settings: at most 10% slower (>= 0.90x)", lambda r: r >= 0.9)
    check("classifier", "bob_default", "classifier step, bob defaults: faster than the reference (> 1x)", lambda r: r > 1)
    check("generation", "bob_default", "generation: at least 3x the batch-1 loop on GPU (CPU: reported only)",
          lambda r: r >= 3, judged=device == "cuda")
    return checks


def ratio(value: float | None) -> str:
    """A ratio to the reference; a dash for a row of another model, which has none."""
    return "—" if value is None else f"{value:.2f}x"


def format_memory(row: dict[str, Any]) -> str:
    if row["peak_memory_mib"] is None:
        return "not measured"
    return f"{row['peak_memory_mib']:,.0f} MiB ({row['memory_kind']})"


def markdown(report: dict[str, Any]) -> str:
    """Tables for docs/benchmarks.md: one row per variant, then the targets."""
    info = report["machine"]
    settings = report["settings"]
    device = info["gpu"] or f"{info['cpu']}, {info['cpu_count']} cores, {info['torch_threads']} torch thread(s)"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [
        f"Size `{report['size']}` on {settings['device']} ({device}), {report['repeats']} alternating repetitions, "
        f"{info['date']}.",
        f"Load average before / after: {report['load_before']} / {report['load_after']}. Versions: {versions}.",
        "",
    ]
    on_cpu = settings["device"] == "cpu"
    if on_cpu:
        lines += [
            "| stage | variant | throughput, median (min-max) | vs reference | vs reference, CPU time | peak memory |",
            "|---|---|---|---|---|---|",
        ]
    else:
        lines += ["| stage | variant | throughput, median (min-max) | vs reference | peak memory |", "|---|---|---|---|---|"]
    for stage, rows in report["stages"].items():
        for row in rows:
            cpu_time = f" {ratio(row['vs_reference_cpu_time'])} |" if on_cpu else ""
            lines.append(
                f"| {TITLES[stage]} ({UNITS[stage]}) | {row['description']} | {row['median']:.3g} "
                f"({row['min']:.3g}-{row['max']:.3g}) | {ratio(row['vs_reference'])} |{cpu_time} {format_memory(row)} |"
            )
    if report["targets"]:
        clock = "CPU time" if on_cpu else "wall clock"
        lines += ["", f"| target | measured ({clock}) | met |", "|---|---|---|"]
        for target in report["targets"]:
            met = {True: "yes", False: "**no**", None: "n/a here"}[target["met"]]
            lines.append(f"| {target['target']} | {target['ratio']:.2f}x | {met} |")
    lines += ["", f"Command: `{info['command']}`"]
    return "\n".join(lines) + "\n"
