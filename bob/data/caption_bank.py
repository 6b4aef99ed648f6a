"""The caption bank: class-agnostic context (background, pose, ...) for every real training image."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bob.atomic import atomic_write, atomic_write_json
from bob.data.errors import BobInputError
from bob.data.records import ImageRecord

RECORDS_FILE = "records.jsonl"
MANIFEST_FILE = "manifest.json"
DEFAULT_ATTRIBUTES = ("background", "pose")


class CaptionBankError(BobInputError):
    """A caption bank is missing, malformed, or does not match the split it is used with."""


@dataclass
class CaptionRecord:
    """The context of one real image.

    Args:
        sample_id: the image's sample id (see `ImageRecord`).
        class_name: its raw class name (kept for checks; never put into a caption).
        attributes: attribute name -> cleaned text, e.g. ``{"background": "grass, sky"}``.
        raw: attribute name -> the text as first produced, when cleaning changed it.
        notes: what cleaning did, e.g. ``["redacted:background", "shortened:pose"]``.
    """

    sample_id: str
    class_name: str
    attributes: dict[str, str]
    raw: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class CaptionBank:
    """One `CaptionRecord` per real training image, saved as ``records.jsonl`` + ``manifest.json``.

    Args:
        records: the records, any order (kept sorted by sample id).
        attributes: the attribute names every record carries, in prompt order.
        manifest: what made the bank (source, model, questions, counts); saved alongside.
    """

    def __init__(
        self,
        records: Iterable[CaptionRecord],
        attributes: Iterable[str] = DEFAULT_ATTRIBUTES,
        manifest: dict[str, Any] | None = None,
    ):
        self.attributes = list(attributes)
        self.records: dict[str, CaptionRecord] = {}
        for record in records:
            missing = [a for a in self.attributes if a not in record.attributes]
            if missing:
                raise CaptionBankError(f"caption record {record.sample_id!r} lacks attribute(s) {missing}")
            if record.sample_id in self.records:
                raise CaptionBankError(f"caption bank has two records for {record.sample_id!r}")
            self.records[record.sample_id] = record
        self.records = dict(sorted(self.records.items()))
        self.manifest = dict(manifest or {})

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, sample_id: str) -> CaptionRecord:
        return self.records[sample_id]

    def contexts(self) -> list[dict[str, str]]:
        """All (attribute -> text) contexts in sample-id order; pairs are never split apart."""
        return [dict(r.attributes) for r in self.records.values()]

    def check_matches(self, train: list[ImageRecord]) -> None:
        """Raise unless the bank has exactly one record per training image, with the same class."""
        expected = {r.sample_id: r.class_name for r in train}
        missing = sorted(set(expected) - set(self.records))
        extra = sorted(set(self.records) - set(expected))
        wrong_class = sorted(
            s for s in set(expected) & set(self.records) if self.records[s].class_name != expected[s]
        )
        problems = []
        if missing:
            problems.append(f"{len(missing)} training image(s) have no caption, e.g. {missing[:3]}")
        if extra:
            problems.append(f"{len(extra)} caption(s) are for images not in the split, e.g. {extra[:3]}")
        if wrong_class:
            problems.append(f"{len(wrong_class)} caption(s) name another class, e.g. {wrong_class[:3]}")
        if problems:
            raise CaptionBankError(
                "the caption bank does not match the split: " + "; ".join(problems)
                + ". Re-run the caption stage on this split, or point to the bank made for it."
            )

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        lines = "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in self.records.values())
        atomic_write(folder / RECORDS_FILE, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
        manifest = {**self.manifest, "attributes": self.attributes, "num_records": len(self.records)}
        atomic_write_json(folder / MANIFEST_FILE, manifest)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> CaptionBank:
        folder = Path(folder)
        manifest_path, records_path = folder / MANIFEST_FILE, folder / RECORDS_FILE
        if not manifest_path.is_file() or not records_path.is_file():
            raise CaptionBankError(
                f"no caption bank at {folder} (expected {MANIFEST_FILE} and {RECORDS_FILE}); "
                "run the caption stage (`python main.py predict -c configs/<dataset>/captions.yaml`) "
                "or import the published TSV files"
            )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        records = []
        for number, line in enumerate(records_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(CaptionRecord(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as error:
                raise CaptionBankError(f"{records_path}:{number} is not a caption record: {error}") from error
        if not records:
            raise CaptionBankError(f"caption bank {folder} has no records")
        return cls(records, manifest.get("attributes", DEFAULT_ATTRIBUTES), manifest)
