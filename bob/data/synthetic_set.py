"""Reading a synthetic image folder (stage 3 output) as labelled records."""

from __future__ import annotations

import json
from pathlib import Path

from bob.data.errors import BobInputError
from bob.data.records import ImageRecord

MANIFEST_LINES = "manifest.jsonl"
MANIFEST_SUMMARY = "manifest.json"


class SyntheticSetError(BobInputError):
    """A synthetic folder is missing, incomplete, or made for other classes."""


def read_manifest_lines(folder: Path) -> list[dict]:
    path = folder / MANIFEST_LINES
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise SyntheticSetError(f"{path}:{number} is not JSON: {error}") from error
    return entries


def load_synthetic_records(folder: str | Path, class_names: list[str]) -> list[ImageRecord]:
    """The images of a synthetic folder, labelled in the dataset's class order.

    Raises `SyntheticSetError` when the folder is missing, when its manifest says generation
    has not finished, or when it holds classes the dataset does not have.
    """
    folder = Path(folder)
    summary_path = folder / MANIFEST_SUMMARY
    if not summary_path.is_file() or not (folder / MANIFEST_LINES).is_file():
        raise SyntheticSetError(
            f"no synthetic image set at {folder} (expected {MANIFEST_SUMMARY} and {MANIFEST_LINES}); "
            "the generation stage makes it: `python main.py predict -c configs/<dataset>/generate.yaml`"
        )
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if not summary.get("complete", False):
        raise SyntheticSetError(
            f"synthetic set {folder} is incomplete ({summary.get('num_images', '?')} of "
            f"{summary.get('num_planned', '?')} images); rerun the generation stage to finish it"
        )
    label_of = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(summary.get("class_names", [])) - set(label_of))
    if unknown:
        raise SyntheticSetError(
            f"synthetic set {folder} has classes the dataset does not: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}; it was generated for another dataset or split"
        )
    records = []
    for entry in read_manifest_lines(folder):
        path = folder / entry["file"]
        if not path.is_file():
            raise SyntheticSetError(f"{folder / MANIFEST_LINES} lists {entry['file']}, which is missing")
        records.append(ImageRecord(f"synthetic/{entry['file']}", path, label_of[entry["class_name"]], entry["class_name"]))
    return sorted(records, key=lambda r: r.sample_id)
