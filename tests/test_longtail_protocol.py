"""The authors' long-tail protocol: Diff-II long-tail folders, and validation and test carved out of
the official test split by their pickled index files, read without running pickle code."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from bob.data import CUB200
from bob.data.errors import BobInputError, SplitError
from bob.data.release_indices import carve_test_split, read_index_file
from bob.datamodules import FewShotDataModule
from tests.fake_data import make_cub200

COUNTS = [10, 4, 1]  # images per class in the fake imb_cub_0.1 folder (head 10, tail 1)


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = make_cub200(tmp_path_factory.mktemp("cub"), train_per_class=12, test_per_class=6)
    # The official index lists images by id, not by file name: reverse it so the two orders differ.
    images = root / "CUB_200_2011" / "images.txt"
    images.write_text("\n".join(reversed(images.read_text().splitlines())) + "\n")
    return root


def make_longtail_folder(reader: CUB200, folder: Path) -> Path:
    for (name, label_name), count in zip(zip(reader.folder_names, reader.class_names, strict=True), COUNTS, strict=True):
        originals = [r for r in reader.records("train") if r.class_name == label_name][:count]
        for index, record in enumerate(originals):
            target = folder / "train" / name / f"{index}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(record.path, target)
    return folder


def write_pickle(path: Path, value) -> Path:
    path.write_bytes(pickle.dumps(value))
    return path


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_index_files_read_lists_and_arrays_and_never_run_code(tmp_path, monkeypatch):
    assert read_index_file(write_pickle(tmp_path / "a.pkl", [3, 0, 2])) == [3, 0, 2]
    assert read_index_file(write_pickle(tmp_path / "b.pkl", np.array([5, 1], dtype=np.int64))) == [5, 1]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SplitError, match="only integers.*system"):
        read_index_file(write_pickle(tmp_path / "evil.pkl", [Exploit()]))
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(SplitError, match="not a list of integer"):
        read_index_file(write_pickle(tmp_path / "c.pkl", {"val": [1, 2]}))
    with pytest.raises(SplitError, match="distinct and non-negative"):
        read_index_file(write_pickle(tmp_path / "d.pkl", [1, 1]))
    with pytest.raises(SplitError, match="does not exist.*validation_splits"):
        read_index_file(tmp_path / "missing.pkl")


def test_positions_count_in_the_official_index_order(cub, tmp_path):
    reader = CUB200(str(cub))
    ordered = reader.release_order("test")
    assert [r.sample_id for r in ordered] != [r.sample_id for r in reader.records("test")]
    val, test = carve_test_split(reader, write_pickle(tmp_path / "v.pkl", [0, 4]), write_pickle(tmp_path / "t.pkl", [1, 2, 3]))
    assert val == [ordered[0], ordered[4]] and test == ordered[1:4]
    with pytest.raises(SplitError, match="share 1 image"):
        carve_test_split(reader, tmp_path / "v.pkl", write_pickle(tmp_path / "t2.pkl", [4, 5]))
    with pytest.raises(SplitError, match="position.*99.*18 images"):
        carve_test_split(reader, tmp_path / "v.pkl", write_pickle(tmp_path / "t3.pkl", [99]))


def datamodule(cub, source: Path, tmp_path: Path, **settings) -> FewShotDataModule:
    return FewShotDataModule(
        CUB200(str(cub)), shots=None, imbalance_factor=10, split_source=str(source), split_tag="diffii",
        split_file=str(tmp_path / "split.json"), longtail_groups=(5, 2), num_workers=0, **settings,
    )


def test_diffii_longtail_folder_with_index_files_is_the_release_protocol(cub, tmp_path):
    reader = CUB200(str(cub))
    source = make_longtail_folder(reader, tmp_path / "imb_cub_0.1")
    val_file = write_pickle(tmp_path / "cub_test_validsplit.pkl", list(range(0, 18, 3)))
    test_file = write_pickle(tmp_path / "cub_test_testsplit.pkl", [i for i in range(18) if i % 3])
    data = datamodule(cub, source, tmp_path, val_indices=str(val_file), test_indices=str(test_file))
    split = data.split
    assert data.sampling == "lt10-diffii" and split.train_counts() == COUNTS
    assert split.class_groups == dict(zip(reader.class_names, ["many", "medium", "few"], strict=True))
    ordered = reader.release_order("test")
    assert split.val == ordered[0:18:3] and len(split.test) == 12 and not set(split.val) & set(split.test)
    assert {r.sample_id.split("/train/")[0] for r in split.train} == {"imb_cub_0.1"}  # as the TSV keys name them
    assert split.details["val_from"] == "test split (index files)"


def test_longtail_folder_checks(cub, tmp_path):
    reader = CUB200(str(cub))
    source = make_longtail_folder(reader, tmp_path / "imb_cub_0.01")
    with pytest.raises(SplitError, match=r"imbalance factor 100\) but imbalance_factor is 10"):
        _ = datamodule(cub, source, tmp_path).split
    leaked = make_longtail_folder(reader, tmp_path / "leak" / "imb_cub_0.1")
    shutil.copyfile(reader.records("test")[0].path, leaked / "train" / reader.folder_names[0] / "99.jpg")
    with pytest.raises(SplitError, match="copies of official test images"):
        _ = datamodule(cub, leaked, tmp_path / "leak").split
    with pytest.raises(SplitError, match="not a long-tail split folder.*Diff-II"):
        _ = datamodule(cub, tmp_path / "nothing", tmp_path).split
    with pytest.raises(BobInputError, match="come together"):
        datamodule(cub, source, tmp_path, val_indices="v.pkl")
