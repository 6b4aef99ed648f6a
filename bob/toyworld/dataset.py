"""Writes a few-shot toy-world dataset: class folders, the biased split file, ground-truth captions."""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import bob
from bob.atomic import atomic_write, atomic_write_json, remove_stale_temporaries
from bob.data.caption_bank import CaptionBank, CaptionRecord
from bob.data.datasets.folders import ClassFolders
from bob.data.errors import BobInputError
from bob.data.splits import FewShotSplit
from bob.toyworld.captions import DESCRIPTOR
from bob.toyworld.contexts import BACKGROUNDS, POSES, phrase
from bob.toyworld.render import Scene, render
from bob.toyworld.variants import FEWSHOT_VARIANTS, fewshot_variant

WORLD_FILE = "world.jsonl"
MANIFEST_FILE = "manifest.json"
SPLIT_FILE = "split.json"
CAPTIONS_DIR = "captions"
DATASET_NAME = "toyworld"
#: bumped whenever rendering changes, so stale datasets are not mistaken for current ones.
WORLD_VERSION = 1


def home_background(label: int) -> int:
    """The background a class mostly appears in among its training shots."""
    return label % len(BACKGROUNDS)


@dataclass(frozen=True)
class WorldImage:
    """One image of a written dataset with its true context."""

    sample_id: str
    class_name: str
    part: str
    background: int
    pose: int
    seed: int

    def to_json(self) -> str:
        return json.dumps(
            {"sample_id": self.sample_id, "class_name": self.class_name, "part": self.part,
             "background": BACKGROUNDS[self.background].name, "pose": POSES[self.pose].name, "seed": self.seed}
        )


def read_world(root: str | Path) -> dict[str, WorldImage]:
    """The true context of every image of a dataset written by `write_dataset`, by sample id.

    ``root`` is the dataset folder or its ``world.jsonl``.
    """
    path = Path(root) / WORLD_FILE if Path(root).is_dir() else Path(root)
    if not path.is_file():
        raise BobInputError(
            f"{path} does not exist: {root} was not written by the toy world "
            "(`python -m bob.toyworld.dataset --root <folder>` writes one)"
        )
    background_of = {b.name: i for i, b in enumerate(BACKGROUNDS)}
    pose_of = {p.name: i for i, p in enumerate(POSES)}
    images = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        images[entry["sample_id"]] = WorldImage(
            entry["sample_id"], entry["class_name"], entry["part"],
            background_of[entry["background"]], pose_of[entry["pose"]], entry["seed"],
        )
    return images


def _image_seed(seed: int, class_name: str, part: str, index: int) -> int:
    return zlib.crc32(f"toyworld|{seed}|{class_name}|{part}|{index}".encode())


def _training_backgrounds(label: int, shots: int, bias: float, rng: random.Random) -> list[int]:
    # A fixed count of home shots (not a coin per shot) so every seed has the same bias.
    home = home_background(label)
    n_home = round(bias * shots)
    others = [b for b in range(len(BACKGROUNDS)) if b != home]
    rng.shuffle(others)
    away = [others[i % len(others)] for i in range(shots - n_home)]
    backgrounds = [home] * n_home + away
    rng.shuffle(backgrounds)
    return backgrounds


def plan_images(
    num_classes: int, shots: int, val_per_class: int, test_per_class: int, bias: float, seed: int
) -> list[WorldImage]:
    """Every image of the dataset: biased training shots, uniform validation and test images."""
    if not 1 <= num_classes <= len(FEWSHOT_VARIANTS):
        raise BobInputError(f"num_classes must be in 1..{len(FEWSHOT_VARIANTS)}, got {num_classes}")
    if not 0.0 <= bias <= 1.0:
        raise BobInputError(f"bias is a probability, got {bias}")
    images = []
    for label, variant in enumerate(FEWSHOT_VARIANTS[:num_classes]):
        rng = random.Random(f"toyworld-plan|{seed}|{variant.name}")
        name = variant.name
        parts = [("train", b) for b in _training_backgrounds(label, shots, bias, rng)]
        parts += [("val", rng.randrange(len(BACKGROUNDS))) for _ in range(val_per_class)]
        parts += [("test", rng.randrange(len(BACKGROUNDS))) for _ in range(test_per_class)]
        counters: dict[str, int] = {}
        for part, background in parts:
            index = counters[part] = counters.get(part, -1) + 1
            folder = "test" if part == "test" else "train"
            prefix = "val_" if part == "val" else ""
            sample_id = f"{folder}/{name}/{prefix}{name}_{index:03d}.png"
            images.append(
                WorldImage(sample_id, name, part, background, rng.randrange(len(POSES)), _image_seed(seed, name, part, index))
            )
    return images


def ground_truth_context(image: WorldImage) -> dict[str, str]:
    """The true background and pose, phrased like a captioner's answers (fixed per sample id)."""
    rng = random.Random(f"phrasing|{image.sample_id}")
    return {
        "background": phrase(BACKGROUNDS[image.background].phrasings, rng),
        "pose": phrase(POSES[image.pose].phrasings, rng),
    }


def write_dataset(
    root: str | Path,
    num_classes: int = 16,
    shots: int = 5,
    val_per_class: int = 10,
    test_per_class: int = 30,
    bias: float = 0.8,
    seed: int = 0,
) -> Path:
    """Render a few-shot toy-world dataset into ``root``.

    Writes ``train/<class>/`` and ``test/<class>/`` (the `ClassFolders` layout), ``split.json``
    (train = the biased shots, val and test uniform; `FewShotDataModule` reads it),
    ``world.jsonl`` (the true context of every image), ``captions/`` (a ground-truth caption
    bank of the training shots) and ``manifest.json``. A complete dataset with the same
    settings is left as it is.
    """
    root = Path(root)
    settings = {
        "world_version": WORLD_VERSION, "num_classes": num_classes, "shots": shots, "val_per_class": val_per_class,
        "test_per_class": test_per_class, "bias": bias, "seed": seed,
    }
    manifest_path = root / MANIFEST_FILE
    # A write of this dataset that was killed outright may have left temporary files, which
    # `ClassFolders` refuses as non-images, even after a later write completed the dataset.
    remove_stale_temporaries(root)
    if manifest_path.is_file() and json.loads(manifest_path.read_text(encoding="utf-8")).get("settings") == settings:
        return root
    if manifest_path.is_file():
        raise BobInputError(
            f"{root} holds a toy-world dataset made with other settings; delete it or choose another root"
        )
    images = plan_images(num_classes, shots, val_per_class, test_per_class, bias, seed)
    for image in tqdm(images, desc=f"rendering the toy world (seed {seed})", unit="img"):
        scene = Scene(fewshot_variant(image.class_name), image.background, image.pose, image.seed)
        atomic_write(root / image.sample_id, lambda tmp, scene=scene: render(scene).save(tmp, format="PNG"))
    lines = "".join(image.to_json() + "\n" for image in images)
    atomic_write(root / WORLD_FILE, lambda tmp: tmp.write_text(lines, encoding="utf-8"))

    reader = ClassFolders(str(root), descriptor=DESCRIPTOR, name=DATASET_NAME)
    label_of = {name: i for i, name in enumerate(reader.class_names)}
    by_part = {part: [reader.record(i.sample_id, label_of[i.class_name]) for i in images if i.part == part]
               for part in ("train", "val", "test")}
    split = FewShotSplit(
        DATASET_NAME, seed, list(reader.class_names), shots=shots, source=f"toyworld(bias={bias})", **by_part
    )
    split.save(root / SPLIT_FILE)
    bank = CaptionBank(
        [CaptionRecord(i.sample_id, i.class_name, ground_truth_context(i)) for i in images if i.part == "train"],
        manifest={"source": "ground_truth", "note": "true attributes recorded by the toy-world renderer, not VLM output",
                  "descriptor": DESCRIPTOR, "complete": True},
    )
    bank.save(root / CAPTIONS_DIR)
    homes = {v.name: BACKGROUNDS[home_background(i)].name for i, v in enumerate(FEWSHOT_VARIANTS[:num_classes])}
    atomic_write_json(manifest_path, {
        "settings": settings,
        "descriptor": DESCRIPTOR,
        "class_names": list(reader.class_names),
        "variants": [v.to_dict() for v in FEWSHOT_VARIANTS[:num_classes]],
        "home_backgrounds": homes,
        "backgrounds": [b.name for b in BACKGROUNDS],
        "poses": [p.name for p in POSES],
        "counts": {part: len(records) for part, records in by_part.items()},
        "bob_version": bob.__version__,
    })
    return root


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Render a few-shot toy-world dataset (ClassFolders layout).")
    parser.add_argument("--root", default="data/toyworld", help="output folder")
    parser.add_argument("--num-classes", type=int, default=16)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--test-per-class", type=int, default=30)
    parser.add_argument("--bias", type=float, default=0.8, help="share of each class's shots in its home background")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = write_dataset(
        args.root, args.num_classes, args.shots, args.val_per_class, args.test_per_class, args.bias, args.seed
    )
    print(f"toy-world dataset in {root} (split file {root / SPLIT_FILE}, ground-truth captions in {root / CAPTIONS_DIR})")


if __name__ == "__main__":
    main()
