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
from bob.metrics.dependence import class_background_dependence
from bob.toyworld.contexts import BACKGROUNDS
from bob.toyworld.dataset import home_background
from bob.toyworld.grids import class_grid, save_grid, side_by_side
from bob.toyworld.meter import ContextMeter

ARM_TITLES = {
    "real": "real only",
    "datadream": "DataDream (class-only LoRA)",
    "within_class": "context LoRA + own-class contexts",
    "bob": "BOB (context LoRA + marginal contexts)",
}


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
    # A compact comparison (every other class, four images each) for a README or a slide.
    every_other = class_names[::2]
    panels = [
        (ARM_TITLES.get(name, name) if name != "real" else "real shots",
         class_grid([row for row in _by_class(records, class_names) if row[0] in every_other], columns=4))
        for name, records in sets.items()
    ]
    paths["comparison"] = save_grid(side_by_side(panels), out / "grid_comparison.png")
    return paths


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def results_table(classifier: dict[str, dict[str, float]], dependence: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per arm, accuracy and its synthetic set's class-background dependence
    (``dependence`` by image set, as `bob.toyworld.demo.measure_and_report` returns it)."""
    rows = []
    for arm, metrics in classifier.items():
        measured = dependence.get(arm, {}) if arm != "real" else {}  # "real" there is the shots, not a synthetic set
        rows.append([
            ARM_TITLES.get(arm, arm), _percent(metrics.get("test/acc")), _percent(metrics.get("test/acc_per_class")),
            _percent(metrics.get("val/acc_best")), _number(measured.get("home_rate"), 2),
            _number(measured.get("nmi"), 3), _number(measured.get("cramers_v"), 2),
        ])
    return markdown_table(
        ["arm", "test acc %", "test mean per-class acc %", "best val acc %", "synthetic home-background rate",
         "synthetic NMI(class; background)", "Cramér's V"],
        rows,
    )


def dependence_table(dependence: dict[str, dict[str, float]]) -> str:
    rows = [
        [name, str(d["num_images"]), f"{d['home_rate']:.2f}", f"{d['nmi']:.3f} ({d['nmi_null']:.3f})",
         f"{d['cramers_v']:.2f} ({d['cramers_v_null']:.2f})", f"{d['p_value']:.2g}"]
        for name, d in dependence.items()
    ]
    return markdown_table(
        ["image set", "images", "home-background rate", "NMI (if independent)", "Cramér's V (if independent)", "chi-square p"],
        rows,
    )


def quality_table(quality: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per synthetic set, its distance to the real test images."""
    rows = [
        [ARM_TITLES.get(arm, arm), _number(q["fid_mean"], 2), _number(q["fid_median"], 2), _number(q["fid_pooled"], 2),
         _number(q["kid_mean"], 4), f"{_number(q['diversity_synthetic_mean'], 3)} ({_number(q['diversity_real_mean'], 3)})",
         q.get("fid_lower_than_datadream", "–")]
        for arm, q in quality.items()
    ]
    return markdown_table(
        ["synthetic set", "per-class FID, mean ↓", "median ↓", "pooled FID ↓", "per-class KID, mean ↓",
         "diversity (real: same classes)", "classes with lower FID than DataDream"],
        rows,
    )


def shown_path(path: str | Path) -> str:
    """A path relative to the working directory when it lies below it (reports travel)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def write_report(out: Path, summary: dict[str, Any], dependence: dict[str, dict[str, float]], grids: dict[str, Path]) -> Path:
    settings = summary["settings"]
    chance = 1.0 / len(BACKGROUNDS)
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings"].items())
    processes = summary.get("compute", {}).get("stage_processes", 1)
    if "wall_seconds" in summary:
        # Stages side by side overlap: their times add up to more than the run took.
        together = f"{processes} side by side" if processes > 1 else "one after another"
        timings += f"; all stages {summary['wall_seconds'] / 60:.1f} min ({together})"
    # The report leads with the comparison: the arms' accuracies, then their samples side by side.
    comparison = grids.get("comparison")
    lead_grid = f"![real shots and each arm's samples, every other class]({comparison.name})\n" if comparison else ""
    grid_lines = "\n".join(
        f"### {name}\n![{name}]({path.name})\n" for name, path in grids.items() if name != "comparison"
    )
    text = f"""# BOB on the toy world

{settings['num_classes']} few-shot aircraft variants, {settings['shots']} real shots each; each class's
shots are {settings['bias']:.0%} in its own "home" background, validation and test images are not
(seed {settings['seed']}). Prior: `{shown_path(summary['prior'])}`.

## Classifier (test accuracy at the best validation epoch)
{results_table(summary['classifier'], dependence)}

{lead_grid}
## Class-background dependence of each training image set
Backgrounds are read by the toy world's context meter (pixel statistics). With backgrounds
independent of the class, the home-background rate is {chance:.2f} and NMI and Cramér's V sit at
the values in brackets (their mean over shuffled class labels: a finite sample is never exactly 0).

{dependence_table(dependence)}

## Synthetic sets against the real test images
Per-class FID and KID on the features of the shipped broad-world backbone
(`configs/toyworld/quality.yaml`; full reports: `synthetic/<arm>/quality-timm.md`). Diversity is
the mean pairwise cosine distance within a class.

{quality_table(summary['quality'])}

## Samples of each set (one row per class)
{grid_lines}
Stage wall times: {timings}.
"""
    return atomic_write_text(out / "report.md", text)
