"""Few-shot splits made elsewhere: a bob split file, a list of image paths, or a ``<k>shot/train/<class>/`` folder."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from bob.data.datasets.base import DatasetReader
from bob.data.datasets.folders import IMAGE_SUFFIXES
from bob.data.errors import SplitError
from bob.data.fingerprints import identical_files
from bob.data.folder_names import match_class_folders
from bob.data.longtail import longtail_group
from bob.data.records import ImageRecord
from bob.data.splits import FewShotSplit, class_pools, take_validation

log = logging.getLogger(__name__)

_SHOT_FOLDER = re.compile(r"^(\d+)shot$")
#: Diff-II names long-tail folders by their tail / head ratio: ``imb_cub_0.01`` is imbalance factor 100.
_RATIO_SUFFIX = re.compile(r"_(\d+(?:\.\d+)?)$")


def load_split_source(
    source: str | Path, reader: DatasetReader, shots: int | None, seed: int, val_per_class: int
) -> FewShotSplit:
    """Build a split from an external source, checked against the dataset.

    - ``*.json``: a bob split file, used as it is (its ``shots`` must equal ``shots``).
    - a folder: the Diff-II layout ``<k>shot/train/<class folder>/<n>.jpg`` (give the
      ``<k>shot`` folder or the folder holding it); the images are copies, matched to classes by
      `bob.data.folder_names.folder_key`, and their sample ids are their paths from the folder
      holding ``<k>shot``.
    - any other file: one image path per line, relative to the dataset folder
      (``data/images/1025794.jpg``); blank lines and ``#`` comments are skipped.

    For a list or a folder, validation images are drawn (seeded) from the official train images
    that are not shots; copied shots are recognised by their bytes.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_shot_folder(path, reader, _need_shots(shots, path), seed, val_per_class)
    if not path.is_file():
        raise SplitError(
            f"split_source {path} does not exist. The dataset configs use the paper's few-shot splits "
            "from Diff-II: download them with `hf download Luka-Wang/Diff-II datasets.zip --repo-type "
            "dataset`, unzip, and move its datasets/ folder to data/diff-ii (docs/datasets.md), so that "
            f"{path}/<k>shot/train/<class>/ exists. Or set split_source: null to draw a seeded split, or "
            "give a bob split file (.json) or a text file with one image path per line"
        )
    if path.suffix.lower() == ".json":
        split = FewShotSplit.load(path, reader)
        if split.shots != shots:
            raise SplitError(f"split file {path} has {split.shots} shots per class but shots is {shots}; set shots to match")
        split.details = {**split.details, "made_as": split.source}
        split.source = str(path.resolve())
        return split
    return _from_path_list(path, reader, _need_shots(shots, path), seed, val_per_class)


def _need_shots(shots: int | None, path: Path) -> int:
    if shots is None:
        raise SplitError(f"set shots to the number of images per class that {path} gives")
    return shots


def _check_counts(train: list[ImageRecord], reader: DatasetReader, shots: int, where: Path) -> None:
    counts = Counter(r.label for r in train)
    wrong = [(name, counts[label]) for label, name in enumerate(reader.class_names) if counts[label] != shots]
    if wrong:
        raise SplitError(
            f"{where} must give exactly shots={shots} image(s) for each of the {len(reader.class_names)} "
            f"classes, but {len(wrong)} class(es) differ: "
            + ", ".join(f"{name!r} has {count}" for name, count in wrong[:5])
            + "; complete the source or set shots to match"
        )


def _validation(reader: DatasetReader, seed: int, val_per_class: int, excluded: set[str]) -> list[ImageRecord]:
    pools = [[r for r in pool if r.sample_id not in excluded] for pool in class_pools(reader, seed)]
    return take_validation(pools, val_per_class, reader.class_names)


def _from_path_list(path: Path, reader: DatasetReader, shots: int, seed: int, val_per_class: int) -> FewShotSplit:
    official = {r.sample_id: r for r in reader.records("train")}
    in_test = {r.sample_id for r in reader.records("test")}
    prefix = f"{reader.archive_folder}/" if reader.archive_folder else ""
    train: list[ImageRecord] = []
    listed: set[str] = set()
    problems: dict[str, list[str]] = {"in the official test split": [], "not in the official train split": [], "missing": [], "listed twice": []}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip().replace("\\", "/").removeprefix("./")
        if not text or text.startswith("#"):
            continue
        # Paths written from the dataset root's parent carry the archive folder; accept them too.
        sample_id = text[len(prefix):] if prefix and text.startswith(prefix) and text not in official else text
        where = f"line {number}: {text}"
        if sample_id in listed:
            problems["listed twice"].append(where)
        elif sample_id in official:
            listed.add(sample_id)
            train.append(official[sample_id])
        elif sample_id in in_test:
            problems["in the official test split"].append(where)
        elif (reader.data_dir / sample_id).is_file():
            problems["not in the official train split"].append(where)
        else:
            problems["missing"].append(f"{where} (no file {reader.data_dir / sample_id})")
    found = {kind: items for kind, items in problems.items() if items}
    if found:
        raise SplitError(
            f"split list {path} names images the few-shot split cannot use (paths must be relative to "
            f"{reader.data_dir} and in its official train split): "
            + "; ".join(f"{len(items)} {kind}, e.g. {items[:3]}" for kind, items in found.items())
        )
    _check_counts(train, reader, shots, path)
    train.sort(key=lambda r: (r.label, r.sample_id))
    val = _validation(reader, seed, val_per_class, {r.sample_id for r in train})
    return FewShotSplit(
        reader.name, seed, list(reader.class_names), train, val, reader.records("test"), shots=shots,
        source=str(path.resolve()), details={"val_per_class": val_per_class}, data_dir=reader.data_dir,
    )


def _shot_folder(path: Path, shots: int) -> Path:
    """``path/train`` when ``path`` is a ``<k>shot`` folder, else ``path/<shots>shot/train``."""
    if (path / "train").is_dir():
        named = _SHOT_FOLDER.match(path.name)
        if named and int(named.group(1)) != shots:
            raise SplitError(f"{path} holds a {named.group(1)}-shot split but shots is {shots}; set shots to match")
        return path / "train"
    if (path / f"{shots}shot" / "train").is_dir():
        return path / f"{shots}shot" / "train"
    found = sorted(p.name for p in path.iterdir() if p.is_dir())
    raise SplitError(
        f"{path} is not a few-shot split folder: expected {path / f'{shots}shot'}/train/<class>/<image> "
        f"or {path}/train/<class>/<image>; found folders {found[:10]}"
    )


def _folder_images(train_dir: Path, reader: DatasetReader) -> tuple[list[ImageRecord], dict[str, int]]:
    """The images under ``train_dir/<class folder>/``, named from the folder above ``train``."""
    base = train_dir.parent.parent
    entries = sorted(train_dir.iterdir())
    stray = [e.name for e in entries if not e.is_dir()]
    if stray:
        raise SplitError(f"{train_dir} should hold only class folders but has files {stray[:5]}; move them out")
    label_of = match_class_folders([e.name for e in entries], reader.class_names, str(train_dir))
    names = reader.class_names
    train, not_images = [], []
    for folder in entries:
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                not_images.append(str(file))
                continue
            label = label_of[folder.name]
            train.append(ImageRecord(file.relative_to(base).as_posix(), file.resolve(), label, names[label]))
    if not_images:
        raise SplitError(
            f"{len(not_images)} file(s) under {train_dir} are not images (allowed suffixes "
            f"{sorted(IMAGE_SUFFIXES)}), e.g. {not_images[0]}; move them out"
        )
    return train, label_of


def _official_copies(train: list[ImageRecord], reader: DatasetReader, train_dir: Path) -> tuple[set[str], int]:
    """Official train images the copied ``train`` images are byte-identical to (kept out of
    validation), and how many of ``train`` have such an original."""
    in_test = identical_files(reader.records("test"), train)
    if in_test:
        shot, found = next(iter(sorted(in_test.items())))
        raise SplitError(
            f"{len(in_test)} image(s) under {train_dir} are copies of official test images (e.g. {shot} is "
            f"{found[0]}): the test split would hold training images; use a split made from the train split"
        )
    shot_of = {r.sample_id: r for r in train}
    originals = identical_files(reader.records("train"), train)  # shot sample id -> official sample ids
    official = {r.sample_id: r for r in reader.records("train")}
    # A dataset may hold the same file under two classes; a shot is misfiled only if none is its own.
    relabelled = [
        f"{shot} is a copy of {found[0]} ({official[found[0]].class_name!r}, not {shot_of[shot].class_name!r})"
        for shot, found in originals.items()
        if all(official[original].label != shot_of[shot].label for original in found)
    ]
    if relabelled:
        raise SplitError(f"{len(relabelled)} image(s) under {train_dir} sit in the wrong class folder: {relabelled[:3]}")
    unmatched = len(train) - len(originals)
    log.info("%d of %d images under %s are byte-identical to official train images; those are kept out of validation",
             len(train) - unmatched, len(train), train_dir)
    if unmatched:
        log.warning(
            "%d image(s) under %s match no official train image byte for byte (re-encoded copies?); "
            "validation cannot be checked against them", unmatched, train_dir,
        )
    return {o for found in originals.values() for o in found}, len(originals)


def _from_shot_folder(path: Path, reader: DatasetReader, shots: int, seed: int, val_per_class: int) -> FewShotSplit:
    train_dir = _shot_folder(path, shots)
    train, label_of = _folder_images(train_dir, reader)
    _check_counts(train, reader, shots, train_dir)
    copied, found = _official_copies(train, reader, train_dir)
    names = reader.class_names
    return FewShotSplit(
        reader.name, seed, list(names), train, _validation(reader, seed, val_per_class, copied),
        reader.records("test"), shots=shots, source=str(path.resolve()),
        details={
            "val_per_class": val_per_class,
            "shots_found_in_train": found,
            "class_folders": {folder: names[label] for folder, label in sorted(label_of.items())},
        },
        data_dir=reader.data_dir,
    )


def load_longtail_source(
    source: str | Path, reader: DatasetReader, imbalance_factor: float, seed: int, val_per_class: int,
    many_above: int, few_below: int,
) -> FewShotSplit:
    """A long-tail split from a Diff-II folder ``imb_<dataset>_<ratio>/train/<class folder>/<n>.jpg``.

    Every image under ``train`` is a training image (their counts per class make the tail);
    classes are grouped many / medium / few by those counts. Validation images are drawn from
    the official train images that are not among them, unless the data module takes validation
    and test from index files (`bob.data.release_indices`).
    """
    path = Path(source).expanduser()
    train_dir = path / "train"
    if not train_dir.is_dir():
        raise SplitError(
            f"split_source {path} is not a long-tail split folder (expected {train_dir}/<class>/<image>). The "
            "long-tail dataset configs use Diff-II's folders: download them with `hf download Luka-Wang/Diff-II "
            "datasets.zip --repo-type dataset` and move its datasets/ folder to data/diff-ii (docs/datasets.md); "
            "or set split_source: null to draw a seeded long-tail split"
        )
    ratio = _RATIO_SUFFIX.search(path.name)
    if ratio and float(ratio.group(1)) > 0 and abs(1 / float(ratio.group(1)) - imbalance_factor) > 1e-6 * imbalance_factor:
        raise SplitError(
            f"{path} is the long-tail split of ratio {ratio.group(1)} (imbalance factor {1 / float(ratio.group(1)):g}) "
            f"but imbalance_factor is {imbalance_factor:g}; point split_source at imb_<dataset>_{1 / imbalance_factor:g}"
        )
    train, label_of = _folder_images(train_dir, reader)
    names = reader.class_names
    counts = Counter(r.label for r in train)
    empty = [name for label, name in enumerate(names) if not counts[label]]
    if empty:
        raise SplitError(f"{train_dir} has no images of {len(empty)} class(es), e.g. {empty[:3]}; every class needs one")
    if few_below > many_above + 1:
        raise SplitError(f"long-tail groups need few_below <= many_above + 1, got few_below={few_below}, many_above={many_above}")
    copied, found = _official_copies(train, reader, train_dir)
    groups = {names[label]: longtail_group(counts[label], many_above, few_below) for label in range(len(names))}
    return FewShotSplit(
        reader.name, seed, list(names), train, _validation(reader, seed, val_per_class, copied),
        reader.records("test"), shots=None, source=str(path.resolve()), class_groups=groups,
        imbalance_factor=imbalance_factor,
        details={
            "val_per_class": val_per_class, "many_above": many_above, "few_below": few_below,
            "images_found_in_train": found,
            "class_folders": {folder: names[label] for folder, label in sorted(label_of.items())},
        },
        data_dir=reader.data_dir,
    )
