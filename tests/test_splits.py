import json

import pytest

from bob.data import ClassFolders, FewShotSplit, sample_fewshot_split
from bob.data.errors import DatasetLayoutError, SplitError
from tests.fake_data import make_class_folders

CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture
def reader(tmp_path):
    return ClassFolders(make_class_folders(tmp_path / "data", CLASSES), descriptor="aircraft", name="toy")


def test_split_is_deterministic_and_disjoint(reader):
    first = sample_fewshot_split(reader, shots=5, seed=3, val_per_class=4)
    again = sample_fewshot_split(reader, shots=5, seed=3, val_per_class=4)
    other = sample_fewshot_split(reader, shots=5, seed=4, val_per_class=4)
    assert first.to_dict() == again.to_dict()
    assert first.to_dict()["train"] != other.to_dict()["train"]
    assert first.train_counts() == [5, 5, 5]
    assert len(first.val) == 12
    assert not {r.sample_id for r in first.train} & {r.sample_id for r in first.val}
    assert len(first.test) == 9


def test_split_round_trips_through_file(reader, tmp_path):
    split = sample_fewshot_split(reader, shots=2, seed=0, val_per_class=1)
    path = split.save(tmp_path / "split.json")
    assert FewShotSplit.load(path, reader).to_dict() == split.to_dict()


def test_too_few_images_names_the_class(tmp_path):
    root = make_class_folders(tmp_path / "d", ["big", "small"], train_per_class=3)
    for extra in range(3):
        (root / "train" / "small" / f"small_{extra:03d}.png").unlink()
    reader = ClassFolders(root)
    reader.records("train")
    with pytest.raises(SplitError, match="small"):
        sample_fewshot_split(reader, shots=2, seed=0, val_per_class=0)


def test_split_file_naming_missing_image_fails(reader, tmp_path):
    path = sample_fewshot_split(reader, shots=2, seed=0, val_per_class=1).save(tmp_path / "s.json")
    payload = json.loads(path.read_text())
    payload["train"][0][0] = "train/alpha/not_there.png"
    path.write_text(json.dumps(payload))
    with pytest.raises(SplitError, match="not_there.png"):
        FewShotSplit.load(path, reader)


def test_missing_root_says_what_to_do(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        ClassFolders(tmp_path / "nowhere").class_names
