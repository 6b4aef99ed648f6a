"""Measuring a toy-world run (class-background dependence of each image set) and writing its report."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from bob.atomic import atomic_write_text
from bob.data.records import ImageRecord
from bob.data.synthetic_set import load_synthetic_records
from bob.toyworld.contexts import BACKGROUNDS
from bob.toyworld.dataset import home_background
from bob.toyworld.dependence import class_background_dependence
from bob.toyworld.grids import class_grid, save_grid
from bob.toyworld.meter import ContextMeter

ARM_TITLES = {"real": "real only", "datadream": "DataDream (class-only LoRA)", "bob": "BOB (context LoRA + marginal contexts)"}


def measure_records(records: list[ImageRecord], num_classes: int, meter: ContextMeter, desc: str) -> dict[str, float]:
    """Background of every image by the context meter, then its dependence on the class."""
    images = []
    for record in tqdm(records, desc=f"measuring backgrounds: {desc}", unit="img"):
        with Image.open(record.path) as image:
            images.append(image.convert("RGB"))
    backgrounds = meter.predict(images)
    homes = [home_background(c) for c in range(num_classes)]
    return class_background_dependence(
        [r.label for r in records], backgrounds, num_classes, len(BACKGROUNDS), homes
    )


def synthetic_records(folder: Path, class_names: list[str]) -> list[ImageRecord]:
    return load_synthetic_records(folder, class_names)


def _by_class(records: list[ImageRecord], class_names: list[str]) -> list[tuple[str, list[Path]]]:
    grouped: dict[int, list[Path]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.sample_id):
        grouped[record.label].append(record.path)
    return [(name, grouped[label]) for label, name in enumerate(class_names)]


def write_grids(out: Path, sets: dict[str, list[ImageRecord]], class_names: list[str], columns: int = 8) -> dict[str, Path]:
    """One PNG per image set: a row per class, its first ``columns`` images."""
    paths = {}
    for name, records in sets.items():
        paths[name] = save_grid(class_grid(_by_class(records, class_names), columns=columns), out / f"grid_{name}.png")
    return paths


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def results_table(classifier: dict[str, dict[str, float]], dependence: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per arm, accuracy and the training set's class-background dependence."""
    lines = [
        "| arm | test acc % | test mean per-class acc % | best val acc % | synthetic home-background rate | synthetic NMI(class; background) | Cramér's V |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, metrics in classifier.items():
        measured = dependence.get(arm, {})
        lines.append(
            f"| {ARM_TITLES.get(arm, arm)} | {_percent(metrics.get('test/acc'))} | "
            f"{_percent(metrics.get('test/acc_per_class'))} | {_percent(metrics.get('val/acc_best'))} | "
            f"{measured.get('home_rate', float('nan')):.2f} | {measured.get('nmi', float('nan')):.3f} | "
            f"{measured.get('cramers_v', float('nan')):.2f} |"
            if measured else
            f"| {ARM_TITLES.get(arm, arm)} | {_percent(metrics.get('test/acc'))} | "
            f"{_percent(metrics.get('test/acc_per_class'))} | {_percent(metrics.get('val/acc_best'))} | – | – | – |"
        )
    return "\n".join(lines)


def dependence_table(dependence: dict[str, dict[str, float]]) -> str:
    lines = [
        "| image set | images | home-background rate | NMI (if independent) | Cramér's V (if independent) | chi-square p |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in dependence.items():
        lines.append(
            f"| {name} | {d['num_images']} | {d['home_rate']:.2f} | {d['nmi']:.3f} ({d['nmi_null']:.3f}) | "
            f"{d['cramers_v']:.2f} ({d['cramers_v_null']:.2f}) | {d['p_value']:.2g} |"
        )
    return "\n".join(lines)


def write_report(out: Path, summary: dict[str, Any], dependence: dict[str, dict[str, float]], grids: dict[str, Path]) -> Path:
    settings = summary["settings"]
    chance = 1.0 / len(BACKGROUNDS)
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings"].items())
    grid_lines = "\n".join(f"### {name}\n![{name}]({path.name})\n" for name, path in grids.items())
    text = f"""# BOB on the toy world

{settings['num_classes']} few-shot aircraft variants, {settings['shots']} real shots each; each class's
shots are {settings['bias']:.0%} in its own "home" background, validation and test images are not
(seed {settings['seed']}). Prior: `{summary['prior']}`.

## Classifier (test accuracy at the best validation epoch)
{results_table(summary['classifier'], {k: v for k, v in dependence.items() if k in ('datadream', 'bob')})}

## Class-background dependence of each training image set
Backgrounds are read by the toy world's context meter (pixel statistics). With backgrounds
independent of the class, the home-background rate is {chance:.2f} and NMI and Cramér's V sit at
the values in brackets (their mean over shuffled class labels: a finite sample is never exactly 0).

{dependence_table(dependence)}

## Samples (one row per class)
{grid_lines}
Stage wall times: {timings}.
"""
    return atomic_write_text(out / "report.md", text)
