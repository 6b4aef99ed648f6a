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
from bob.data.fingerprints import identical_files
from bob.data.records import ImageRecord

log = logging.getLogger(__name__)

SPLIT_FORMAT_VERSION = 1
PARTS = ("train", "val", "test")


@dataclass
class FewShotSplit:
    """Which real images each stage uses: ``train`` (the shots), ``val`` (extra real images from
    the official train split, never overlapping the shots) and ``test`` (the official test split).

    In the split file each image is ``[sample_id, class_name]``, plus its path when the image
    lives outside the dataset folder (shots copied into an external split folder).

    Args:
        dataset: the reader's short name.
        seed: seed the split was drawn with.
        class_names: raw class names in label order.
        train, val, test: the records of each part.
        shots: images per class in ``train``; None for long-tail splits.
        source: how it was made (``sampled``, ``longtail``, or the external source it came from).
        class_groups: long-tail only, class name -> ``many``/``medium``/``few``.
        imbalance_factor: long-tail only.
        details: how it was drawn (validation size, long-tail head and group thresholds...).
        data_dir: the dataset folder sample ids are relative to; records elsewhere keep their path.
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
    details: dict[str, Any] = field(default_factory=dict)
    data_dir: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        overlap = sorted({r.sample_id for r in self.train} & {r.sample_id for r in self.val})
        if not overlap and any(self.is_external(r) for r in self.train):
            # Copied shots have their own names; only their bytes can show they are in val.
            copies = identical_files([r for r in self.train if self.is_external(r)], self.val)
            overlap = [f"{val} (same file as shot {shots[0]})" for val, shots in sorted(copies.items())]
        if overlap:
            raise SplitError(
                f"{len(overlap)} validation image(s) are also training shots, e.g. {overlap[:3]}; "
                "validation must use extra images only. Remove them from the split's val part, or "
                "let bob draw the validation images"
            )

    def is_external(self, record: ImageRecord) -> bool:
        """True for an image outside the dataset folder (its path is saved in the split file)."""
        return self.data_dir is not None and record.path != self.data_dir / record.sample_id

    def train_counts(self) -> list[int]:
        counts = [0] * len(self.class_names)
        for record in self.train:
            counts[record.label] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        def entry(record: ImageRecord) -> list[str]:
            if self.is_external(record):
                return [record.sample_id, record.class_name, str(record.path)]
            return [record.sample_id, record.class_name]

        return {
            "format_version": SPLIT_FORMAT_VERSION,
            "dataset": self.dataset,
            "shots": self.shots,
            "seed": self.seed,
            "source": self.source,
            "imbalance_factor": self.imbalance_factor,
            "details": self.details,
            "class_names": self.class_names,
            "class_groups": self.class_groups,
            **{part: [entry(r) for r in getattr(self, part)] for part in PARTS},
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, reader: DatasetReader) -> FewShotSplit:
        """Read a split file and check every entry against the dataset on disk."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise SplitError(f"cannot read split file {path}: {error}") from error
        if not isinstance(payload, dict) or payload.get("format_version") != SPLIT_FORMAT_VERSION:
            raise SplitError(f"{path} is not a bob split file (format_version {SPLIT_FORMAT_VERSION})")
        absent = [key for key in ("dataset", "seed", "shots", "source", "class_names", *PARTS) if key not in payload]
        if absent:
            raise SplitError(f"split file {path} lacks {absent}; make it again (delete it) or fix it")
        if payload["class_names"] != reader.class_names:
            names = payload["class_names"] or []
            unknown = sorted(set(names) - set(reader.class_names))
            not_in_file = sorted(set(reader.class_names) - set(names))
            raise SplitError(
                f"split file {path} was made for other classes than {reader.data_dir} has "
                f"(unknown to the dataset: {unknown[:5]}; not in the file: {not_in_file[:5]}"
                + ("; same classes in another order" if not unknown and not not_in_file else "")
                + "); delete it or point split_file elsewhere"
            )
        parts = {part: _read_part(payload[part], part, path, reader) for part in PARTS}
        return cls(
            dataset=payload["dataset"],
            seed=payload["seed"],
            class_names=payload["class_names"],
            shots=payload["shots"],
            source=payload["source"],
            class_groups=payload.get("class_groups") or {},
            imbalance_factor=payload.get("imbalance_factor"),
            details=payload.get("details") or {},
            data_dir=reader.data_dir,
            **parts,
        )


def _read_part(entries: Any, part: str, path: Path, reader: DatasetReader) -> list[ImageRecord]:
    """The records of one part, each checked: known class, existing file, and for images in the
    dataset folder, listed in the official split (train for train/val, test for test) with that class."""
    if not isinstance(entries, list):
        raise SplitError(f"split file {path} has no list of {part} images")
    label_of = {name: label for label, name in enumerate(reader.class_names)}
    official = {r.sample_id: r for r in reader.records("test" if part == "test" else "train")}
    records, problems = [], {"unknown class": [], "missing file": [], "not in the official split": [], "wrong class": []}
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) in (2, 3) and all(isinstance(v, str) for v in entry)):
            raise SplitError(f"split file {path}: {part} entry {entry!r} is not [sample_id, class_name(, path)]")
        sample_id, class_name = entry[:2]
        if class_name not in label_of:
            problems["unknown class"].append(f"{sample_id} ({class_name})")
            continue
        if len(entry) == 3:
            record = ImageRecord(sample_id, Path(entry[2]), label_of[class_name], class_name)
            if not record.path.is_file():
                problems["missing file"].append(entry[2])
            records.append(record)
            continue
        listed = official.get(sample_id)
        if listed is None:
            kind = "not in the official split" if (reader.data_dir / sample_id).is_file() else "missing file"
            problems[kind].append(str(reader.data_dir / sample_id))
        elif listed.class_name != class_name:
            problems["wrong class"].append(f"{sample_id} ({class_name}, dataset says {listed.class_name})")
        else:
            records.append(listed)
    found = {kind: items for kind, items in problems.items() if items}
    if found:
        raise SplitError(
            f"split file {path} does not match {reader.data_dir}: "
            + "; ".join(f"{len(items)} {part} image(s) with {kind}, e.g. {items[:3]}" for kind, items in found.items())
            + ". Fix the file or delete it so the split is drawn again"
        )
    return records


def records_by_class(records: list[ImageRecord], num_classes: int) -> list[list[ImageRecord]]:
    grouped: list[list[ImageRecord]] = [[] for _ in range(num_classes)]
    for record in records:
        grouped[record.label].append(record)
    return grouped


def shuffled(records: list[ImageRecord], seed: int, class_name: str) -> list[ImageRecord]:
    # One generator per class, keyed by its name: adding a class never changes another's shots.
    ordered = sorted(records, key=lambda r: r.sample_id)
    random.Random(f"{seed}|{class_name}").shuffle(ordered)
    return ordered


def class_pools(reader: DatasetReader, seed: int) -> list[list[ImageRecord]]:
    """Each class's official train images in its seeded order; splits take shots from the front."""
    names = reader.class_names
    grouped = records_by_class(reader.records("train"), len(names))
    return [shuffled(pool, seed, name) for name, pool in zip(names, grouped, strict=True)]


def take_validation(remaining: list[list[ImageRecord]], val_per_class: int, class_names: list[str]) -> list[ImageRecord]:
    """The first ``val_per_class`` of each class's leftover images (fewer where fewer are left)."""
    if val_per_class < 0:
        raise SplitError(f"val_per_class must be >= 0, got {val_per_class}")
    short = [(name, len(pool)) for name, pool in zip(class_names, remaining, strict=True) if len(pool) < val_per_class]
    if short:
        log.warning(
            "%d class(es) have fewer than %d extra images for validation and use all they have, e.g. %s",
            len(short), val_per_class, short[:3],
        )
    return [r for pool in remaining for r in pool[:val_per_class]]


def sample_fewshot_split(reader: DatasetReader, shots: int, seed: int, val_per_class: int) -> FewShotSplit:
    """Draw ``shots`` training images per class and ``val_per_class`` disjoint validation images."""
    if shots < 1:
        raise SplitError(f"shots must be at least 1, got {shots}")
    names = reader.class_names
    pools = class_pools(reader, seed)
    too_small = [(name, len(pool)) for name, pool in zip(names, pools, strict=True) if len(pool) < shots]
    if too_small:
        raise SplitError(
            f"{len(too_small)} class(es) of {reader.data_dir} have fewer than {shots} training images: "
            + ", ".join(f"{n!r} ({c})" for n, c in too_small[:5])
            + "; lower `shots` or add images"
        )
    train = [r for pool in pools for r in pool[:shots]]
    val = take_validation([pool[shots:] for pool in pools], val_per_class, names)
    return FewShotSplit(
        reader.name, seed, list(names), train, val, reader.records("test"), shots=shots,
        details={"val_per_class": val_per_class}, data_dir=reader.data_dir,
    )
