"""The caption bank: class-agnostic context (background, pose, ...) for every real training image."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bob.atomic import atomic_write, atomic_write_json
from bob.data.errors import BobInputError
from bob.data.prompt_fit import fit_context_to_token_limit, longest_class_name, token_limit
from bob.data.prompts import PromptTemplate
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
        notes: what cleaning did, ``<what>:<attribute>``: ``redacted`` (the class was named and
            replaced by the descriptor), ``retried`` (the first answer was empty),
            ``shortened`` (cut to fit a text encoder's token limit).
    """

    sample_id: str
    class_name: str
    attributes: dict[str, str]
    raw: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class CaptionBank:
    """One `CaptionRecord` per real training image, saved as ``records.jsonl`` + ``manifest.json``.

    The manifest says what made the bank (source, model, questions, input fingerprints,
    package versions) and, for a captioning run, whether it is ``complete``: images that failed
    are listed under ``failed`` (sample id -> reason) and ``missing``.

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

    @property
    def complete(self) -> bool:
        """False when the captioning run that made the bank could not caption every image."""
        return bool(self.manifest.get("complete", True))

    def note_counts(self) -> dict[str, int]:
        """Records per cleaning note kind, e.g. ``{"redacted": 3, "shortened": 40}``."""
        counts: Counter[str] = Counter()
        for record in self.records.values():
            counts.update({note.split(":", 1)[0] for note in record.notes})
        return dict(sorted(counts.items()))

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
        if not problems:
            return
        failed = self.manifest.get("failed") or {}
        if failed:
            shown = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
            problems.append(f"the captioning run reported {len(failed)} failure(s) ({shown})")
        raise CaptionBankError(
            "the caption bank does not match the split: " + "; ".join(problems)
            + ". Re-run the caption stage on this split (it resumes and retries what failed), "
            "or point to the bank made for it."
        )

    def fit_to_token_limit(
        self,
        template: PromptTemplate,
        tokenizer: Any,
        class_names: Iterable[str],
        max_tokens: int | None = None,
    ) -> CaptionBank:
        """A copy whose contexts make prompts within the text encoder's token limit for any class.

        Contexts are drawn across classes at generation time, so each is fitted against the
        class name with the most tokens (see `bob.data.prompt_fit`); the shortened records keep
        their original text in ``raw`` and a ``shortened:<attribute>`` note, and the manifest
        records the fit under ``prompt_fit``.

        Args:
            template: the prompt template of the stage that will use the bank.
            tokenizer: that stage's text-encoder tokenizer.
            class_names: the class names (as they appear in prompts) the contexts will meet.
            max_tokens: the limit, begin/end tokens included; None uses ``model_max_length``.
        """
        template.check_attributes(self.attributes)
        limit = token_limit(tokenizer, max_tokens)
        worst_class = longest_class_name(class_names, tokenizer)
        records, shortened_captions = [], 0
        for record in self.records.values():
            fitted, shortened = fit_context_to_token_limit(template, worst_class, record.attributes, tokenizer, limit)
            raw = dict(record.raw)
            for attribute in shortened:
                raw.setdefault(attribute, record.attributes[attribute])
            attributes = {**record.attributes, **fitted}
            notes = record.notes + [f"shortened:{a}" for a in shortened if f"shortened:{a}" not in record.notes]
            records.append(replace(record, attributes=attributes, raw=raw, notes=notes))
            shortened_captions += len(shortened)
        fit = {
            "template": template.template,
            "tokenizer": getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
            "max_tokens": limit,
            "longest_class_name": worst_class,
            "num_shortened_captions": shortened_captions,
            "num_shortened_records": sum(1 for r in records if any(n.startswith("shortened:") for n in r.notes)),
        }
        return CaptionBank(records, self.attributes, {**self.manifest, "prompt_fit": fit})

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        lines = "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in self.records.values())
        atomic_write(folder / RECORDS_FILE, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
        manifest = {
            **self.manifest,
            "attributes": self.attributes,
            "num_records": len(self.records),
            "note_counts": self.note_counts(),
        }
        atomic_write_json(folder / MANIFEST_FILE, manifest)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> CaptionBank:
        folder = Path(folder)
        manifest_path, records_path = folder / MANIFEST_FILE, folder / RECORDS_FILE
        if not manifest_path.is_file() or not records_path.is_file():
            raise CaptionBankError(
                f"no caption bank at {folder} (expected {MANIFEST_FILE} and {RECORDS_FILE}); "
                "run the caption stage (`python main.py predict -c configs/captions.yaml -c configs/datasets/<dataset>.yaml`) "
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
