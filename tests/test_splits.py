import json

import pytest

from bob.data import ClassFolders, FewShotSplit, ImageRecord, sample_fewshot_split
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
        ClassFolders(tmp_path / "nowhere").records("train")


def _edit_split(reader, tmp_path, edit):
    path = sample_fewshot_split(reader, shots=2, seed=0, val_per_class=2).save(tmp_path / "s.json")
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))
    return path


def test_split_file_naming_unknown_class_fails(reader, tmp_path):
    def edit(payload):
        payload["train"][0][1] = "delta"

    with pytest.raises(SplitError, match="unknown class.*delta"):
        FewShotSplit.load(_edit_split(reader, tmp_path, edit), reader)


def test_split_file_with_other_classes_fails(reader, tmp_path):
    def edit(payload):
        payload["class_names"] = ["alpha", "beta", "omega"]

    with pytest.raises(SplitError, match="omega"):
        FewShotSplit.load(_edit_split(reader, tmp_path, edit), reader)


def test_split_file_relabelling_an_image_fails(reader, tmp_path):
    def edit(payload):
        payload["train"][0][1] = "gamma" if payload["train"][0][1] != "gamma" else "alpha"

    with pytest.raises(SplitError, match="wrong class"):
        FewShotSplit.load(_edit_split(reader, tmp_path, edit), reader)


def test_split_file_using_a_test_image_for_training_fails(reader, tmp_path):
    def edit(payload):
        payload["train"][0] = payload["test"][0]

    with pytest.raises(SplitError, match="not in the official split"):
        FewShotSplit.load(_edit_split(reader, tmp_path, edit), reader)


def test_split_file_whose_val_overlaps_the_shots_fails(reader, tmp_path):
    def edit(payload):
        payload["val"][0] = payload["train"][0]

    with pytest.raises(SplitError, match="also training shots"):
        FewShotSplit.load(_edit_split(reader, tmp_path, edit), reader)


def test_copied_shot_in_val_is_caught_by_content(reader, tmp_path):
    split = sample_fewshot_split(reader, shots=2, seed=0, val_per_class=2)
    copy = tmp_path / "copies" / "0.png"
    copy.parent.mkdir()
    copy.write_bytes(split.val[0].path.read_bytes())
    train = [ImageRecord("2shot/train/x/0.png", copy, split.val[0].label, split.val[0].class_name), *split.train[1:]]
    with pytest.raises(SplitError, match=r"2shot/train/x/0\.png"):
        FewShotSplit(split.dataset, 0, split.class_names, train, split.val, split.test, data_dir=reader.data_dir)


def test_external_records_round_trip_with_their_path(reader, tmp_path):
    split = sample_fewshot_split(reader, shots=2, seed=0, val_per_class=2)
    copy = tmp_path / "elsewhere" / "0.png"
    copy.parent.mkdir()
    copy.write_bytes(split.train[0].path.read_bytes())
    moved = ImageRecord("2shot/train/alpha/0.png", copy, split.train[0].label, split.train[0].class_name)
    split.train[0] = moved
    saved = json.loads(split.save(tmp_path / "s.json").read_text())
    assert saved["train"][0] == ["2shot/train/alpha/0.png", moved.class_name, str(copy)]
    assert saved["train"][1] == [split.train[1].sample_id, split.train[1].class_name]
    loaded = FewShotSplit.load(tmp_path / "s.json", reader)
    assert loaded.train[0] == moved and loaded.to_dict() == split.to_dict()
