"""Few-shot splits: deterministic from (dataset, shots, seed), saved to a file every stage reads."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bob.atomic import atomic_write_json
from bob.data.datasets.base import DatasetReader
from bob.data.errors import SplitError
from bob.data.records import ImageRecord

log = logging.getLogger(__name__)

SPLIT_FORMAT_VERSION = 1


@dataclass
class FewShotSplit:
    """Which real images each stage uses: ``train`` (the shots), ``val`` (extra real images from
    the official train split, never overlapping the shots) and ``test`` (the official test split).

    Args:
        dataset: the reader's short name.
        seed: seed the split was drawn with.
        class_names: raw class names in label order.
        train, val, test: the records of each part.
        shots: images per class in ``train``; None for long-tail splits.
        source: how it was made (``sampled``, ``longtail``, or the external file it came from).
        class_groups: long-tail only, class name -> ``many``/``medium``/``few``.
        imbalance_factor: long-tail only.
    """

    dataset: str
    seed: int
    class_names: list[str]
    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]
    shots: int | None = None
    source: str = "sampled"
    class_groups: dict[str, str] = field(default_factory=dict)
    imbalance_factor: float | None = None

    def __post_init__(self) -> None:
        overlap = {r.sample_id for r in self.train} & {r.sample_id for r in self.val}
        if overlap:
            raise SplitError(
                f"{len(overlap)} validation image(s) are also training shots, e.g. "
                f"{sorted(overlap)[:3]}; validation must use extra images only"
            )

    def train_counts(self) -> list[int]:
        counts = [0] * len(self.class_names)
        for record in self.train:
            counts[record.label] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        def part(records: list[ImageRecord]) -> list[list[Any]]:
            return [[r.sample_id, r.class_name] for r in records]

        return {
            "format_version": SPLIT_FORMAT_VERSION,
            "dataset": self.dataset,
            "shots": self.shots,
            "seed": self.seed,
            "source": self.source,
            "imbalance_factor": self.imbalance_factor,
            "class_names": self.class_names,
            "class_groups": self.class_groups,
            "train": part(self.train),
            "val": part(self.val),
            "test": part(self.test),
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, reader: DatasetReader) -> FewShotSplit:
        """Read a split file and check it against the dataset on disk."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise SplitError(f"cannot read split file {path}: {error}") from error
        if payload.get("format_version") != SPLIT_FORMAT_VERSION:
            raise SplitError(f"{path} is not a bob split file (format_version {SPLIT_FORMAT_VERSION})")
        if payload["class_names"] != reader.class_names:
            unknown = sorted(set(payload["class_names"]) - set(reader.class_names))
            raise SplitError(
                f"split file {path} was made for other classes than {reader.root} has "
                f"(unknown to the dataset: {unknown[:5]}); delete it or point split_file elsewhere"
            )
        label_of = {name: i for i, name in enumerate(reader.class_names)}
        parts: dict[str, list[ImageRecord]] = {}
        for part in ("train", "val", "test"):
            records = [reader.record(sample_id, label_of[name]) for sample_id, name in payload[part]]
            missing = [r.path for r in records if not r.path.is_file()]
            if missing:
                raise SplitError(
                    f"split file {path} names {len(missing)} {part} image(s) missing under "
                    f"{reader.root}, e.g. {missing[0]}"
                )
            parts[part] = records
        return cls(
            dataset=payload["dataset"],
            seed=payload["seed"],
            class_names=payload["class_names"],
            shots=payload["shots"],
            source=payload["source"],
            class_groups=payload.get("class_groups") or {},
            imbalance_factor=payload.get("imbalance_factor"),
            **parts,
        )


def _by_class(records: list[ImageRecord], num_classes: int) -> list[list[ImageRecord]]:
    grouped: list[list[ImageRecord]] = [[] for _ in range(num_classes)]
    for record in records:
        grouped[record.label].append(record)
    return grouped


def _shuffled(records: list[ImageRecord], seed: int, class_name: str) -> list[ImageRecord]:
    # One generator per class, keyed by its name: adding a class never changes another's shots.
    ordered = sorted(records, key=lambda r: r.sample_id)
    random.Random(f"{seed}|{class_name}").shuffle(ordered)
    return ordered


def _take_validation(
    remaining: list[list[ImageRecord]], val_per_class: int, class_names: list[str]
) -> list[ImageRecord]:
    short = [(name, len(pool)) for name, pool in zip(class_names, remaining) if len(pool) < val_per_class]
    if short:
        log.warning(
            "%d class(es) have fewer than %d extra images for validation and use all they have, e.g. %s",
            len(short), val_per_class, short[:3],
        )
    return [r for pool in remaining for r in pool[:val_per_class]]


def sample_fewshot_split(
    reader: DatasetReader, shots: int, seed: int, val_per_class: int
) -> FewShotSplit:
    """Draw ``shots`` training images per class and ``val_per_class`` disjoint validation images."""
    if shots < 1:
        raise SplitError(f"shots must be at least 1, got {shots}")
    if val_per_class < 0:
        raise SplitError(f"val_per_class must be >= 0, got {val_per_class}")
    names = reader.class_names
    pools = [_shuffled(pool, seed, name) for name, pool in zip(names, _by_class(reader.records("train"), len(names)))]
    too_small = [(name, len(pool)) for name, pool in zip(names, pools) if len(pool) < shots]
    if too_small:
        raise SplitError(
            f"{len(too_small)} class(es) of {reader.root} have fewer than {shots} training images: "
            + ", ".join(f"{n!r} ({c})" for n, c in too_small[:5])
            + "; lower `shots` or add images"
        )
    train = [r for pool in pools for r in pool[:shots]]
    val = _take_validation([pool[shots:] for pool in pools], val_per_class, names)
    return FewShotSplit(reader.name, seed, list(names), train, val, reader.records("test"), shots=shots)
