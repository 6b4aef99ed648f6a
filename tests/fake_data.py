"""Fake datasets in each supported on-disk layout, written by code (no committed binaries)."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

AIRCRAFT_CLASSES = ["707-320", "F/A-18", "F-16A/B", "Cessna 172"]
CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
CARS_CLASSES = [
    "AM General Hummer SUV 2000",
    "Ram C/V Cargo Van Minivan 2012",
    "Bentley Continental Supersports Conv. Convertible 2012",
]
PETS_CLASSES = ["Abyssinian", "american_bulldog", "staffordshire_bull_terrier"]

_seeds = itertools.count(10_000)


def write_image(path: Path, seed: int, size: int = 32) -> Path:
    """A small solid-colour PNG/JPEG with a stripe, distinct per seed.

    The seed's bits are drawn into the top row, so no two fakes are byte-identical even when
    JPEG rounds two close colours to the same one (content-hash checks rely on that).
    """
    rng = random.Random(seed)
    colour = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", (size, size), colour)
    for x in range(size):
        image.putpixel((x, size // 2), (255 - colour[0], 255 - colour[1], 255 - colour[2]))
    for bit in range(min(size, 24)):
        image.putpixel((bit, 0), (255, 255, 255) if seed >> bit & 1 else (0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_class_folders(
    root: Path, classes: list[str], train_per_class: int = 12, test_per_class: int = 3, suffix: str = ".png",
    size: int = 32,
) -> Path:
    """``root/{train,test}/<class>/<n>.png``, images of ``size`` x ``size`` pixels."""
    seed = 0
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in classes:
            for i in range(count):
                seed += 1
                write_image(root / split / name / f"{name}_{i:03d}{suffix}", seed, size)
    return root


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def make_fgvc_aircraft(
    root: Path, classes: list[str] = AIRCRAFT_CLASSES, train_per_class: int = 12, test_per_class: int = 3
) -> Path:
    """``root/fgvc-aircraft-2013b/data/``: variants.txt, images_variant_{trainval,test}.txt, images/<id>.jpg."""
    data = root / "fgvc-aircraft-2013b" / "data"
    _write_lines(data / "variants.txt", classes)
    image_ids = itertools.count(1_000_000)
    for split, count in (("trainval", train_per_class), ("test", test_per_class)):
        lines = []
        for name in classes:
            for _ in range(count):
                image_id = next(image_ids)
                write_image(data / "images" / f"{image_id}.jpg", next(_seeds))
                lines.append(f"{image_id} {name}")
        _write_lines(data / f"images_variant_{split}.txt", lines)
    return root


def make_cub200(root: Path, classes: list[str] = CUB_CLASSES, train_per_class: int = 12, test_per_class: int = 3) -> Path:
    """``root/CUB_200_2011/``: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/."""
    base = root / "CUB_200_2011"
    _write_lines(base / "classes.txt", [f"{i} {name}" for i, name in enumerate(classes, 1)])
    images, labels, split = [], [], []
    image_id = 0
    for label, name in enumerate(classes, 1):
        bird = name.split(".", 1)[1]
        for n in range(train_per_class + test_per_class):
            image_id += 1
            relative = f"{name}/{bird}_{n:04d}_{image_id}.jpg"
            write_image(base / "images" / relative, next(_seeds))
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {label}")
            split.append(f"{image_id} {1 if n < train_per_class else 0}")
    _write_lines(base / "images.txt", images)
    _write_lines(base / "image_class_labels.txt", labels)
    _write_lines(base / "train_test_split.txt", split)
    return root


def _save_cars_annotations(path: Path, entries: list[tuple[str, int]]) -> None:
    from scipy.io import savemat

    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annotations = np.zeros((1, len(entries)), dtype=[(f, "O") for f in fields])
    for i, (fname, label) in enumerate(entries):
        annotations[0, i] = (1, 1, 30, 30, label, fname)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"annotations": annotations})


def make_stanford_cars(
    root: Path, classes: list[str] = CARS_CLASSES, train_per_class: int = 12, test_per_class: int = 3
) -> Path:
    """``root/stanford_cars/``: devkit/cars_meta.mat, devkit/cars_train_annos.mat, cars_train/,
    cars_test/, cars_test_annos_withlabels.mat (as torchvision.datasets.StanfordCars reads)."""
    from scipy.io import savemat

    base = root / "stanford_cars"
    names = np.empty((1, len(classes)), dtype=object)
    names[0, :] = classes
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    for folder, annotations_file, count in (
        ("cars_train", "devkit/cars_train_annos.mat", train_per_class),
        ("cars_test", "cars_test_annos_withlabels.mat", test_per_class),
    ):
        entries = []
        for n in range(count * len(classes)):
            fname = f"{n + 1:05d}.jpg"
            write_image(base / folder / fname, next(_seeds))
            entries.append((fname, n % len(classes) + 1))
        _save_cars_annotations(base / annotations_file, entries)
    return root


def make_oxford_pets(
    root: Path, classes: list[str] = PETS_CLASSES, train_per_class: int = 12, test_per_class: int = 3
) -> Path:
    """``root/oxford-iiit-pet/``: images/<Breed>_<n>.jpg, annotations/{trainval,test}.txt."""
    base = root / "oxford-iiit-pet"
    number = itertools.count(1)
    for split, count in (("trainval", train_per_class), ("test", test_per_class)):
        lines = []
        for label, name in enumerate(classes, 1):
            species = 1 if name[0].isupper() else 2  # the dataset capitalises cat breeds
            for _ in range(count):
                image_id = f"{name}_{next(number)}"
                write_image(base / "images" / f"{image_id}.jpg", next(_seeds))
                lines.append(f"{image_id} {label} {species} 1")
        _write_lines(base / "annotations" / f"{split}.txt", ["#Image CLASS-ID SPECIES BREED ID", *lines])
    return root


def make_flowers102(root: Path, train_per_class: int = 2, val_per_class: int = 2, test_per_class: int = 1) -> Path:
    """``root/flowers-102/``: jpg/image_<id>.jpg, imagelabels.mat, setid.mat, all 102 classes.

    The official train and val sets hold 10 images per class each; tests use fewer.
    """
    from scipy.io import savemat

    base = root / "flowers-102"
    labels: list[int] = []
    sets: dict[str, list[int]] = {"trnid": [], "valid": [], "tstid": []}
    for label in range(1, 103):
        for key, count in (("trnid", train_per_class), ("valid", val_per_class), ("tstid", test_per_class)):
            for _ in range(count):
                labels.append(label)
                sets[key].append(len(labels))
                write_image(base / "jpg" / f"image_{len(labels):05d}.jpg", next(_seeds), size=16)
    savemat(base / "imagelabels.mat", {"labels": np.array([labels])})
    savemat(base / "setid.mat", {key: np.array([ids]) for key, ids in sets.items()})
    return root


def make_shot_folder(reader, root: Path, shots: int, folders: dict[str, str]) -> Path:
    """A Diff-II style split: ``root/<shots>shot/train/<folder>/<n>.jpg``, byte copies of the first
    ``shots`` official train images of each class; ``folders`` maps folder name -> raw class name."""
    for folder, class_name in folders.items():
        originals = [r for r in reader.records("train") if r.class_name == class_name][:shots]
        for index, record in enumerate(originals):
            target = root / f"{shots}shot" / "train" / folder / f"{index}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(record.path, target)
    return root


def make_diffii_folder(reader, root: Path, shots: int) -> Path:
    """Diff-II's few-shot folder for ``reader``: every class under its Diff-II folder name."""
    return make_shot_folder(reader, root, shots, dict(zip(reader.folder_names, reader.class_names, strict=True)))


#: Reader class name -> function writing a fake of its layout into a folder (returns the root).
FAKE_LAYOUT_WRITERS = {
    "ClassFolders": lambda root: make_class_folders(root, ["alpha", "beta", "gamma"], train_per_class=30),
    "FGVCAircraft": lambda root: make_fgvc_aircraft(root, train_per_class=30),
    "CUB200": lambda root: make_cub200(root, train_per_class=30),
    "StanfordCars": lambda root: make_stanford_cars(root, train_per_class=30),
    "OxfordPets": lambda root: make_oxford_pets(root, train_per_class=30),
    "Flowers102": lambda root: make_flowers102(root, train_per_class=10, val_per_class=10),
}
