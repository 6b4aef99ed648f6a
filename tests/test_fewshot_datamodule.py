"""FewShotDataModule: dict batches, the split file every stage shares, split sources, transforms."""

import pytest
import torch
import yaml
from torchvision.transforms import v2

import bob.datamodules.fewshot as fewshot_module
import tests.cli_toys  # noqa: F401  (the CLI resolves the toy model by its dotted path)
from bob.cli import main
from bob.data import ClassFolders, FGVCAircraft
from bob.data.errors import BobInputError, CorruptImageError, SplitError
from bob.datamodules import FewShotDataModule
from tests.fake_data import make_class_folders, make_fgvc_aircraft, make_shot_folder

CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("data"), CLASSES, train_per_class=12, test_per_class=2)


def make_datamodule(root, tmp_path, **kwargs):
    settings = {
        "shots": 2, "val_per_class": 2, "image_size": 16, "batch_size": 4, "num_workers": 0,
        "split_file": str(tmp_path / "splits" / "{dataset}_{sampling}_seed{seed}.json"),
    }
    return FewShotDataModule(ClassFolders(root, descriptor="bird", name="toy"), **{**settings, **kwargs})


def test_batches_are_dicts_of_the_documented_keys(root, tmp_path):
    datamodule = make_datamodule(root, tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"image", "label", "sample_id", "is_synthetic", "host"}
    assert batch["host"] == {"label": batch["label"].tolist(), "num_real": 4}  # host-side copies for the steps
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (4,)
    assert all(isinstance(s, str) and s.startswith("train/") for s in batch["sample_id"])
    assert batch["is_synthetic"].tolist() == [False] * 4
    assert len(datamodule.val_dataloader().dataset) == 6 and len(datamodule.test_dataloader().dataset) == 6
    assert datamodule.num_classes == 3 and datamodule.descriptor == "bird"


def test_split_file_is_written_then_reread(root, tmp_path, monkeypatch):
    first = make_datamodule(root, tmp_path)
    first.prepare_data()
    assert first.split_file == tmp_path / "splits" / "toy_2shot_seed0.json" and first.split_file.is_file()

    def no_sampling(*args, **kwargs):
        raise AssertionError("the second DataModule must read the split file, not draw again")

    monkeypatch.setattr(fewshot_module, "sample_fewshot_split", no_sampling)
    second = make_datamodule(root, tmp_path)
    assert second.split.to_dict() == first.split.to_dict()
    assert second.split.details["request"] == {"shots": 2, "seed": 0, "val_per_class": 2}


def test_split_file_made_with_other_settings_is_refused(root, tmp_path):
    fixed = str(tmp_path / "split.json")
    make_datamodule(root, tmp_path, split_file=fixed).prepare_data()
    with pytest.raises(SplitError, match="val_per_class=2 but this run asks for val_per_class=3"):
        make_datamodule(root, tmp_path, split_file=fixed, val_per_class=3).prepare_data()


def test_long_tail_split_gets_its_own_file(root, tmp_path):
    with pytest.raises(BobInputError, match="shots: null"):
        make_datamodule(root, tmp_path, imbalance_factor=10)
    datamodule = make_datamodule(root, tmp_path, shots=None, imbalance_factor=10, longtail_groups=(8, 3))
    datamodule.prepare_data()
    assert datamodule.split_file.name == "toy_lt10_seed0.json"
    assert sorted(datamodule.split.train_counts()) == [1, 3, 12]  # 12 * 10^(-i/2)
    assert sorted(datamodule.split.class_groups.values()) == ["few", "many", "medium"]


def test_external_shot_folder_through_the_datamodule(tmp_path):
    reader = FGVCAircraft(make_fgvc_aircraft(tmp_path / "aircraft"))
    folders = {"707-320": "707-320", "F_A-18": "F/A-18", "F-16A_B": "F-16A/B", "Cessna_172": "Cessna 172"}
    source = make_shot_folder(reader, tmp_path / "diffii", 5, folders)
    datamodule = FewShotDataModule(
        reader, shots=5, val_per_class=4, image_size=16, batch_size=20, num_workers=0,
        split_source=str(source), split_file=str(tmp_path / "{dataset}_{sampling}.json"),
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.split_file.name.startswith("aircraft_5shot-ext-diffii-")
    batch = next(iter(datamodule.predict_dataloader()))
    assert len(batch["sample_id"]) == 20 and "5shot/train/F_A-18/0.jpg" in batch["sample_id"]
    reread = FewShotDataModule(reader, shots=5, val_per_class=4, split_source=str(source),
                               split_file=str(tmp_path / "{dataset}_{sampling}.json"))
    assert reread.split.to_dict() == datamodule.split.to_dict()


def test_corrupt_shot_is_named_before_training(tmp_path):
    root = make_class_folders(tmp_path / "data", CLASSES, train_per_class=4, test_per_class=1)
    datamodule = make_datamodule(root, tmp_path)
    datamodule.prepare_data()
    victim = datamodule.split.train[1].path
    victim.write_bytes(b"not an image at all")
    with pytest.raises(CorruptImageError, match=victim.name):
        datamodule.setup("fit")


def test_train_transform_is_configured_in_yaml(root, tmp_path):
    config = {
        "model": {"class_path": "tests.cli_toys.LinkedToyModule"},
        "data": {
            "class_path": "FewShotDataModule",
            "init_args": {
                "dataset": {"class_path": "ClassFolders", "init_args": {"root": str(root)}},
                "shots": 2, "num_workers": 0, "batch_size": 3, "split_file": str(tmp_path / "split.json"),
                "train_transform": {
                    "class_path": "torchvision.transforms.v2.Compose",
                    "init_args": {"transforms": [
                        {"class_path": "torchvision.transforms.v2.RandomResizedCrop", "init_args": {"size": 8}},
                        {"class_path": "torchvision.transforms.v2.RandomGrayscale", "init_args": {"p": 1.0}},
                    ]},
                },
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = main(["-c", str(path), "--trainer.accelerator=cpu"], run=False)
    transform = cli.datamodule.train_transform
    assert isinstance(transform, v2.Compose) and isinstance(transform.transforms[1], v2.RandomGrayscale)
    cli.datamodule.prepare_data()
    image = next(iter(cli.datamodule.train_dataloader()))["image"]
    assert image.shape == (3, 3, 8, 8)
    assert torch.equal(image[:, 0], image[:, 1])  # grayscale: equal channels
