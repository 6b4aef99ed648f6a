"""The declared data surface: which DataModule offers what, the checked accessor, plain datasets."""

import pickle
from types import SimpleNamespace

import pytest
from lightning.pytorch import LightningDataModule

from bob.data import ClassFolders
from bob.data.errors import BobInputError
from bob.datamodules import (
    CaptionDataModule,
    FewShotDataModule,
    GenerationDataModule,
    RealSyntheticDataModule,
)
from bob.datamodules.surface import (
    CaptionData,
    GenerationData,
    StageData,
    TrainingPoolData,
    as_stage_data,
    protocol_members,
    stage_data,
)
from bob.modules import LoRAFineTuner
from tests.fake_data import make_class_folders

CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    root = make_class_folders(tmp_path_factory.mktemp("data"), CLASSES, train_per_class=6, test_per_class=1)
    return ClassFolders(root, descriptor="aircraft", name="toy")


def options(tmp_path, **kwargs):
    return {"shots": 2, "val_per_class": 1, "image_size": 16, "batch_size": 2, "num_workers": 0,
            "split_file": str(tmp_path / "split.json"), **kwargs}


@pytest.mark.parametrize(
    ("datamodule", "surface"),
    [
        (FewShotDataModule, StageData),
        (CaptionDataModule, CaptionData),
        (GenerationDataModule, GenerationData),
        (RealSyntheticDataModule, TrainingPoolData),
    ],
)
def test_every_datamodule_offers_its_surface_without_reading_files(reader, tmp_path, datamodule, surface):
    extra = {"output_dir": str(tmp_path / "set"), "strategy": "none"} if datamodule is GenerationDataModule else {}
    data = datamodule(reader, **options(tmp_path, **extra))
    assert as_stage_data(data, "test", surface) is data
    assert not (tmp_path / "split.json").exists()  # looked up, not evaluated: no split was drawn


def test_surfaces_declare_what_stages_use():
    assert {"batch_size", "train_transform", "caption_bank", "caption_bank_path", "split", "split_file",
            "sampling", "path_values", "format_path", "class_names", "descriptor"} <= set(protocol_members(StageData))
    assert {"plan", "folder", "pending_items"} <= set(protocol_members(GenerationData))
    assert "split" in protocol_members(TrainingPoolData)  # a surface includes the base's members


def test_missing_members_and_missing_datamodules_are_named(reader, tmp_path):
    with pytest.raises(BobInputError, match=r"SyntheticSetWriter needs .*GenerationData.*FewShotDataModule lacks .*plan"):
        as_stage_data(FewShotDataModule(reader, **options(tmp_path)), "SyntheticSetWriter", GenerationData)
    with pytest.raises(BobInputError, match="batch_size"):
        as_stage_data(LightningDataModule(), "LoRAFineTuner", StageData)
    with pytest.raises(BobInputError, match="the trainer has none"):
        stage_data(SimpleNamespace(datamodule=None), "Classifier")
    with pytest.raises(BobInputError, match="needs a RealSyntheticDataModule"):
        as_stage_data(FewShotDataModule(reader, **options(tmp_path)), "test", RealSyntheticDataModule)


def test_worker_datasets_hold_plain_values_not_the_datamodule(reader, tmp_path):
    data = FewShotDataModule(reader, **options(tmp_path))
    dataset = data.records_dataset(data.split.train, train=True)
    assert "FewShotDataModule" not in pickle.dumps(dataset).decode("latin-1")
    assert pickle.loads(pickle.dumps(dataset))[0]["label"] == dataset[0]["label"]


def test_the_finetuner_checks_accumulation_and_changes_no_trainer_setting(reader, tmp_path):
    model = LoRAFineTuner(prompt_mode="class", prompt_names=CLASSES, effective_batch_size=8)
    data = FewShotDataModule(reader, **options(tmp_path, batch_size=2, verify_shots=False))
    model.trainer = SimpleNamespace(datamodule=data, world_size=1, accumulate_grad_batches=1)
    with pytest.raises(BobInputError, match="needs trainer.accumulate_grad_batches=4"):
        model.setup("fit")
    assert model.trainer.accumulate_grad_batches == 1
    model.trainer.accumulate_grad_batches = 4
    model.setup("fit")
