"""Each reader parses a fake of its official layout; bad layouts fail with what to do."""

import shutil

import pytest

from bob.data import (
    CUB200,
    ClassFolders,
    FGVCAircraft,
    Flowers102,
    OxfordPets,
    StanfordCars,
    sample_fewshot_split,
)
from bob.data.errors import DatasetLayoutError
from bob.data.splits import FewShotSplit
from tests import fake_data

# reader, fake writer, archive folder, expected (raw, prompt) names for the first classes
LAYOUTS = {
    "aircraft": (FGVCAircraft, fake_data.make_fgvc_aircraft, "fgvc-aircraft-2013b",
                 [("707-320", "707-320"), ("F/A-18", "F/A-18"), ("F-16A/B", "F-16A/B"), ("Cessna 172", "Cessna 172")]),
    "cub": (CUB200, fake_data.make_cub200, "CUB_200_2011",
            [("001.Black_footed_Albatross", "Black footed Albatross"), ("002.Laysan_Albatross", "Laysan Albatross")]),
    "cars": (StanfordCars, fake_data.make_stanford_cars, "stanford_cars",
             [("AM General Hummer SUV 2000", "AM General Hummer SUV 2000"),
              ("Ram C/V Cargo Van Minivan 2012", "Ram C/V Cargo Van Minivan 2012")]),
    "pets": (OxfordPets, fake_data.make_oxford_pets, "oxford-iiit-pet",
             [("Abyssinian", "Abyssinian"), ("american_bulldog", "American Bulldog"),
              ("staffordshire_bull_terrier", "Staffordshire Bull Terrier")]),
    "flowers": (Flowers102, fake_data.make_flowers102, "flowers-102",
                [("pink primrose", "pink primrose"), ("hard-leaved pocket orchid", "hard-leaved pocket orchid")]),
}
DESCRIPTORS = {"aircraft": "aircraft", "cub": "bird", "cars": "car", "pets": "pet", "flowers": "flower"}


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    return {name: writer(tmp_path_factory.mktemp(name)) for name, (_, writer, _, _) in LAYOUTS.items()}


@pytest.mark.parametrize("name", LAYOUTS)
def test_reader_parses_its_layout(name, fakes):
    reader_class, _, _, expected = LAYOUTS[name]
    reader = reader_class(fakes[name])
    assert reader.name == name
    assert reader.descriptor == DESCRIPTORS[name]
    assert list(zip(reader.class_names, reader.prompt_names, strict=True))[: len(expected)] == expected
    train, test = reader.records("train"), reader.records("test")
    per_class = 12 if name != "flowers" else 4  # flowers: official train = trnid + valid
    assert len(train) == per_class * len(reader.class_names)
    assert len(test) == (3 if name != "flowers" else 1) * len(reader.class_names)
    assert not {r.sample_id for r in train} & {r.sample_id for r in test}
    assert all(r.path.is_file() and r.class_name == reader.class_names[r.label] for r in train + test)


def test_flowers_names_come_from_torchvision(fakes):
    from torchvision.datasets import Flowers102 as TorchvisionFlowers

    reader = Flowers102(fakes["flowers"])
    assert len(reader.class_names) == 102
    assert reader.class_names == list(TorchvisionFlowers.classes)
    first = reader.records("train")[0]
    assert first.sample_id == "jpg/image_00001.jpg" and first.class_name == "pink primrose"


@pytest.mark.parametrize("name", LAYOUTS)
def test_root_may_be_the_archive_folder_itself(name, fakes):
    reader_class, _, archive, _ = LAYOUTS[name]
    outer, inner = reader_class(fakes[name]), reader_class(fakes[name] / archive)
    assert outer.data_dir == inner.data_dir == fakes[name] / archive
    assert [r.sample_id for r in outer.records("train")] == [r.sample_id for r in inner.records("train")]


def test_slash_in_class_name_survives_a_split_file(fakes, tmp_path):
    reader = FGVCAircraft(fakes["aircraft"])
    split = sample_fewshot_split(reader, shots=3, seed=0, val_per_class=2)
    loaded = FewShotSplit.load(split.save(tmp_path / "s.json"), reader)
    shots = {r.class_name for r in loaded.train}
    assert {"F/A-18", "F-16A/B"} <= shots
    assert loaded.class_names == ["707-320", "F/A-18", "F-16A/B", "Cessna 172"]
    assert loaded.train == split.train


@pytest.mark.parametrize("name", LAYOUTS)
def test_missing_root_names_path_and_download(name, tmp_path):
    reader_class = LAYOUTS[name][0]
    with pytest.raises(DatasetLayoutError) as error:
        reader_class(tmp_path / "nowhere").records("train")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert "https://" in message


@pytest.mark.parametrize("name", LAYOUTS)
def test_wrong_layout_lists_expected_files_and_download(name, tmp_path):
    reader_class, writer, archive, _ = LAYOUTS[name]
    root = writer(tmp_path / "data")
    missing = reader_class.required_paths[0]
    target = root / archive / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DatasetLayoutError) as error:
        reader_class(root).records("train")
    message = str(error.value)
    assert f"missing: {missing}" in message
    assert all(p in message for p in reader_class.required_paths)
    assert str(root / archive) in message and "https://" in message


def test_listed_but_missing_image_is_named(tmp_path):
    root = fake_data.make_cub200(tmp_path / "data")
    victim = next((root / "CUB_200_2011" / "images" / "002.Laysan_Albatross").iterdir())
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match=victim.name):
        CUB200(root).records("train")


def test_damaged_index_line_is_named(tmp_path):
    root = fake_data.make_fgvc_aircraft(tmp_path / "data")
    index = root / "fgvc-aircraft-2013b/data/images_variant_test.txt"
    index.write_text(index.read_text() + "1234567 Concorde\n")
    with pytest.raises(DatasetLayoutError, match="Concorde"):
        FGVCAircraft(root).records("test")


def test_cars_label_outside_class_list_is_refused(tmp_path):
    root = fake_data.make_stanford_cars(tmp_path / "data")
    fake_data._save_cars_annotations(root / "stanford_cars/cars_test_annos_withlabels.mat", [("00001.jpg", 9)])
    with pytest.raises(DatasetLayoutError, match="outside 1..3"):
        StanfordCars(root).records("test")


def test_every_reader_has_a_fake_for_config_tests():
    assert {cls.__name__ for cls, *_ in LAYOUTS.values()} <= set(fake_data.FAKE_LAYOUT_WRITERS)


def test_class_folders_report_stray_files(tmp_path):
    root = fake_data.make_class_folders(tmp_path / "data", ["alpha", "beta"])
    (root / "train" / "beta" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetLayoutError, match="notes.txt"):
        ClassFolders(root).records("train")
