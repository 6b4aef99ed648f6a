"""``python -m bob.check_data [fit|predict|test] -c <config> ... [--key=value ...]``: decode every image a run reads.

Takes the arguments of ``python main.py`` (the subcommand may be left out) and resolves the
run's data exactly as the run would: the dataset reader, the split (read from its split file, or
drawn and saved as the run would), and the synthetic set the config names, if any. Every image
of the training shots, the validation and test images and the synthetic set is decoded once,
with a progress bar, and the broken files are listed. No model is built.

Exit status: 0 every image decodes, 1 some do not (or the synthetic set cannot be read),
2 the data cannot be resolved (``error: ...``; ``BOB_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

from bob.console import input_errors_as_one_line
from bob.data.errors import BobInputError
from bob.data.images import find_broken_images
from bob.data.records import ImageRecord
from bob.data.synthetic_set import load_synthetic_records
from bob.datamodules.surface import StageData, TrainingPoolData, as_stage_data, offers
from bob.weights.run_config import resolve_run_config

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def resolve_datamodule(args: list[str]) -> StageData:
    """The run's DataModule, built from ``args`` (those of ``python main.py``) as the run builds it."""
    if not args or args[0] not in SUBCOMMANDS:
        args = ["fit", *args]  # the data section is the same for every subcommand
    _, config = resolve_run_config(args)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    data = parser.instantiate(parser.parse_object({"data": config["data"]})).data
    return as_stage_data(data, "bob.check_data", StageData)


def image_sets(datamodule: StageData) -> tuple[dict[str, list[Path]], list[str]]:
    """The images of each part of the run's data, and the problems found before decoding any."""
    datamodule.dataset.check_layout()
    split = datamodule.split
    sets: dict[str, list[Path]] = {
        "train": [r.path for r in split.train], "val": [r.path for r in split.val], "test": [r.path for r in split.test],
    }
    problems: list[str] = []
    folder = datamodule.synthetic_folder if offers(datamodule, TrainingPoolData) else None
    if folder is not None:
        try:
            records: list[ImageRecord] = load_synthetic_records(folder, datamodule.class_names)
        except BobInputError as error:
            problems.append(f"synthetic set: {error}")
        else:
            sets["synthetic"] = [r.path for r in records]
    return sets, problems


def check(args: list[str]) -> dict[str, Any]:
    """Decode every image of the run's data; the counts per part and the broken files, printed and returned."""
    datamodule = resolve_datamodule(args)
    sets, problems = image_sets(datamodule)
    print(f"{type(datamodule).__name__} on {datamodule.dataset.name}, split file {datamodule.split_file}:")
    broken: list[tuple[Path, str]] = []
    for part, paths in sets.items():
        found = find_broken_images(paths, description=f"{part:>9}")
        broken += found
        print(f"  {part}: {len(paths)} images, {len(found) or 'none'} broken")
    total = sum(len(paths) for paths in sets.values())
    if broken:
        print(f"{len(broken)} of {total} images cannot be decoded; replace or remove them (then delete the "
              "split file if a removed image is in it):")
        for path, problem in broken:
            print(f"  {path}: {problem}")
    for problem in problems:
        print(problem)
    if not broken and not problems:
        print(f"all {total} images decode")
    return {"counts": {part: len(paths) for part, paths in sets.items()}, "broken": broken, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 all images decode, 1 some do not)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.replace("``", "`"))
        return 0
    result = check(argv)
    return 1 if result["broken"] or result["problems"] else 0


if __name__ == "__main__":
    with input_errors_as_one_line():
        sys.exit(main())
