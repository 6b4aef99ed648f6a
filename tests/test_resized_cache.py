"""The resized image cache (`RealSyntheticDataModule(cache_short_side=...)`, bob/data/resized_cache.py)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2.functional._geometry import _compute_resized_output_size

from benchmarks.world import photo
from bob.cli import main
from bob.data import ClassFolders
from bob.data import resized_cache as resized_cache_module
from bob.data.errors import BobInputError, CorruptImageError
from bob.data.images import load_uint8
from bob.data.resized_cache import ResizedImageCache, cached_size, shrink
from bob.datamodules import RealSyntheticDataModule
from bob.datamodules import real_images as real_images_module
from bob.datamodules.fewshot import default_eval_transform
from bob.datamodules.real_images import TO_UINT8, RecordDataset
from tests.classifier_fixtures import CLASSES, make_synthetic_set, timm_backbone, write_classifier_config

#: Mean absolute difference, in grey levels of 255, between the eval transform (bicubic resize
#: to 224 + centre crop) of a photo-like JPEG and of its 256-short-side cache entry. Measured
#: 0.44 (1024x683) and 0.65 (500x375); docs/reproduce.md has these and two real photos' numbers.
EVAL_DIFFERENCE_BOUND = 1.0


def write_noise(path: Path, width: int, height: int, seed: int) -> Path:
    """A PNG of smooth colour plus noise, ``width`` x ``height``, distinct per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, rng.integers(256))], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_rect_folders(root: Path, train_per_class: int = 4, test_per_class: int = 2, size=(40, 30)) -> Path:
    """``root/{train,test}/<class>/<n>.png`` in landscape and portrait, larger than the tests' cache side."""
    seed = 0
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in CLASSES:
            for index in range(count):
                seed += 1
                width, height = size if seed % 2 else size[::-1]
                write_noise(root / split / name / f"{index:03d}.png", width, height, seed)
    return root


@pytest.fixture
def root(tmp_path):
    return make_rect_folders(tmp_path / "data")


@pytest.fixture
def decodes(monkeypatch):
    """Every file the cache decodes, in order; and the plain loader's decode forbidden with the cache on."""
    seen: list[Path] = []

    def counting(path):
        seen.append(Path(path))
        return load_uint8(path)

    monkeypatch.setattr(resized_cache_module, "load_uint8", counting)
    return seen


def forbid_plain_decoding(monkeypatch):
    def forbidden(path):
        raise AssertionError(f"{path} decoded without the cache")

    monkeypatch.setattr(real_images_module, "load_uint8", forbidden)


def make_datamodule(root, tmp_path, prepare=True, **kwargs) -> RealSyntheticDataModule:
    options = {
        "shots": 2, "val_per_class": 1, "image_size": 16, "batch_size": 4, "num_workers": 0, "real_repeats": 2,
        "split_file": str(tmp_path / "split.json"), "cache_dir": str(tmp_path / "cache"), **kwargs,
    }
    datamodule = RealSyntheticDataModule(ClassFolders(root, descriptor="aircraft", name="toy"), **options)
    if prepare:
        datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def all_images(datamodule: RealSyntheticDataModule) -> set[Path]:
    split = datamodule.split
    return {r.path for r in [*split.train, *split.val, *split.test, *datamodule.synthetic_records()]}


def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npy"))


def run_epoch(datamodule: RealSyntheticDataModule) -> int:
    seen = 0
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()):
        for batch in loader:
            assert batch["image"].shape[-2:] == (16, 16)
            seen += len(batch["label"])
    return seen


# ----------------------------------------------------------------- built once, then read
def test_cache_is_built_once_then_only_read(root, tmp_path, decodes, monkeypatch):
    synthetic = make_synthetic_set(tmp_path / "synthetic", CLASSES, per_class=2)
    datamodule = make_datamodule(root, tmp_path, synthetic=str(synthetic), cache_short_side=20)
    images = all_images(datamodule)
    assert len(decodes) == len(images) and set(decodes) == images  # each image once, in prepare_data
    assert len(entries(tmp_path / "cache" / "resized_20")) == len(images)
    forbid_plain_decoding(monkeypatch)
    for _ in range(2):  # two epochs: no decoding at all
        assert run_epoch(datamodule) > 0
    assert len(decodes) == len(images)
    # A second DataModule (another run, or another DDP rank) reads the same entries.
    again = make_datamodule(root, tmp_path, synthetic=str(synthetic), cache_short_side=20)
    run_epoch(again)
    assert len(decodes) == len(images)


def test_dataloader_workers_build_missing_entries(root, tmp_path):
    """No prepare_data (a set made during the run): the workers build entries as they read, atomically."""
    synthetic = make_synthetic_set(tmp_path / "synthetic", CLASSES, per_class=2)
    # One batch holds the whole pool: no partial last batch is dropped, so every image is read.
    datamodule = make_datamodule(root, tmp_path, prepare=False, synthetic=str(synthetic), cache_short_side=20,
                                 num_workers=2, batch_size=64)
    assert not (tmp_path / "cache").exists()
    loader = datamodule.train_dataloader()
    assert "RealSyntheticDataModule" not in pickle.dumps(loader.dataset).decode("latin-1")  # plain values for workers
    for _ in loader:
        pass
    trained = {r.path for r in [*datamodule.split.train, *datamodule.synthetic_records()]}
    folder = tmp_path / "cache" / "resized_20"
    assert len(entries(folder)) == len(trained)
    assert not [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".npy"]  # no temporary files left
    cache = datamodule.image_cache
    assert all(cache.read(cache.entry(path)) is not None for path in trained)


def test_entries_have_the_short_side_and_are_uint8(tmp_path):
    cache = ResizedImageCache(tmp_path / "cache", 256, match_size=224)
    for width, height in ((1024, 683), (683, 1024), (500, 375)):
        source = tmp_path / f"{width}x{height}.jpg"
        photo(width, height, 1).save(source, quality=90)
        image = cache(source)
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
        assert min(image.shape[-2:]) == 256 and image.shape[0] == 3
        assert (image.shape[-1] > image.shape[-2]) == (width > height)  # the shape is kept
        stored = np.load(cache.entry(source))
        assert stored.dtype == np.uint8 and torch.equal(torch.from_numpy(stored), image.as_subclass(torch.Tensor))
    # An image already small enough is stored as decoded.
    small = tmp_path / "small.png"
    write_noise(small, 300, 200, 5)
    assert torch.equal(cache(small), TO_UINT8(Image.open(small).convert("RGB")))


def test_entry_sizes_resize_to_the_originals_eval_size():
    """The long side's rounding makes ``Resize(224)`` of an entry as large as ``Resize(224)`` of the original."""
    for short in range(257, 1200, 37):
        for long in range(short, 2 * short + 1, 13):
            for height, width in ((short, long), (long, short)):
                size = cached_size(height, width, 256, match_size=224)
                assert min(size) == 256 and abs(max(size) - 256 * long / short) < 2
                assert _compute_resized_output_size(size, [224]) == _compute_resized_output_size((height, width), [224])


def test_a_changed_source_is_decoded_again(root, tmp_path, decodes):
    cache = ResizedImageCache(tmp_path / "cache", 20)
    source = next(root.rglob("*.png"))
    first = cache(source)
    assert cache(source).equal(first) and len(decodes) == 1
    write_noise(source, 40, 30, seed=999)  # other pixels
    stat = source.stat()
    # Coarse file-system clocks can give a quick rewrite the old time; a real edit comes later.
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = cache(source)
    assert len(decodes) == 2 and not second.equal(first)
    assert second.equal(shrink(load_uint8(source), 20))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "float array", "wrong shape"])
def test_a_corrupt_entry_is_rebuilt(root, tmp_path, decodes, damage, caplog):
    cache = ResizedImageCache(tmp_path / "cache", 20)
    source = next(root.rglob("*.png"))
    expected = cache(source)
    entry = cache.entry(source)
    if damage == "garbage":
        entry.write_bytes(b"not an array")
    elif damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:200])
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "float array":
        np.save(entry, expected.numpy().astype(np.float32))
    else:
        np.save(entry, np.zeros((3, 64, 64), dtype=np.uint8))
    with caplog.at_level("WARNING"):
        assert cache(source).equal(expected)
    assert len(decodes) == 2 and "decoding its source again" in caplog.text
    assert cache.read(entry).equal(expected)  # rewritten whole


def test_broken_and_missing_images_are_named(root, tmp_path):
    broken = next((root / "test").rglob("*.png"))  # every test image is in the split
    broken.write_bytes(b"not a png")
    with pytest.raises(CorruptImageError, match="cannot be decoded"):
        make_datamodule(root, tmp_path, cache_short_side=20)
    assert not any(cache.is_file() for cache in (tmp_path / "cache").rglob("*.tmp"))
    with pytest.raises(CorruptImageError, match="does not exist"):
        ResizedImageCache(tmp_path / "cache", 20)(tmp_path / "nowhere.png")


def test_cache_smaller_than_the_model_input_is_refused(root, tmp_path):
    with pytest.raises(BobInputError, match="cache_short_side=12 is smaller than image_size=16"):
        make_datamodule(root, tmp_path, prepare=False, cache_short_side=12)


# ----------------------------------------------------------------- the default is unchanged
def test_default_reads_the_files_exactly_as_before(root, tmp_path, monkeypatch):
    synthetic = make_synthetic_set(tmp_path / "synthetic", CLASSES, per_class=2)
    datamodule = make_datamodule(root, tmp_path, synthetic=str(synthetic))
    assert datamodule.image_cache is None and datamodule.image_loader() is None
    dataset = datamodule.train_dataset()
    assert all(part.load is None for part in dataset.datasets)
    assert datamodule.val_dataloader().dataset.load is None
    records = [*datamodule.split.train * 2, *datamodule.synthetic_records()]
    transform = datamodule.train_transform
    torch.manual_seed(7)
    served = [dataset[i]["image"] for i in range(len(dataset))]
    torch.manual_seed(7)
    reference = RecordDataset(records, transform)  # today's dataset, no loader given
    expected = [reference[i]["image"] for i in range(len(reference))]
    assert len(served) == len(expected) and all(torch.equal(a, b) for a, b in zip(served, expected, strict=True))
    run_epoch(datamodule)
    assert not (tmp_path / "cache").exists()
    assert datamodule.pool_summary()["data/cache_short_side"] is None


# ----------------------------------------------------------------- what the cache changes
def test_eval_transform_of_the_cache_is_close_to_the_originals(tmp_path):
    evaluate = default_eval_transform(224)
    at_256 = ResizedImageCache(tmp_path / "cache", 256, match_size=224)
    at_224 = ResizedImageCache(tmp_path / "cache", 224, match_size=224)
    for width, height, seed in ((1024, 683, 1), (500, 375, 2)):
        source = tmp_path / f"{width}x{height}.jpg"
        photo(width, height, seed).save(source, quality=90)
        original = evaluate(TO_UINT8(Image.open(source).convert("RGB")))
        cached = evaluate(at_256(source))
        assert cached.shape == original.shape == (3, 224, 224)
        difference = (cached.int() - original.int()).abs().float().mean().item()
        assert 0 < difference < EVAL_DIFFERENCE_BOUND, (width, height, difference)
        # A cache at the eval size holds the eval resize itself: the same pixels.
        assert torch.equal(evaluate(at_224(source)), original)


# ----------------------------------------------------------------- end to end
def test_fit_with_the_cache_on(tmp_path, monkeypatch):
    make_rect_folders(tmp_path / "data", train_per_class=4, test_per_class=2, size=(64, 48))
    cache_dir = tmp_path / "cache"
    config = write_classifier_config(
        tmp_path, timm_backbone(), image_size=32, model_args={"test_after_fit": False},
        data_args={"real_repeats": 1, "cache_short_side": 36, "cache_dir": str(cache_dir)},
    )
    settings = yaml.safe_load(config.read_text())
    settings["trainer"].update(max_steps=1, max_epochs=1, limit_val_batches=1, val_check_interval=1)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    forbid_plain_decoding(monkeypatch)
    cli = main(["fit", "-c", str(config)])
    assert cli.trainer.global_step == 1 and "val/acc" in cli.trainer.callback_metrics  # validated too
    datamodule = cli.datamodule
    assert datamodule.cache_short_side == 36 and datamodule.pool_summary()["data/cache_short_side"] == 36
    images = all_images(datamodule)
    assert len(entries(cache_dir / "resized_36")) == len(images)
    sides = {min(np.load(path, mmap_mode="r").shape[1:]) for path in entries(cache_dir / "resized_36")}
    assert sides == {36, 32}  # real 64x48 photos shrunk to 36; 32 px synthetic images kept
