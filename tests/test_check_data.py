"""Every image a run reads is checked before training: `python -m bob.check_data` and the classifier's data module."""

import pytest
import yaml

from bob.check_data import main
from bob.data import ClassFolders
from bob.data.errors import CorruptImageError
from bob.datamodules import RealSyntheticDataModule
from tests.fake_data import make_class_folders

CLASSES = ["alpha", "beta", "gamma"]


def classifier_data(root, tmp_path, synthetic=None) -> dict:
    return {
        "class_path": "RealSyntheticDataModule",
        "init_args": {
            "dataset": {"class_path": "ClassFolders", "init_args": {"root": str(root), "descriptor": "bird", "name": "toy"}},
            "synthetic": synthetic, "shots": 2, "val_per_class": 2, "image_size": 16, "batch_size": 4,
            "num_workers": 0, "split_file": str(tmp_path / "split.json"),
        },
    }


@pytest.fixture
def world(tmp_path):
    root = make_class_folders(tmp_path / "data", CLASSES, train_per_class=6, test_per_class=2)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "tests.cli_toys.LinkedToyModule"}, "data": classifier_data(root, tmp_path)}))
    return root, config


def test_check_data_decodes_every_part_and_names_broken_files(world, tmp_path, capsys):
    root, config = world
    assert main(["-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "train: 6 images, none broken" in out and "val: 6 images" in out and "test: 6 images" in out
    assert "all 18 images decode" in out

    test_image = sorted((root / "test" / "beta").iterdir())[1]
    test_image.write_bytes(test_image.read_bytes()[:40])  # truncated
    assert main(["fit", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert "test: 6 images, 1 broken" in out and f"{test_image}: " in out


def test_check_data_reports_a_missing_synthetic_set(world, tmp_path, capsys):
    root, config = world
    data = classifier_data(root, tmp_path, synthetic=str(tmp_path / "not-generated-yet"))
    config.write_text(yaml.safe_dump({"model": {"class_path": "tests.cli_toys.LinkedToyModule"}, "data": data}))
    assert main(["-c", str(config)]) == 1
    assert "synthetic set: no synthetic image set at" in capsys.readouterr().out


def test_classifier_data_checks_validation_and_test_images_before_fit(tmp_path):
    root = make_class_folders(tmp_path / "data", CLASSES, train_per_class=6, test_per_class=2)
    datamodule = RealSyntheticDataModule(
        ClassFolders(str(root), descriptor="bird", name="toy"), shots=2, val_per_class=2, image_size=16,
        num_workers=0, split_file=str(tmp_path / "split.json"),
    )
    victims = [datamodule.split.val[0].path, datamodule.split.test[-1].path]
    for victim in victims:
        victim.write_bytes(b"not an image")
    with pytest.raises(CorruptImageError, match="2 image") as error:
        datamodule.prepare_data()
    assert all(str(victim) in str(error.value) for victim in victims)
