"""The composed configs resolve to the effective values the per-dataset copies had (bob 0.1.0).

`tests/data/effective_configs_v0.1.json` holds what `--print_config` printed for every shipped
stage and classifier command before the configs were composed. Each old command maps to its
composed form here; the effective values must be equal, except for the changes listed in
`INTENDED`, each made on purpose and explained there.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bob.datamodules.real_synthetic import paper_train_transform
from bob.modules.captioner import DEFAULT_QUESTIONS
from bob.modules.diffusion.finetuner import LEGACY_OPTIMIZER_ARGUMENTS
from tests.effective_config import effective_config

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = json.loads((REPO / "tests" / "data" / "effective_configs_v0.1.json").read_text())

STAGE_DATASETS = {"aircraft": "aircraft", "cars": "cars", "cub": "cub", "pets": "pets", "flowers": "flowers_lt"}
CLASSIFIER_DATASETS = {"aircraft": "aircraft", "cars": "cars", "cub": "cub", "pets": "pets", "cub_lt": "cub_lt", "flowers_lt": "flowers_lt"}
#: old stage file -> (subcommand, composed -c files before the dataset, after it)
STAGE_FILES = {
    "captions": ("predict", ["captions"], []),
    "t2i": ("fit", ["t2i"], []),
    "t2i_datadream": ("fit", ["t2i"], ["t2i/datadream"]),
    "t2i_sd15": ("fit", ["t2i"], ["models/sd15"]),
    "t2i_datadream_sd15": ("fit", ["t2i"], ["t2i/datadream", "models/sd15"]),
    "generate": ("predict", ["generate"], []),
    "generate_datadream": ("predict", ["generate"], ["generate/datadream"]),
    "quality": ("test", ["quality"], []),
}
#: per-dataset command-line settings the docs give with the composed command
STAGE_OVERRIDES = {("quality", "flowers_lt"): ["--model.init_args.kid_subset_size=5"]}


def composed(old: str) -> list[str]:
    """The composed command line that replaces the old one-file command ``old``."""
    words = old.split()
    subcommand, files = words[0], [w for w in words[1:] if w != "-c"]
    first = Path(files[0])
    if first.parent.name in STAGE_DATASETS:
        dataset = STAGE_DATASETS[first.parent.name]
        _, before, after = STAGE_FILES[first.stem]
        parts = [*before, f"datasets/{dataset}", *after]
        extra = STAGE_OVERRIDES.get((first.stem, dataset), [])
    else:
        dataset = CLASSIFIER_DATASETS[first.stem]
        parts, extra = ["classifier", f"datasets/{dataset}"], []
        if first.stem.endswith("_lt"):  # the long-tail configs carried ResNet-50, the paper's long-tail backbone
            parts.append("classifier/backbones/resnet50")
        parts += [str(Path(f).with_suffix("")).removeprefix("configs/") for f in files[1:]]
    return [subcommand] + [arg for part in parts for arg in ("-c", f"configs/{part}.yaml")] + extra


def old_values(command: str) -> dict[str, Any]:
    entry = SNAPSHOT["commands"][command]
    values = {k: v for k, v in SNAPSHOT["bases"][entry["base"]].items() if k not in entry["absent"]}
    values.update(entry["changed"])
    return values


def intended(command: str, old: dict[str, Any]) -> dict[str, Any]:
    """The values the composed command is meant to have where they differ from ``old`` on purpose."""
    changes: dict[str, Any] = {}
    # Every stage runs on whatever accelerator is there (a CPU included), as the README says.
    changes["trainer.accelerator"] = "auto"
    # Captions keep the model's words, as the authors' banks do (docs/parity.md).
    if "model.init_args.redact_leaks" in old:
        changes["model.init_args.redact_leaks"] = False
    # The caption bank is found by placeholders, as every other run folder is.
    if isinstance(old.get("data.init_args.caption_bank"), str):
        changes["data.init_args.caption_bank"] = "runs/{dataset}/captions/{sampling}_seed{seed}"
    # The long-tail multiplier is one dataset value (real_repeats) used by generation's top-up
    # and by the classifier, which now repeats long-tail real images as the release does.
    if old.get("data.init_args.imbalance_factor") is not None:
        changes["data.init_args.real_repeats"] = 6 if "CUB200" in old["data.init_args.dataset.class_path"] else 5
    # Generation tops long-tail classes up to 200 whatever the dataset; few-shot splits ignore it.
    if old.get("model.class_path", "").endswith("SyntheticImageGenerator"):
        changes["data.init_args.top_up_to"] = 200
    # No comparison set: null and an empty mapping mean the same.
    if old.get("model.init_args.compare_with") == {}:
        changes["model.init_args.compare_with"] = None
    # The CLIP head's prompt as the authors' code writes it.
    if old.get("model.init_args.backbone.init_args.prompt") == "{a_descriptor} photo of a {class_name}":
        changes["model.init_args.backbone.init_args.prompt"] = "a {descriptor} photo of a {class_name}"
    # The MAE recipe of the authors' script (their main_mae.py and run_mae_final.sh).
    if old.get("model.init_args.backbone.init_args.model_name") == "vit_base_patch16_224.mae":
        changes.update({
            "model.init_args.backbone.init_args.model_kwargs.global_pool": "token",
            "model.init_args.backbone.init_args.head_init_std": 2e-5,
            "model.init_args.mix_prob": 1.0, "model.init_args.mixup_alpha": 0.8,
            "model.init_args.warmup_epochs": 5, "model.init_args.min_lr": 1e-6,
        })
    # The paper's few-shot images are Diff-II's split folders, named "<k>shot-diffii" in run paths.
    diffii = {"FGVCAircraft": "aircraft", "StanfordCars": "car", "CUB200": "cub", "OxfordPets": "pet"}
    reader = old.get("data.init_args.dataset.class_path", "").rsplit(".", 1)[-1]
    if reader in diffii and old.get("data.init_args.imbalance_factor") is None:
        changes["data.init_args.split_source"] = f"data/diff-ii/{diffii[reader]}"
        changes["data.init_args.split_tag"] = "diffii"
    # The long-tail protocol of the authors' runs: Diff-II's long-tail folders, their groups, and
    # for CUB-LT validation and test from the official test split by their index files.
    if old.get("data.init_args.imbalance_factor") is not None:
        name = "cub" if "CUB200" in old["data.init_args.dataset.class_path"] else "flower"
        changes["data.init_args.split_source"] = f"data/diff-ii/imb_{name}_0.01"
        changes["data.init_args.split_tag"] = "diffii"
        changes["data.init_args.longtail_groups"] = [20, 5] if name == "cub" else [30, 10]
        if name == "cub":
            folder = "data/bob-release/dataset/validation_splits"
            changes["data.init_args.val_indices"] = f"{folder}/cub_test_validsplit.pkl"
            changes["data.init_args.test_indices"] = f"{folder}/cub_test_testsplit.pkl"
    # The fine-tuner's optimizer is spelled as the classifier's (class_path + init_args): the same
    # AdamW and values under new keys (the old ones are in `REMOVED`).
    if old.get("model.class_path", "").endswith("LoRAFineTuner"):
        changes["model.init_args.optimizer.class_path"] = "torch.optim.AdamW"
        changes.update({f"model.init_args.optimizer.init_args.{new}": old[f"model.init_args.{flat}"]
                        for flat, new in LEGACY_OPTIMIZER_ARGUMENTS.items()})
    # Flowers appears in the paper as Flowers-LT only: every stage logs to one project.
    if old.get("trainer.logger.init_args.project") == "bob-flowers":
        changes["trainer.logger.init_args.project"] = "bob-flowers-lt"
    return changes


def build(spec: Any) -> Any:
    """Instantiate a ``class_path``/``init_args`` spec as jsonargparse would (for comparison)."""
    if isinstance(spec, list):
        return [build(item) for item in spec]
    if isinstance(spec, dict) and "class_path" in spec:
        module, name = spec["class_path"].rsplit(".", 1)
        kwargs = {key: build(value) for key, value in (spec.get("init_args") or {}).items()}
        return getattr(importlib.import_module(module), name)(**kwargs)
    return spec


#: Transforms that compute the same operation as the old one they replaced: the paper's blur is
#: now separable (same kernel and sigma draw, the output within one grey level).
SAME_OPERATION = {"SeparableGaussianBlur": "GaussianBlur"}


def describe(value: Any) -> Any:
    """A transform's type and settings, with tuples and lists alike (its repr hides some, e.g. p)."""
    if isinstance(value, torch.nn.Module):
        settings = {k: v for k, v in vars(value).items() if not k.startswith("_") and k != "training"}
        children = [describe(child) for child in value.children()]
        name = type(value).__name__
        return [SAME_OPERATION.get(name, name), describe(settings), children]
    if isinstance(value, dict):
        return {key: describe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    return value


def crop_first(transform: Any) -> Any:
    """The paper's augmentation in bob 0.1.0's order: crop, flip, then RandAugment."""
    steps = list(transform.transforms)
    return type(transform)([steps[1], steps[2], steps[0], *steps[3:]])


def old_transform(old: dict[str, Any]) -> Any:
    prefix = "data.init_args.train_transform."
    spec = {key.removeprefix(prefix).split(".")[0]: value for key, value in old.items() if key.startswith(prefix)}
    spec["init_args"] = {"transforms": old[prefix + "init_args.transforms"]}
    return describe(build(spec))


#: Values written out in the old files that are now the classes' defaults: key -> (old values -> were they the default?).
DEFAULTED = {
    "model.init_args.questions": lambda old: {
        k.rsplit(".", 1)[1]: v for k, v in old.items() if k.startswith("model.init_args.questions.")
    } == DEFAULT_QUESTIONS,
    # The same operations; RandAugment now runs before the crop, as in the authors' loader.
    "data.init_args.train_transform": lambda old: old_transform(old) == describe(crop_first(paper_train_transform(224))),
}

COMMANDS = sorted(SNAPSHOT["commands"])
#: Settings that left the data modules: the long-tail multiplier is `real_repeats` (checked in
#: `intended`), and generation on the fly is a callback of its own, so the classifier's data
#: module only reads folders. LightningCLI's top-level `optimizer`/`lr_scheduler` (always null in
#: bob's configs) are switched off: every module builds its own optimizer.
REMOVED = (
    "data.init_args.real_multiplier", "data.init_args.refresh_fraction", "data.init_args.refresh_every_n_epochs",
    "optimizer", "lr_scheduler",
    # The fine-tuner's flat optimizer settings, now under model.init_args.optimizer (`intended`).
    *(f"model.init_args.{flat}" for flat in LEGACY_OPTIMIZER_ARGUMENTS),
)


def fill_run_names(value: Any, new: dict[str, Any]) -> Any:
    """Run folders are named by arm ({arm}) and base model ({model_tag}), so one stage config
    serves every arm and model: the templates changed, the folders they name must not."""
    if isinstance(value, str):
        arm, tag = new.get("data.init_args.arm", ""), new.get("data.init_args.model_tag", "")
        return value.replace("{arm}", arm).replace("{model_tag}", tag)
    if isinstance(value, dict):
        return {key: fill_run_names(item, new) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_run_names(item, new) for item in value]
    return value


@pytest.mark.parametrize("command", COMMANDS)
def test_composed_command_resolves_to_the_old_values(command):
    old = old_values(command)
    new = effective_config(composed(command))
    new = {key: value if key.startswith("data.init_args.arm") else fill_run_names(value, new) for key, value in new.items()}
    expected = {**old, **intended(command, old)}
    for key in REMOVED:
        expected.pop(key, None)
    differences = {
        key: (expected.get(key, "<absent>"), new.get(key, "<absent>"))
        for key in expected.keys() | new.keys()
        if expected.get(key, "<absent>") != new.get(key, "<absent>")
    }
    defaulted = {}
    for prefix, was_default in DEFAULTED.items():
        keys = {key for key in differences if key == prefix or key.startswith(prefix + ".")}
        if keys and new.get(prefix) is None and any(key in old for key in keys):
            assert was_default(old), f"{prefix} was not the class default in {command}"
            defaulted.update(dict.fromkeys(keys))
    added = {key: pair for key, pair in differences.items() if pair[0] == "<absent>"}
    assert not {k: v for k, v in differences.items() if k not in defaulted and k not in added}, composed(command)
