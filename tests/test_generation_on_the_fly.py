"""Generation inside the classifier's run: missing images first, periodic refreshes, the callback in a fit."""

import pytest
import yaml
from lightning.pytorch import Trainer

from bob.callbacks.on_the_fly_generation import OnTheFlyGeneration, ensure_synthetic_set
from bob.cli import main
from bob.data import ClassFolders, sample_fewshot_split
from bob.data.errors import BobInputError
from bob.data.synthetic_set import load_synthetic_records, read_manifest_lines, read_summary
from bob.datamodules import RealSyntheticDataModule
from tests.classifier_fixtures import timm_backbone, write_classifier_config
from tests.generation_world import (  # noqa: F401
    CLASSES,
    generation_config,
    make_world,
    planned_lines,
    save_tiny_lora,
    single_thread,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_sd_path):
    root = tmp_path_factory.mktemp("on_the_fly")
    return {**make_world(root), "root": root, "sd": tiny_sd_path, "lora": save_tiny_lora(tiny_sd_path, root / "lora")}


def cpu_trainer() -> Trainer:
    return Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)


def test_missing_images_are_made_then_a_fraction_is_refreshed(world, tmp_path):
    output = tmp_path / "set"
    config = generation_config(tmp_path / "gen.yaml", world, world["sd"], output, lora=world["lora"])
    trainer = cpu_trainer()
    assert ensure_synthetic_set(config, trainer) == output
    lines = read_manifest_lines(output)
    assert read_summary(output)["complete"] and len(lines) == 12
    assert len(load_synthetic_records(output, CLASSES)) == 12

    # A second call with two images gone makes exactly those two again.
    for line in lines[:2]:
        (output / line["file"]).unlink()
    kept = {line["file"]: (output / line["file"]).read_bytes() for line in lines[2:]}
    generation = OnTheFlyGeneration(str(config), refresh_fraction=0.25, refresh_every_n_epochs=2)
    generation.make_missing(trainer)
    assert planned_lines(output) == [{k: v for k, v in line.items() if k not in ("bytes", "sha256")} for line in lines]
    assert all((output / file).read_bytes() == data for file, data in kept.items())
    assert trainer.reload_dataloaders_every_n_epochs == 0  # refreshed files are read in place: no reload

    before = {line["key"]: line for line in read_manifest_lines(output)}
    trainer.fit_loop.epoch_progress.current.completed = 1
    assert generation.maybe_refresh(trainer) == 0  # epoch 1 is not a refresh epoch
    trainer.fit_loop.epoch_progress.current.completed = 2
    assert generation.maybe_refresh(trainer) == 3  # round 1: a quarter of 12
    after = {line["key"]: line for line in read_manifest_lines(output)}
    refreshed = [k for k in after if after[k]["round"] == 1]
    assert len(refreshed) == 3 and len(after) == 12
    for key in refreshed:
        assert after[key]["seed"] != before[key]["seed"] and after[key]["class_name"] == before[key]["class_name"]
    assert all(after[k] == before[k] for k in after if k not in refreshed)
    assert read_summary(output)["refresh_rounds"] == [1] and read_summary(output)["complete"]
    assert generation.refresh(trainer, 0.25, round=1) == 0  # a round already made is not redone


def test_generation_for_other_shots_is_refused(world, tmp_path):
    config = generation_config(tmp_path / "gen.yaml", world, world["sd"], tmp_path / "set", lora=world["lora"])
    other = sample_fewshot_split(ClassFolders(world["data"], descriptor="aircraft", name="toy"), 3, 0, 1)
    with pytest.raises(BobInputError, match="other training shots"):
        OnTheFlyGeneration(str(config)).check_same_shots(other)
    assert not (tmp_path / "set").exists()


def test_classifier_generates_its_synthetic_set_before_training_and_refreshes_it(world, tmp_path):
    output = tmp_path / "synthetic_on_the_fly"
    # The generation config reads the classifier's dataset and split file (made by the classifier run).
    shared = {"data": tmp_path / "data", "split_file": tmp_path / "split.json", "bank": None}
    generation = generation_config(
        tmp_path / "generate.yaml", shared, world["sd"], output, lora=world["lora"],
        data={"strategy": "none", "caption_bank": None, "val_per_class": 2, "images_per_class": 2},
    )
    config = write_classifier_config(tmp_path, timm_backbone(), synthetic=False, data_args={"real_repeats": 1})
    run = yaml.safe_load(config.read_text())
    run["trainer"]["callbacks"].append({
        "class_path": "OnTheFlyGeneration",
        "init_args": {"config": str(generation), "refresh_fraction": 0.5, "refresh_every_n_epochs": 1},
    })
    config.write_text(yaml.safe_dump(run, sort_keys=False))
    main([
        "fit", "-c", str(config), "--trainer.max_epochs=2", "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1", "--model.init_args.test_after_fit=false",
    ])
    lines = read_manifest_lines(output)
    summary = read_summary(output)
    assert summary["complete"] and len(lines) == 6
    assert summary["refresh_rounds"] == [1]  # epoch 1 started with a refresh
    assert sum(line["round"] == 1 for line in lines) == 3


def test_a_generation_config_as_the_synthetic_folder_points_to_the_callback(world, tmp_path):
    with pytest.raises(BobInputError, match="OnTheFlyGeneration"):
        RealSyntheticDataModule(ClassFolders(world["data"], descriptor="aircraft", name="toy"), synthetic="gen.yaml")
