"""Long-tail subsets of a dataset's train split (CUB-LT, Flowers-LT) with many/medium/few groups."""

from __future__ import annotations

import logging
import random
from typing import Literal

from bob.data.datasets.base import DatasetReader
from bob.data.errors import SplitError
from bob.data.splits import FewShotSplit, class_pools, take_validation

log = logging.getLogger(__name__)

Group = Literal["many", "medium", "few"]


def longtail_counts(max_per_class: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """Images per class position: ``n_i = floor(n_max * IF^(-i / (C - 1)))``, at least 1.

    Position 0 is the head (``n_max`` images), position ``C - 1`` the tail (``n_max / IF``).
    """
    if imbalance_factor < 1:
        raise SplitError(f"imbalance_factor must be >= 1 (head / tail size), got {imbalance_factor}")
    if max_per_class < 1:
        raise SplitError(f"the long-tail head needs at least 1 image, got max_per_class={max_per_class}")
    if num_classes == 1:
        return [max_per_class]
    # The small epsilon keeps exact products (20 * 10^-1 = 2) from flooring to one less.
    return [
        max(1, int(max_per_class * imbalance_factor ** (-i / (num_classes - 1)) + 1e-9)) for i in range(num_classes)
    ]


def longtail_group(count: int, many_above: int, few_below: int) -> Group:
    """``many`` above ``many_above`` training images, ``few`` below ``few_below``, else ``medium``."""
    if count > many_above:
        return "many"
    if count < few_below:
        return "few"
    return "medium"


def longtail_class_order(num_classes: int, seed: int) -> list[int]:
    """Labels from head to tail: a seeded permutation, so which classes are rare depends only on the seed."""
    order = list(range(num_classes))
    random.Random(f"{seed}|longtail").shuffle(order)
    return order


def sample_longtail_split(
    reader: DatasetReader,
    imbalance_factor: float,
    seed: int,
    val_per_class: int,
    max_per_class: int | None = None,
    many_above: int | None = None,
    few_below: int | None = None,
) -> FewShotSplit:
    """An exponentially imbalanced subset of the official train split.

    Classes are put in a seeded order; the class at position ``i`` keeps the first
    ``longtail_counts(...)[i]`` images of its seeded pool, and its validation images come from
    the images it leaves over (head classes may have fewer than ``val_per_class`` left).

    Args:
        reader: the dataset.
        imbalance_factor: head size / tail size (100, 20, 10 in the literature).
        seed: seed of the class order and of each class's image order.
        val_per_class: extra real validation images per class, from the leftovers.
        max_per_class: head size; None takes the smallest class's train pool, so every class
            can fill whichever position it lands on.
        many_above: ``many`` group above this many training images; None takes the reader's default.
        few_below: ``few`` group below this many training images; None takes the reader's default.
    """
    names = reader.class_names
    pools = class_pools(reader, seed)
    smallest = min(len(pool) for pool in pools)
    if smallest == 0:
        empty = [name for name, pool in zip(names, pools, strict=True) if not pool]
        raise SplitError(f"{len(empty)} class(es) of {reader.data_dir} have no training images: {empty[:5]}")
    head = smallest if max_per_class is None else max_per_class
    counts = longtail_counts(head, len(names), imbalance_factor)
    order = longtail_class_order(len(names), seed)
    target = {label: counts[position] for position, label in enumerate(order)}
    too_small = [(names[c], len(pools[c]), target[c]) for c in range(len(names)) if len(pools[c]) < target[c]]
    if too_small:
        raise SplitError(
            f"{len(too_small)} class(es) of {reader.data_dir} have fewer training images than their "
            "long-tail position needs: "
            + ", ".join(f"{n!r} ({have} < {need})" for n, have, need in too_small[:5])
            + f"; lower max_per_class (the smallest class has {smallest}) or add images"
        )
    default_many, default_few = reader.longtail_groups
    many = default_many if many_above is None else many_above
    few = default_few if few_below is None else few_below
    if few > many + 1:
        raise SplitError(f"long-tail groups need few_below <= many_above + 1, got few_below={few}, many_above={many}")
    train = [r for c, pool in enumerate(pools) for r in pool[: target[c]]]
    val = take_validation([pool[target[c]:] for c, pool in enumerate(pools)], val_per_class, names)
    groups = {names[c]: longtail_group(target[c], many, few) for c in range(len(names))}
    sizes = {g: sum(1 for v in groups.values() if v == g) for g in ("many", "medium", "few")}
    log.info(
        "long-tail split IF %g: %d training images, head %d, tail %d; classes many/medium/few = %d/%d/%d",
        imbalance_factor, len(train), counts[0], counts[-1], sizes["many"], sizes["medium"], sizes["few"],
    )
    return FewShotSplit(
        reader.name, seed, list(names), train, val, reader.records("test"),
        shots=None, source="longtail", class_groups=groups, imbalance_factor=imbalance_factor,
        details={"val_per_class": val_per_class, "max_per_class": head, "many_above": many, "few_below": few},
        data_dir=reader.data_dir,
    )
