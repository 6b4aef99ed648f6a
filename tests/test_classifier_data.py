"""RealSyntheticDataModule: mixing ratios, flags, synthetic-set checks."""

from collections import Counter

import pytest
import torch

from bob.data import ClassFolders
from bob.data.errors import BobInputError
from bob.data.synthetic_set import SyntheticSetError
from bob.datamodules import RealSyntheticDataModule
from tests.classifier_fixtures import CLASSES, make_synthetic_set
from tests.fake_data import make_class_folders


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("data"), CLASSES, train_per_class=8, test_per_class=2)


def make_datamodule(root, tmp_path, **kwargs):
    options = {
        "shots": 2, "val_per_class": 2, "image_size": 16, "batch_size": 4, "num_workers": 0,
        "split_file": str(tmp_path / "{dataset}_{sampling}_seed{seed}.json"), **kwargs,
    }
    datamodule = RealSyntheticDataModule(ClassFolders(root, descriptor="aircraft", name="toy"), **options)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def pool_counts(datamodule):
    dataset = datamodule.train_dataset()
    flags = Counter()
    per_class = Counter()
    for part in dataset.datasets:
        flags[part.is_synthetic] += len(part)
        per_class.update((part.is_synthetic, r.label) for r in part.records)
    return flags, per_class


def test_real_shots_are_repeated_to_the_paper_ratio(root, tmp_path):
    synthetic = make_synthetic_set(tmp_path / "synthetic", CLASSES, per_class=100)
    datamodule = make_datamodule(root, tmp_path, synthetic=str(synthetic))
    assert datamodule.real_repeats == 50  # 100 // 2 shots
    flags, per_class = pool_counts(datamodule)
    assert flags == {False: 2 * 3 * 50, True: 300}
    for label in range(3):  # 100 real + 100 synthetic per class: a 1:1 pool
        assert per_class[(False, label)] == per_class[(True, label)] == 100


def test_explicit_repeats_and_flags_in_batches(root, tmp_path):
    synthetic = make_synthetic_set(tmp_path / "synthetic", CLASSES, per_class=2)
    datamodule = make_datamodule(root, tmp_path, synthetic=str(synthetic), real_repeats=3, batch_size=24)
    flags, _ = pool_counts(datamodule)
    assert flags == {False: 18, True: 6}
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["is_synthetic"].dtype == torch.bool
    assert int(batch["is_synthetic"].sum()) == 6
    synthetic_ids = [s for s, flag in zip(batch["sample_id"], batch["is_synthetic"], strict=True) if flag]
    assert all(s.startswith("synthetic/") for s in synthetic_ids)
    assert batch["image"].shape == (24, 3, 16, 16) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    # Validation and test are real images only.
    assert not next(iter(datamodule.val_dataloader()))["is_synthetic"].any()


def test_real_only_when_no_synthetic_set(root, tmp_path):
    datamodule = make_datamodule(root, tmp_path, synthetic=None)
    flags, _ = pool_counts(datamodule)
    assert flags == {False: 2 * 3 * 50}


def test_synthetic_folder_made_for_other_classes_is_refused(root, tmp_path):
    synthetic = make_synthetic_set(tmp_path / "synthetic", ["alpha", "beta", "delta"], per_class=1)
    with pytest.raises(SyntheticSetError, match="delta"):
        make_datamodule(root, tmp_path, synthetic=str(synthetic))


def test_missing_synthetic_folder_names_the_stage_that_makes_it(root, tmp_path):
    with pytest.raises(SyntheticSetError, match=r"generate\.yaml"):
        make_datamodule(root, tmp_path, synthetic=str(tmp_path / "nowhere"))


def test_synthetic_path_placeholders_follow_the_split(root, tmp_path):
    make_synthetic_set(tmp_path / "toy_2shot_seed0", CLASSES, per_class=1)
    datamodule = make_datamodule(root, tmp_path, synthetic=str(tmp_path / "{dataset}_{sampling}_seed{seed}"))
    assert datamodule.synthetic_folder == tmp_path / "toy_2shot_seed0"
    with pytest.raises(BobInputError, match="placeholder"):
        _ = RealSyntheticDataModule(ClassFolders(root), synthetic="{nope}").synthetic_folder


def test_default_augmentation_is_the_papers(root, tmp_path):
    datamodule = make_datamodule(root, tmp_path)
    names = [type(t).__name__ for t in datamodule.train_transform.transforms]
    assert names == [  # RandAugment on the whole photo first, as in the authors' loader
        "RandAugment", "RandomResizedCrop", "RandomHorizontalFlip", "RandomApply",
        "RandomGrayscale", "RandomApply", "RandomSolarize",
    ]
    assert datamodule.train_transform.transforms[1].scale == (0.25, 1.0)
