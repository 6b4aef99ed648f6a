"""Long-tail subsets: the exponential profile, determinism, disjoint validation, class groups."""

import pytest

from bob.data import CUB200, ClassFolders, FewShotSplit
from bob.data.errors import SplitError
from bob.data.longtail import longtail_class_order, longtail_counts, sample_longtail_split
from tests.fake_data import make_class_folders, make_cub200

CLASSES = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    root = make_class_folders(tmp_path_factory.mktemp("lt"), CLASSES, train_per_class=20, test_per_class=1)
    return ClassFolders(root, descriptor="bird", name="toy")


def test_counts_follow_the_exponential_profile():
    # 20 * 10^(-i/5): 20, 12.6, 7.96, 5.02, 3.17, 2.0
    assert longtail_counts(20, 6, 10) == [20, 12, 7, 5, 3, 2]
    cub = longtail_counts(30, 200, 100)
    assert cub[0] == 30 and cub[-1] == 1 and cub == sorted(cub, reverse=True)
    assert longtail_counts(5, 4, 1000) == [5, 1, 1, 1]  # never below one image
    assert longtail_counts(7, 1, 100) == [7]


def test_split_has_the_profile_in_its_seeded_class_order(reader):
    split = sample_longtail_split(reader, 10, seed=3, val_per_class=3, many_above=10, few_below=4)
    order = longtail_class_order(len(CLASSES), 3)
    counts = split.train_counts()
    assert [counts[label] for label in order] == [20, 12, 7, 5, 3, 2]
    assert split.shots is None and split.imbalance_factor == 10 and split.source == "longtail"
    groups = [split.class_groups[CLASSES[label]] for label in order]
    assert groups == ["many", "many", "medium", "medium", "few", "few"]
    assert split.details == {"val_per_class": 3, "max_per_class": 20, "many_above": 10, "few_below": 4}


def test_validation_comes_from_leftovers_only(reader):
    split = sample_longtail_split(reader, 10, seed=3, val_per_class=3)
    head = CLASSES[longtail_class_order(len(CLASSES), 3)[0]]
    assert not {r.sample_id for r in split.train} & {r.sample_id for r in split.val}
    assert not [r for r in split.val if r.class_name == head]  # the head used its whole pool
    assert len(split.val) == 3 * 5


def test_split_is_deterministic_and_seed_dependent(reader, tmp_path):
    first = sample_longtail_split(reader, 20, seed=0, val_per_class=2)
    assert first.to_dict() == sample_longtail_split(reader, 20, seed=0, val_per_class=2).to_dict()
    others = [sample_longtail_split(reader, 20, seed=s, val_per_class=2).train_counts() for s in (1, 2, 3)]
    assert any(counts != first.train_counts() for counts in others)
    loaded = FewShotSplit.load(first.save(tmp_path / "lt.json"), reader)
    assert loaded.to_dict() == first.to_dict() and loaded.class_groups == first.class_groups


def test_default_head_and_groups_come_from_the_dataset(tmp_path):
    reader = CUB200(make_cub200(tmp_path / "cub", train_per_class=12))
    split = sample_longtail_split(reader, 10, seed=0, val_per_class=1)
    assert sorted(split.train_counts(), reverse=True) == [12, 3, 1]  # 12 * 10^(-i/2)
    assert (split.details["many_above"], split.details["few_below"]) == CUB200.longtail_groups == (20, 5)
    assert sorted(split.class_groups.values()) == ["few", "few", "medium"]


def test_bad_requests_fail_clearly(reader):
    with pytest.raises(SplitError, match="imbalance_factor must be >= 1"):
        sample_longtail_split(reader, 0.5, seed=0, val_per_class=1)
    with pytest.raises(SplitError, match=r"fewer training images than their long-tail position needs.*\(20 < 25\)"):
        sample_longtail_split(reader, 10, seed=0, val_per_class=1, max_per_class=25)
    with pytest.raises(SplitError, match="few_below <= many_above"):
        sample_longtail_split(reader, 10, seed=0, val_per_class=1, many_above=2, few_below=10)
