"""External splits: bob split files, path lists and Diff-II style ``<k>shot/train/<class>/`` folders."""

import shutil

import pytest

from bob.data import FewShotSplit, FGVCAircraft, sample_fewshot_split
from bob.data.errors import SplitError
from bob.data.external_splits import load_split_source
from bob.data.folder_names import folder_key, match_class_folders
from tests import fake_data
from tests.fake_data import make_shot_folder

#: Diff-II folder name -> the raw variant it holds copies of.
FOLDERS = {"707-320": "707-320", "F_A-18": "F/A-18", "F-16A_B": "F-16A/B", "Cessna_172": "Cessna 172"}


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    return FGVCAircraft(fake_data.make_fgvc_aircraft(tmp_path_factory.mktemp("aircraft")))


@pytest.mark.parametrize(
    ("folder", "class_name"),
    [
        ("F_A-18", "F/A-18"),
        ("F-16A_B", "F-16A/B"),
        ("BAE_146-200", "BAE 146-200"),
        ("am_general_hummer_suv_2000", "AM General Hummer SUV 2000"),
        ("ram_c_v_cargo_van_minivan_2012", "Ram C/V Cargo Van Minivan 2012"),
        ("bentley_continental_supersports_conv._convertible_2012", "Bentley Continental Supersports Conv. Convertible 2012"),
        ("Black_footed_Albatross", "001.Black_footed_Albatross"),
        ("american_bulldog", "american_bulldog"),
        ("colt_s_foot", "colt's foot"),
    ],
)
def test_release_folder_names_match_raw_class_names(folder, class_name):
    assert folder_key(folder) == folder_key(class_name)
    assert match_class_folders([folder], ["other class", class_name], "x") == {folder: 1}


def test_folder_matching_no_class_suggests_close_names():
    with pytest.raises(SplitError, match=r"'Cesna_172' \(closest: \['Cessna 172'\]\)"):
        match_class_folders(["Cesna_172"], ["Cessna 172", "707-320"], "x")


def test_two_folders_for_one_class_are_refused():
    with pytest.raises(SplitError, match="several folders"):
        match_class_folders(["F_A-18", "f-a-18"], ["F/A-18"], "x")


@pytest.mark.parametrize("give", ["parent", "shot_folder"])
def test_shot_folder_split(reader, tmp_path, give):
    root = make_shot_folder(reader, tmp_path / "diffii", 5, FOLDERS)
    split = load_split_source(root if give == "parent" else root / "5shot", reader, 5, seed=0, val_per_class=3)
    assert split.train_counts() == [5, 5, 5, 5]
    assert "5shot/train/F_A-18/0.jpg" in {r.sample_id for r in split.train}
    assert {r.class_name for r in split.train if r.sample_id.startswith("5shot/train/F-16A_B/")} == {"F-16A/B"}
    assert all(split.is_external(r) for r in split.train)
    assert split.details["shots_found_in_train"] == 20
    assert split.details["class_folders"] == dict(sorted(FOLDERS.items()))
    copied = {r.sample_id for name in reader.class_names for r in [x for x in reader.records("train") if x.class_name == name][:5]}
    assert len(split.val) == 12 and not copied & {r.sample_id for r in split.val}


def test_shot_folder_split_round_trips(reader, tmp_path):
    split = load_split_source(make_shot_folder(reader, tmp_path / "d", 5, FOLDERS), reader, 5, seed=1, val_per_class=2)
    loaded = FewShotSplit.load(split.save(tmp_path / "s.json"), reader)
    assert loaded.to_dict() == split.to_dict()
    assert [r.path for r in loaded.train] == [r.path for r in split.train]


def test_shot_folder_with_unknown_class_folder_fails(reader, tmp_path):
    root = make_shot_folder(reader, tmp_path / "d", 5, FOLDERS)
    (root / "5shot/train/Cessna_172").rename(root / "5shot/train/Cesna_172")
    with pytest.raises(SplitError, match="Cesna_172.*Cessna 172"):
        load_split_source(root, reader, 5, seed=0, val_per_class=2)


def test_shot_folder_class_short_of_shots_fails(reader, tmp_path):
    root = make_shot_folder(reader, tmp_path / "d", 5, FOLDERS)
    (root / "5shot/train/F_A-18/4.jpg").unlink()
    with pytest.raises(SplitError, match=r"'F/A-18' has 4"):
        load_split_source(root, reader, 5, seed=0, val_per_class=2)


def test_shot_folder_missing_a_class_fails(reader, tmp_path):
    root = make_shot_folder(reader, tmp_path / "d", 5, {k: v for k, v in FOLDERS.items() if k != "707-320"})
    with pytest.raises(SplitError, match=r"'707-320' has 0"):
        load_split_source(root, reader, 5, seed=0, val_per_class=2)


def test_shot_folder_copy_in_wrong_class_fails(reader, tmp_path):
    root = make_shot_folder(reader, tmp_path / "d", 5, FOLDERS)
    shutil.copyfile(root / "5shot/train/707-320/0.jpg", root / "5shot/train/F_A-18/0.jpg")
    with pytest.raises(SplitError, match="wrong class folder"):
        load_split_source(root, reader, 5, seed=0, val_per_class=2)


def test_shot_folder_of_other_shot_count_fails(reader, tmp_path):
    root = make_shot_folder(reader, tmp_path / "d", 5, FOLDERS)
    with pytest.raises(SplitError, match="5-shot split but shots is 3"):
        load_split_source(root / "5shot", reader, 3, seed=0, val_per_class=2)
    with pytest.raises(SplitError, match="3shot"):
        load_split_source(root, reader, 3, seed=0, val_per_class=2)


def test_path_list_split(reader, tmp_path):
    chosen = [r for name in reader.class_names for r in [x for x in reader.records("train") if x.class_name == name][-2:]]
    listing = tmp_path / "shots.txt"
    listing.write_text("# my split\n" + "\n".join(r.sample_id for r in chosen) + "\n\n")
    split = load_split_source(listing, reader, 2, seed=0, val_per_class=4)
    assert sorted(r.sample_id for r in split.train) == sorted(r.sample_id for r in chosen)
    assert not any(split.is_external(r) for r in split.train)
    assert len(split.val) == 16 and not {r.sample_id for r in chosen} & {r.sample_id for r in split.val}
    assert split.source == str(listing.resolve())


@pytest.mark.parametrize(
    ("line", "problem"),
    [("test", "in the official test split"), ("missing", "missing"), ("twice", "listed twice")],
)
def test_path_list_with_unusable_entries_fails(reader, tmp_path, line, problem):
    chosen = [r.sample_id for name in reader.class_names for r in [x for x in reader.records("train") if x.class_name == name][:1]]
    extra = {"test": reader.records("test")[0].sample_id, "missing": "data/images/0000000.jpg", "twice": chosen[0]}[line]
    listing = tmp_path / "shots.txt"
    listing.write_text("\n".join([*chosen, extra]))
    with pytest.raises(SplitError, match=f"1 {problem}.*{extra}"):
        load_split_source(listing, reader, 1, seed=0, val_per_class=1)


def test_path_list_with_too_few_shots_fails(reader, tmp_path):
    listing = tmp_path / "shots.txt"
    listing.write_text(reader.records("train")[0].sample_id)
    with pytest.raises(SplitError, match="exactly shots=1"):
        load_split_source(listing, reader, 1, seed=0, val_per_class=1)


def test_json_source_is_used_as_it_is(reader, tmp_path):
    made = sample_fewshot_split(reader, shots=2, seed=7, val_per_class=1)
    path = made.save(tmp_path / "given.json")
    split = load_split_source(path, reader, 2, seed=0, val_per_class=5)
    assert split.train == made.train and split.val == made.val
    assert split.source == str(path.resolve()) and split.details["made_as"] == "sampled"
    with pytest.raises(SplitError, match="has 2 shots per class but shots is 5"):
        load_split_source(path, reader, 5, seed=0, val_per_class=5)


def test_missing_source_says_what_is_accepted(reader, tmp_path):
    with pytest.raises(SplitError, match="does not exist.*Diff-II.*split_source: null"):
        load_split_source(tmp_path / "nope", reader, 5, seed=0, val_per_class=1)


def test_dataset_duplicates_across_classes_are_not_misfiled_shots(tmp_path):
    reader = FGVCAircraft(fake_data.make_fgvc_aircraft(tmp_path / "aircraft"))
    first = {name: next(r for r in reader.records("train") if r.class_name == name) for name in ("707-320", "F/A-18")}
    first["F/A-18"].path.write_bytes(first["707-320"].path.read_bytes())  # one photo filed under two classes
    split = load_split_source(make_shot_folder(reader, tmp_path / "d", 5, FOLDERS), reader, 5, seed=0, val_per_class=8)
    assert split.details["shots_found_in_train"] == 20
    assert not {first["707-320"].sample_id, first["F/A-18"].sample_id} & {r.sample_id for r in split.val}
