"""The paper's released caption format: one ``<attribute>.tsv`` per attribute, ``image<TAB>response``."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jsonargparse import auto_cli

from bob.atomic import atomic_write_text
from bob.data.caption_bank import DEFAULT_ATTRIBUTES, CaptionBank, CaptionBankError, CaptionRecord
from bob.data.caption_cleaning import LeakRedactor, strip_trailing_periods
from bob.data.datasets.base import DatasetReader
from bob.data.fingerprints import file_sha256
from bob.data.folder_names import folder_key
from bob.data.records import ImageRecord
from bob.data.splits import FewShotSplit

log = logging.getLogger(__name__)

HEADER = "image\tresponse"


def read_response_tsv(path: str | Path) -> dict[str, str]:
    """``image path -> response`` from one released TSV file."""
    path = Path(path)
    if not path.is_file():
        raise CaptionBankError(f"caption file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != HEADER:
        found = lines[0] if lines else "an empty file"
        raise CaptionBankError(f"{path} must start with the header {HEADER!r}, found {found!r}")
    responses: dict[str, str] = {}
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        image, tab, response = line.partition("\t")
        if not tab or not image:
            raise CaptionBankError(f"{path}:{number} is not '<image><TAB><response>': {line[:80]!r}")
        if image in responses:
            raise CaptionBankError(f"{path}:{number} repeats image {image!r}")
        responses[image] = response
    return responses


def write_response_tsv(path: str | Path, responses: Mapping[str, str]) -> Path:
    for image, response in responses.items():
        if any(c in image + response for c in "\t\n\r"):
            raise CaptionBankError(f"cannot write {image!r} to TSV: a tab or newline is in the key or text")
    body = "".join(f"{image}\t{response}\n" for image, response in responses.items())
    return atomic_write_text(path, f"{HEADER}\n{body}")


def read_tsv_pair(folder: str | Path, attributes: Iterable[str] = DEFAULT_ATTRIBUTES) -> dict[str, dict[str, str]]:
    """``image -> {attribute: response}`` from ``<folder>/<attribute>.tsv`` files whose keys must agree."""
    folder = Path(folder)
    attributes = list(attributes)
    per_attribute = {a: read_response_tsv(folder / f"{a}.tsv") for a in attributes}
    first = attributes[0]
    keys = set(per_attribute[first])
    for attribute in attributes[1:]:
        other = set(per_attribute[attribute])
        if other != keys:
            only_first = sorted(keys - other)
            only_other = sorted(other - keys)
            raise CaptionBankError(
                f"{folder}: {first}.tsv and {attribute}.tsv are keyed by different images: "
                f"{len(only_first)} only in {first}.tsv (e.g. {only_first[:3]}), "
                f"{len(only_other)} only in {attribute}.tsv (e.g. {only_other[:3]}); "
                "both files must describe the same images"
            )
    if not keys:
        raise CaptionBankError(
            f"{folder}: {', '.join(f'{a}.tsv' for a in attributes)} hold only the header line, no caption; "
            "point at the folder of the published TSV files"
        )
    return {image: {a: per_attribute[a][image] for a in attributes} for image in per_attribute[first]}


def _path_parts(image: str) -> list[str]:
    return [p for p in image.replace("\\", "/").split("/") if p not in ("", ".", "..")]


def split_folder_key(image: str) -> str:
    """The sample id a Diff-II split folder gives the image an authors' TSV key names.

    The release keys captions by paths on the authors' disk
    (``../dataset/datasets/aircraft/5shot/train/707-320/2.jpg``); bob names the images of a
    split folder from the folder above ``train`` (``5shot/train/707-320/2.jpg``,
    ``imb_cub_0.01/train/<class>/<n>.jpg``). Keys without a ``train/<class>/<file>`` tail are
    kept as they are.
    """
    parts = _path_parts(image)
    if len(parts) >= 4 and parts[-3] == "train":
        return "/".join(parts[-4:])
    return image


def match_images_to_records(images: Iterable[str], train: list[ImageRecord]) -> dict[str, ImageRecord]:
    """Pair each TSV image path with the training image whose sample id ends it.

    The release keys images by paths on the authors' disk (``../dataset/.../train/707-320/2.jpg``);
    a split whose sample ids are those paths' tails (a `ClassFolders` copy of the authors'
    folders) matches them. Raises when an image matches no record or a record no image.
    """
    by_id = {r.sample_id: r for r in train}
    matched: dict[str, ImageRecord] = {}
    unmatched = []
    for image in images:
        parts = _path_parts(image)
        tails = ("/".join(parts[i:]) for i in range(len(parts)))
        record = next((by_id[t] for t in tails if t in by_id), None)
        if record is None:
            unmatched.append(image)
        else:
            matched[image] = record
    uncovered = sorted(set(by_id) - {r.sample_id for r in matched.values()})
    if unmatched or uncovered:
        raise CaptionBankError(
            f"the TSV captions do not match the split: {len(unmatched)} captioned image(s) are not "
            f"training images of the split (e.g. {unmatched[:3]}), {len(uncovered)} training image(s) "
            f"have no caption (e.g. {uncovered[:3]}). Import without a split to get a bank for context "
            "sampling only, or use the split the captions were made for."
        )
    return matched


def _class_of_key(image: str, class_by_key: dict[str, str] | None, unknown: set[str]) -> str:
    parts = _path_parts(image)
    folder = parts[-2] if len(parts) > 1 else ""
    if class_by_key is None:
        return folder
    name = class_by_key.get(folder_key(folder))
    if name is None:
        unknown.add(folder)
        return folder
    return name


def import_tsv_bank(
    folder: str | Path,
    attributes: Iterable[str] = DEFAULT_ATTRIBUTES,
    train: list[ImageRecord] | None = None,
    class_names: list[str] | None = None,
    descriptor: str | None = None,
    redact_leaks: bool = False,
) -> CaptionBank:
    """A `CaptionBank` from the released TSV files in ``folder``.

    With ``train`` the images are matched to the split's training images (sample ids and
    classes from the split); without it, sample ids are those a Diff-II split folder gives the
    images (`split_folder_key`) and classes the keys' parent folders, mapped onto
    ``class_names`` when given, so the bank of a published TSV pair fits the run that uses
    the same Diff-II folder as its ``split_source``. Answers keep their published text: only
    surrounding blanks and trailing periods are stripped, as the authors' code does. With
    ``redact_leaks`` mentions of the image's class are replaced by ``descriptor``.
    """
    folder = Path(folder)
    attributes = list(attributes)
    captions = read_tsv_pair(folder, attributes)
    matched = match_images_to_records(captions, train) if train is not None else {}
    if redact_leaks and not descriptor:
        raise CaptionBankError("redact_leaks replaces class names by the descriptor: give --descriptor too")
    redactor = LeakRedactor(descriptor) if redact_leaks else None
    class_by_key = {folder_key(c): c for c in class_names} if class_names is not None else None
    records, unknown = [], set()
    for image, answers in captions.items():
        if image in matched:
            sample_id, class_name = matched[image].sample_id, matched[image].class_name
        else:
            sample_id, class_name = split_folder_key(image), _class_of_key(image, class_by_key, unknown)
        records.append(_cleaned_record(sample_id, class_name, answers, redactor))
    if unknown:
        raise CaptionBankError(
            f"{folder}: {len(unknown)} class folder(s) of the captioned images are not classes of the "
            f"dataset: {sorted(unknown)[:5]}; the captions were made for another dataset"
        )
    manifest: dict[str, Any] = {
        "source": "tsv",
        "tsv_files": {a: {"file": str(folder / f"{a}.tsv"), "sha256": file_sha256(folder / f"{a}.tsv")} for a in attributes},
        "descriptor": descriptor,
        "redact_leaks": redact_leaks,
        "matched_to_split": train is not None,
        "complete": True,
    }
    return CaptionBank(records, attributes, manifest)


def _cleaned_record(
    sample_id: str, class_name: str, answers: Mapping[str, str], redactor: LeakRedactor | None
) -> CaptionRecord:
    attributes, raw, notes = {}, {}, []
    for attribute, answer in answers.items():
        text = strip_trailing_periods(answer)
        if redactor is not None:
            text, mentions = redactor.redact(text, class_name)
            if mentions:
                notes.append(f"redacted:{attribute}")
        if not text:
            raise CaptionBankError(f"the {attribute} caption of {sample_id!r} is empty")
        if text != answer:
            raw[attribute] = answer
        attributes[attribute] = text
    return CaptionRecord(sample_id, class_name, attributes, raw, notes)


def export_tsv_bank(bank: CaptionBank, folder: str | Path, use_raw: bool = False) -> list[Path]:
    """Write ``<folder>/<attribute>.tsv`` per attribute, keyed by sample id.

    Args:
        bank: the bank to export.
        folder: where the files go.
        use_raw: write the answers as the captioner gave them instead of the cleaned texts.
    """
    folder = Path(folder)
    paths = []
    for attribute in bank.attributes:
        responses = {
            r.sample_id: (r.raw.get(attribute, r.attributes[attribute]) if use_raw else r.attributes[attribute])
            for r in bank.records.values()
        }
        paths.append(write_response_tsv(folder / f"{attribute}.tsv", responses))
    return paths


def import_bank(
    tsv_dir: str,
    output_dir: str,
    descriptor: str | None = None,
    attributes: list[str] | None = None,
    dataset: DatasetReader | None = None,
    split_file: str | None = None,
    redact_leaks: bool = False,
    overwrite: bool = False,
) -> None:
    """Import released TSV captions as a caption bank folder.

    Args:
        tsv_dir: folder with ``background.tsv`` and ``pose.tsv`` (``image<TAB>response``).
        output_dir: where the bank (``records.jsonl`` + ``manifest.json``) is written; it must be
            empty or absent unless ``overwrite`` is set.
        descriptor: the dataset's super-category, recorded in the bank's manifest.
        attributes: the TSV files to read, one per attribute; default background and pose.
        dataset: the dataset reader; its class names map the captions' class folders.
        split_file: a split file of ``dataset`` whose training images are the captioned ones;
            without it the bank is keyed by the TSV paths (fine for context sampling).
        redact_leaks: replace mentions of an image's class by ``descriptor`` (off: the published
            text is kept, as the authors used it).
        overwrite: replace whatever ``output_dir`` holds (the whole folder, so no file of an
            earlier bank is left beside the new one).
    """
    target = Path(output_dir)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise CaptionBankError(
            f"{target} is not empty ({', '.join(sorted(p.name for p in target.iterdir())[:5])}); "
            "import into a new folder, or pass --overwrite to replace it"
        )
    train = class_names = None
    if split_file is not None:
        if dataset is None:
            raise CaptionBankError("split_file needs the dataset it belongs to (--dataset)")
        split = FewShotSplit.load(split_file, dataset)
        train, class_names = split.train, split.class_names
    elif dataset is not None:
        class_names = dataset.class_names
    bank = import_tsv_bank(tsv_dir, attributes or DEFAULT_ATTRIBUTES, train, class_names, descriptor, redact_leaks)
    # Built beside the target and swapped in whole: a failed import leaves the old bank as it was.
    staging = target.with_name(f".{target.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    bank.save(staging)
    if target.exists():
        retired = target.with_name(f".{target.name}.replaced")
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    log.info(
        "imported %d records from %s into %s (%s)", len(bank), tsv_dir, output_dir,
        ", ".join(f"{n} {k}" for k, n in bank.note_counts().items()) or "published text kept",
    )


def export_bank(bank_dir: str, tsv_dir: str, use_raw: bool = False) -> None:
    """Export a caption bank folder as released-format TSV files.

    Args:
        bank_dir: the caption bank folder.
        tsv_dir: where ``<attribute>.tsv`` files are written.
        use_raw: write the answers as the captioner gave them, not the cleaned texts.
    """
    paths = export_tsv_bank(CaptionBank.load(bank_dir), tsv_dir, use_raw)
    log.info("wrote %s", ", ".join(str(p) for p in paths))


def main(args: list[str] | None = None) -> None:
    """``python -m bob.data.caption_tsv {import,export} ...``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    auto_cli({"import": import_bank, "export": export_bank}, args=args)


if __name__ == "__main__":
    from bob.console import input_errors_as_one_line

    with input_errors_as_one_line():
        main()
