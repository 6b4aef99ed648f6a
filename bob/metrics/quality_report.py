"""Per-class and overall synthetic-data quality from gathered features: FID, KID, diversity, context dependence."""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bob.metrics.dependence import class_background_dependence
from bob.metrics.distribution import (
    DiversityDistance,
    frechet_distance,
    kernel_distance,
    mean_pairwise_distance,
)

log = logging.getLogger(__name__)

#: KID over the pooled sets uses subsets of this size (torchmetrics' default), or fewer when short.
POOLED_KID_SUBSET = 1000
PER_CLASS_METRICS = ("fid", "kid", "diversity_synthetic", "diversity_real")


@dataclass
class QualitySettings:
    """How the metrics are computed (kept in the report, and compared before two reports are).

    Args:
        kid_subset_size: images per KID subset for one class; a class with fewer real or
            synthetic images gets no KID.
        kid_subsets: KID subsets per class.
        fid_min_images: fewest real and synthetic images a class needs for FID (2 is the least
            a covariance allows; below the feature dimension FID is biased upwards, equally for
            sets of equal size).
        diversity_distance: ``cosine`` or ``euclidean`` distance between features.
        seed: seed of the KID subsets.
    """

    kid_subset_size: int = 10
    kid_subsets: int = 100
    fid_min_images: int = 2
    diversity_distance: DiversityDistance = "cosine"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _attempt(row: dict[str, Any], metric: str, reason_if_short: str | None, compute: Callable[[], Any]) -> None:
    """Fill ``row[metric]`` from ``compute()``, or mark it not computed with the reason."""
    if reason_if_short is not None:
        row["not_computed"][metric] = reason_if_short
        return
    value = compute()
    values = value if isinstance(value, tuple) else (value,)
    if not all(math.isfinite(v) for v in values):
        row["not_computed"][metric] = "the computation gave a non-finite value"
        return
    if isinstance(value, tuple):
        row[metric], row[f"{metric}_std"] = value
    else:
        row[metric] = value


def measure_class(
    real: Tensor, fake: Tensor, settings: QualitySettings, class_index: int
) -> dict[str, Any]:
    """The per-class metrics; each is a number or None with the reason in ``not_computed``."""
    n_real, n_fake = len(real), len(fake)
    row: dict[str, Any] = {"num_real": n_real, "num_synthetic": n_fake, "not_computed": {}}
    row.update({metric: None for metric in PER_CLASS_METRICS})
    row["kid_std"] = None
    need = settings.fid_min_images
    _attempt(
        row, "fid",
        f"needs {need} real and {need} synthetic images, has {n_real} and {n_fake}" if min(n_real, n_fake) < max(need, 2) else None,
        lambda: frechet_distance(real, fake),
    )
    size = settings.kid_subset_size
    _attempt(
        row, "kid",
        f"needs {size} real and {size} synthetic images (kid_subset_size), has {n_real} and {n_fake}" if min(n_real, n_fake) < size else None,
        lambda: kernel_distance(real, fake, size, settings.kid_subsets, settings.seed + class_index),
    )
    for metric, features in (("diversity_synthetic", fake), ("diversity_real", real)):
        _attempt(
            row, metric,
            f"needs 2 images, has {len(features)}" if len(features) < 2 else None,
            lambda features=features: mean_pairwise_distance(features, settings.diversity_distance),
        )
    return row


def measure_classes(
    class_names: Sequence[str],
    real: Tensor,
    real_labels: Tensor,
    fake: Tensor,
    fake_labels: Tensor,
    settings: QualitySettings,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per class that has real or synthetic images, in label order."""
    present = sorted(set(real_labels.tolist()) | set(fake_labels.tolist()))
    rows = []
    for label in tqdm(present, desc="per-class metrics", disable=not progress):
        row = {"label": label, "class_name": class_names[label]}
        row.update(measure_class(real[real_labels == label], fake[fake_labels == label], settings, label))
        rows.append(row)
    _warn_not_computed(rows)
    return rows


def _warn_not_computed(rows: list[dict[str, Any]]) -> None:
    for metric in PER_CLASS_METRICS:
        skipped = [(row["class_name"], row["not_computed"][metric]) for row in rows if metric in row["not_computed"]]
        if skipped:
            shown = "; ".join(f"{name!r}: {reason}" for name, reason in skipped[:3])
            log.warning(
                "%s not computed for %d of %d class(es) (left empty in the report): %s%s",
                metric, len(skipped), len(rows), shown, " ..." if len(skipped) > 3 else "",
            )


def _mean(values: list[float]) -> float | None:
    return _finite(statistics.fmean(values)) if values else None


def summarise(
    rows: list[dict[str, Any]], real: Tensor, real_labels: Tensor, fake: Tensor, fake_labels: Tensor, settings: QualitySettings
) -> dict[str, Any]:
    """Overall numbers: means over the classes where a metric was computed, and pooled FID/KID
    over all images of the classes that have both real and synthetic images."""
    computed = {m: [row[m] for row in rows if row[m] is not None] for m in PER_CLASS_METRICS}
    shared = [row["label"] for row in rows if row["num_real"] and row["num_synthetic"]]
    overall: dict[str, Any] = {
        "fid_mean": _mean(computed["fid"]),
        "fid_median": _finite(statistics.median(computed["fid"])) if computed["fid"] else None,
        "kid_mean": _mean(computed["kid"]),
        "diversity_synthetic_mean": _mean(computed["diversity_synthetic"]),
        "diversity_real_mean": _mean(computed["diversity_real"]),
        "num_classes": len(rows),
        "num_classes_shared": len(shared),
        **{f"num_classes_{m}": len(v) for m, v in computed.items()},
        "num_real": int(sum(row["num_real"] for row in rows)),
        "num_synthetic": int(sum(row["num_synthetic"] for row in rows)),
        "fid_pooled": None,
        "kid_pooled": None,
        "kid_pooled_std": None,
    }
    shared_labels = torch.tensor(shared, dtype=torch.long)
    pooled_real = real[torch.isin(real_labels, shared_labels)]
    pooled_fake = fake[torch.isin(fake_labels, shared_labels)]
    if min(len(pooled_real), len(pooled_fake)) >= 2:
        overall["fid_pooled"] = _finite(frechet_distance(pooled_real, pooled_fake))
        subset = min(POOLED_KID_SUBSET, len(pooled_real), len(pooled_fake))
        mean, std = kernel_distance(pooled_real, pooled_fake, subset, settings.kid_subsets, settings.seed)
        overall["kid_pooled"], overall["kid_pooled_std"] = _finite(mean), _finite(std)
        overall["kid_pooled_subset_size"] = subset
    return overall


def context_dependence(classes: Sequence[str], contexts: Sequence[str]) -> dict[str, Any]:
    """How much the class tells about the context, for any string labels.

    The measure of `class_background_dependence` (the toy world's too): ``nmi`` is the share of the
    context's entropy the class explains (0 independent, 1 the class decides the context),
    with ``mutual_information`` (bits), Cramér's V and the chi-square test's ``p_value``; plus
    how often each context occurs.
    """
    class_index = {name: i for i, name in enumerate(sorted(set(classes)))}
    context_index = {name: i for i, name in enumerate(sorted(set(contexts)))}
    result = class_background_dependence(
        [class_index[c] for c in classes], [context_index[c] for c in contexts], len(class_index), len(context_index)
    )
    return {**result, "context_counts": dict(sorted(Counter(contexts).items()))}
