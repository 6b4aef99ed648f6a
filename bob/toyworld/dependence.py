"""How much an image set's background depends on its class: mutual information, Cramér's V, home rate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import chi2_contingency


def contingency(classes: Sequence[int], backgrounds: Sequence[int], num_classes: int, num_backgrounds: int) -> np.ndarray:
    table = np.zeros((num_classes, num_backgrounds), dtype=np.int64)
    np.add.at(table, (np.asarray(classes), np.asarray(backgrounds)), 1)
    return table


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def class_background_dependence(
    classes: Sequence[int],
    backgrounds: Sequence[int],
    num_classes: int,
    num_backgrounds: int,
    home: Sequence[int] | None = None,
) -> dict[str, float]:
    """Dependence between class and (measured) background of a set of images.

    Returns ``mutual_information`` (bits), ``nmi`` (mutual information over the background
    entropy: the share of background uncertainty the class explains, 0 = independent,
    1 = class decides the background), ``cramers_v`` with the chi-square ``p_value``, and, when
    each class's ``home`` background is given, ``home_rate``: the share of images in their
    class's home background (1 / num_backgrounds when independent and uniform).
    """
    table = contingency(classes, backgrounds, num_classes, num_backgrounds)
    total = table.sum()
    joint = table / total
    h_background = _entropy(joint.sum(axis=0))
    mutual = _entropy(joint.sum(axis=0)) + _entropy(joint.sum(axis=1)) - _entropy(joint.ravel())
    rows, cols = table.sum(axis=1) > 0, table.sum(axis=0) > 0
    observed = table[rows][:, cols]
    if min(observed.shape) > 1:
        chi2, p_value, _, _ = chi2_contingency(observed, correction=False)
        cramers_v = float(np.sqrt(chi2 / (total * (min(observed.shape) - 1))))
    else:
        chi2, p_value, cramers_v = 0.0, 1.0, 0.0
    result = {
        "num_images": int(total),
        "mutual_information": float(max(mutual, 0.0)),
        "nmi": float(mutual / h_background) if h_background > 0 else 0.0,
        "cramers_v": cramers_v,
        "chi2": float(chi2),
        "p_value": float(p_value),
    }
    if home is not None:
        result["home_rate"] = float(sum(table[c, home[c]] for c in range(num_classes)) / total)
    return result
