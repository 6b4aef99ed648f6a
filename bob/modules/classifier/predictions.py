"""Top-k predictions as rows with class names: for CSV, JSON lines and `bob.classify`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bob.data.errors import BobInputError

PREDICTION_FORMATS = (".csv", ".jsonl")


def top_k_rows(
    sample_ids: Sequence[str], probabilities: torch.Tensor, class_names: Sequence[str], top_k: int
) -> list[dict[str, Any]]:
    """One row per image: ``{"image": id, "predictions": [{"label", "class_name", "probability"}, ...]}``,
    most probable class first."""
    values, labels = probabilities.float().topk(min(top_k, probabilities.shape[-1]), dim=-1)
    return [
        {
            "image": sample_id,
            "predictions": [
                {"label": int(label), "class_name": class_names[int(label)], "probability": float(value)}
                for value, label in zip(row_values.tolist(), row_labels.tolist(), strict=True)
            ],
        }
        for sample_id, row_values, row_labels in zip(sample_ids, values, labels, strict=True)
    ]


def check_prediction_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in PREDICTION_FORMATS:
        raise BobInputError(f"predictions are written as {' or '.join(PREDICTION_FORMATS)}; got {path}")
    return suffix


def format_predictions(rows: Sequence[dict[str, Any]], suffix: str) -> str:
    """``.jsonl``: the rows as JSON lines. ``.csv``: columns ``image, class_1, probability_1, ...``."""
    if suffix == ".jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    ranks = max((len(row["predictions"]) for row in rows), default=0)
    writer.writerow(["image"] + [f"{name}_{rank}" for rank in range(1, ranks + 1) for name in ("class", "probability")])
    for row in rows:
        cells = [cell for p in row["predictions"] for cell in (p["class_name"], f"{p['probability']:.6f}")]
        writer.writerow([row["image"], *cells])
    return text.getvalue()
