"""The quality report on disk: JSON for programs, Markdown for people, comparisons between sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bob.atomic import atomic_write_text
from bob.data.errors import BobInputError
from bob.data.synthetic_set import identity_differences

HISTOGRAM_BINS = 10


def write_report(folder: Path, name: str, report: dict[str, Any]) -> tuple[Path, Path]:
    """``<folder>/<name>.json`` and ``<folder>/<name>.md``; a NaN anywhere is a bug, so it raises."""
    json_path = atomic_write_text(folder / f"{name}.json", json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    markdown_path = atomic_write_text(folder / f"{name}.md", render_markdown(report))
    return json_path, markdown_path


def load_report(folder: str | Path, name: str) -> dict[str, Any]:
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise BobInputError(
            f"no quality report {path} to compare with; measure that set first with the same settings "
            f"(`python main.py test -c <quality config> --data.init_args.synthetic={folder}`)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def comparable_identity(report: dict[str, Any]) -> dict[str, Any]:
    """What two reports must share for their numbers to be comparable."""
    return {
        "extractor": report["extractor"],
        "real": {k: report["real"][k] for k in ("dataset", "part", "fingerprint")},
        "settings": report["settings"],
    }


def check_comparable(mine: dict[str, Any], other: dict[str, Any], folder: str | Path) -> None:
    differences = identity_differences(comparable_identity(other), comparable_identity(mine))
    if differences:
        raise BobInputError(
            f"the report in {folder} was measured differently, so its numbers are not comparable "
            "(that report -> this run): " + "; ".join(differences[:5])
            + ". Measure both sets with the same extractor, real images and settings"
        )


def comparison(report: dict[str, Any], other: dict[str, Any], folder: str) -> dict[str, Any]:
    """How ``report`` compares with ``other`` overall and class by class (lower FID/KID is better)."""
    check_comparable(report, other, folder)
    theirs = {row["class_name"]: row for row in other["classes"]}
    result: dict[str, Any] = {"folder": folder, "overall": other["overall"]}
    for metric in ("fid", "kid"):
        pairs = [
            (row[metric], theirs[row["class_name"]][metric])
            for row in report["classes"]
            if row[metric] is not None and theirs.get(row["class_name"], {}).get(metric) is not None
        ]
        result[f"{metric}_lower_in"] = sum(mine < their for mine, their in pairs)
        result[f"{metric}_compared"] = len(pairs)
    result["per_class_fid"] = {name: row["fid"] for name, row in theirs.items()}
    return result


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


OVERALL_ROWS = (
    ("per-class FID, mean ↓", "fid_mean", 2),
    ("per-class FID, median ↓", "fid_median", 2),
    ("pooled FID ↓", "fid_pooled", 2),
    ("per-class KID, mean ↓", "kid_mean", 4),
    ("pooled KID ↓", "kid_pooled", 4),
    ("diversity of synthetic images", "diversity_synthetic_mean", 4),
    ("diversity of real images (reference)", "diversity_real_mean", 4),
    ("classes with FID", "num_classes_fid", 0),
    ("classes with KID", "num_classes_kid", 0),
    ("real images", "num_real", 0),
    ("synthetic images", "num_synthetic", 0),
)


def _histogram(series: dict[str, list[float]]) -> list[str]:
    values = [v for vs in series.values() for v in vs]
    if not values:
        return []
    low, high = min(values), max(values)
    width = (high - low) / HISTOGRAM_BINS or 1.0
    counts = {name: [0] * HISTOGRAM_BINS for name in series}
    for name, vs in series.items():
        for v in vs:
            counts[name][min(int((v - low) / width), HISTOGRAM_BINS - 1)] += 1
    lines = ["| per-class FID | " + " | ".join(series) + " |", "|---|" + "---|" * len(series)]
    for b in range(HISTOGRAM_BINS):
        cells = [f"{'█' * counts[name][b]} {counts[name][b]}" for name in series]
        lines.append(f"| {low + b * width:.1f} – {low + (b + 1) * width:.1f} | " + " | ".join(cells) + " |")
    return lines


def _context_lines(context: dict[str, Any]) -> list[str]:
    lines = [
        "| measure | NMI: share of context entropy the class explains | Cramér's V | p (chi-square) | images |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "detected_synthetic": "context read from the synthetic images",
        "detected_real": "context read from the real images (reference)",
        "prompted": "class of the real image whose captions prompted each synthetic image",
    }
    for key, label in labels.items():
        entry = context.get(key)
        if entry is not None:
            lines.append(
                f"| {label} | {entry['nmi']:.3f} | {entry['cramers_v']:.3f} | {entry['p_value']:.3g} | {entry['num_images']} |"
            )
    lines.append("")
    lines += [f"- {note}" for note in context.get("notes", [])]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    name = report["name"]
    others = report.get("comparisons", {})
    settings = report["settings"]
    extractor = ", ".join(f"{k} {v}" for k, v in report["extractor"].items() if k != "extractor")
    lines = [
        f"# Synthetic data quality: {name}",
        "",
        f"Synthetic set `{report['synthetic']['folder']}` against the real `{report['real']['part']}` images of "
        f"`{report['real']['dataset']}`; features: `{report['extractor']['extractor']}` ({extractor}). "
        f"KID: subsets of {settings['kid_subset_size']} x {settings['kid_subsets']}; FID from "
        f"{settings['fid_min_images']} images per side; diversity: mean pairwise {settings['diversity_distance']} distance.",
        "",
        "## Overall",
        "",
        "| | " + " | ".join([name, *others]) + " |",
        "|---|" + "---|" * (1 + len(others)),
    ]
    for label, key, digits in OVERALL_ROWS:
        cells = [_number(report["overall"].get(key), digits)] + [_number(o["overall"].get(key), digits) for o in others.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for other, result in others.items():
        lines.append("")
        lines.append(
            f"{name} has the lower per-class FID in {result['fid_lower_in']} of {result['fid_compared']} classes "
            f"and the lower KID in {result['kid_lower_in']} of {result['kid_compared']} than {other}."
        )
    lines += ["", "## Class–context dependence", ""] + _context_lines(report["context"])
    series = {name: [row["fid"] for row in report["classes"] if row["fid"] is not None]}
    series.update({o: [v for v in r["per_class_fid"].values() if v is not None] for o, r in others.items()})
    if any(series.values()):
        lines += ["", "## Per-class FID distribution", ""] + _histogram(series)
    lines += ["", "## Per class", ""]
    columns = ["class", "real", "synthetic", "FID", "KID", "diversity synthetic", "diversity real"] + [f"FID {o}" for o in others]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|---" * len(columns) + "|")
    skipped = []
    for row in report["classes"]:
        cells = [
            row["class_name"], str(row["num_real"]), str(row["num_synthetic"]), _number(row["fid"], 2),
            _number(row["kid"], 4), _number(row["diversity_synthetic"], 4), _number(row["diversity_real"], 4),
        ] + [_number(r["per_class_fid"].get(row["class_name"]), 2) for r in others.values()]
        lines.append("| " + " | ".join(cells) + " |")
        skipped += [f"{row['class_name']}: {metric} {reason}" for metric, reason in row["not_computed"].items()]
    if skipped:
        lines += ["", "Not computed (—):", ""] + [f"- {entry}" for entry in skipped]
    return "\n".join(lines) + "\n"
