"""The quality stage end to end through the CLI: identical and shifted sets, cache, uneven classes, DDP."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bob.cli import main
from bob.data import ClassFolders
from bob.data.errors import BobInputError
from bob.data.synthetic_set import SyntheticSetError
from bob.datamodules import SyntheticQualityDataModule
from tests.fake_data import make_class_folders
from tests.quality_fakes import solid_image, write_synthetic_set

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["alpha", "beta", "gamma"]


def data_args(tmp_path: Path, root: Path, synthetic: Path, **overrides) -> dict:
    args = {
        "dataset": {"class_path": "ClassFolders", "init_args": {"root": str(root), "descriptor": "aircraft", "name": "toy"}},
        "synthetic": str(synthetic),
        "shots": 2,
        "val_per_class": 3,
        "image_size": 16,
        "batch_size": 2,
        "num_workers": 0,
        "split_file": str(tmp_path / "split.json"),
        "verify_shots": False,
    }
    return {**args, **overrides}


CSV_LOGGER = {"class_path": "lightning.pytorch.loggers.CSVLogger"}


def write_config(
    tmp_path: Path, root: Path, synthetic: Path, model: dict | None = None, logger: dict = CSV_LOGGER, **data
) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "logger": {**logger, "init_args": {"save_dir": str(tmp_path / "runs")}},
            "enable_progress_bar": False,
            "enable_checkpointing": False,
        },
        "model": {
            "class_path": "SyntheticQuality",
            "init_args": {
                "extractor": {"class_path": "tests.quality_fakes.TinyFeatures"},
                "kid_subset_size": 3,
                "kid_subsets": 10,
                "feature_cache": str(tmp_path / "cache"),
                "context_reader": "tests.quality_fakes.brightness_context",
                **(model or {}),
            },
        },
        "data": {"class_path": "SyntheticQualityDataModule", "init_args": data_args(tmp_path, root, synthetic, **data)},
    }
    path = tmp_path / f"quality-{synthetic.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def split_of(tmp_path: Path, root: Path):
    """The split the runs will read (drawn now and saved to the same split file)."""
    args = data_args(tmp_path, root, tmp_path / "unused")
    args["dataset"] = ClassFolders(root, descriptor="aircraft", name="toy")
    return SyntheticQualityDataModule(**args).split


def brighter(path: Path, amount: int) -> Image.Image:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16) + amount
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def report_of(folder: Path, name: str = "quality-tiny") -> dict:
    text = (folder / f"{name}.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    return json.loads(text)


@pytest.fixture
def world(tmp_path):
    """A dataset, its split, a synthetic set that copies the real val images (contexts drawn
    across all classes) and one that brightens them (contexts from the same class only)."""
    root = make_class_folders(tmp_path / "data", CLASSES, train_per_class=6, test_per_class=2)
    split = split_of(tmp_path, root)
    val = {name: [r.path for r in split.val if r.class_name == name] for name in CLASSES}
    shots = {name: [r.sample_id for r in split.train if r.class_name == name] for name in CLASSES}
    every_shot = [r.sample_id for r in split.train]
    copy = write_synthetic_set(
        tmp_path / "copy", CLASSES, val,
        context_sources={name: [every_shot[(i + 2 * k) % len(every_shot)] for i in range(3)] for k, name in enumerate(CLASSES)},
    )
    bright = write_synthetic_set(
        tmp_path / "bright", CLASSES, {name: [brighter(p, 70) for p in paths] for name, paths in val.items()},
        context_sources={name: [shots[name][i % 2] for i in range(3)] for name in CLASSES},
    )
    return root, copy, bright


def test_identical_set_scores_zero_and_shifted_set_is_worse(world, tmp_path):
    root, copy, bright = world
    cli = main(["test", "-c", str(write_config(tmp_path, root, copy, logger={"class_path": "bob.loggers.WandbLogger"}))])
    assert cli.datamodule.include_real
    run = tmp_path / "runs" / cli.trainer.logger.name / cli.trainer.logger.version  # the run's own folder
    tables = list((run / "wandb").glob("offline-run-*/files/media/table/quality/per_class_*.table.json"))
    assert len(tables) == 1 and len(json.loads(tables[0].read_text())["data"]) == 3
    same = report_of(copy)
    assert [row["class_name"] for row in same["classes"]] == CLASSES
    for row in same["classes"]:
        assert row["num_real"] == 3 and row["num_synthetic"] == 3
        assert abs(row["fid"]) < 1e-6
        assert row["diversity_synthetic"] == pytest.approx(row["diversity_real"], rel=1e-6)
    assert abs(same["overall"]["fid_pooled"]) < 1e-6
    assert cli.trainer.callback_metrics["quality/fid_mean"].abs() < 1e-5
    detected = same["context"]["detected_synthetic"]
    assert detected == same["context"]["detected_real"]  # same pixels, same contexts read
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    # The second set reuses the cached real features and is compared with the first.
    cli = main(["test", "-c", str(write_config(tmp_path, root, bright, {"compare_with": {"copy": str(copy)}}))])
    assert not cli.datamodule.include_real
    shifted = report_of(bright)
    for mine, theirs in zip(shifted["classes"], same["classes"], strict=True):
        assert mine["fid"] > theirs["fid"] + 1e-3
    assert shifted["comparisons"]["copy"]["fid_lower_in"] == 0
    assert shifted["comparisons"]["copy"]["fid_compared"] == 3
    assert shifted["context"]["detected_real"] == same["context"]["detected_real"]  # cached with the features
    assert shifted["context"]["prompted"]["nmi"] == pytest.approx(1.0)  # contexts from the same class only
    assert same["context"]["prompted"]["nmi"] < 0.6
    different = write_config(tmp_path, root, bright, {"compare_with": {"copy": str(copy)}, "kid_subset_size": 2})
    with pytest.raises(BobInputError, match="settings.kid_subset_size: 3 -> 2"):
        main(["test", "-c", str(different)])
    markdown = (bright / "quality-tiny.md").read_text()
    assert "bright has the lower per-class FID in 0 of 3 classes" in markdown
    assert "| per-class FID, mean ↓ |" in markdown


def test_detected_context_dependence(world, tmp_path):
    root, _, _ = world
    biased = write_synthetic_set(
        tmp_path / "biased", CLASSES,
        {"alpha": [solid_image(230, seed=i) for i in range(4)], **{c: [solid_image(25, seed=i) for i in range(4)] for c in CLASSES[1:]}},
    )
    main(["test", "-c", str(write_config(tmp_path, root, biased, {"feature_cache": None}))])
    context = report_of(biased)["context"]
    assert context["detected_real"]["nmi"] < 0.5  # the fake real images' colours are random
    assert context["detected_synthetic"]["nmi"] == pytest.approx(1.0)  # the class decides bright or dark
    assert context["detected_synthetic"]["context_counts"] == {"bright": 4, "dark": 8}
    assert context["prompted"] is None and "no captioned real image" in context["notes"][0]


def test_toy_world_meter_measures_context_bias(tmp_path):
    from bob.toyworld.render import Scene, render
    from bob.toyworld.variants import FEWSHOT_VARIANTS

    variants = FEWSHOT_VARIANTS[:4]
    names = [v.name for v in variants]
    root = tmp_path / "toy"
    for part, count in (("train", 8), ("test", 1)):
        for label, variant in enumerate(variants):
            for i in range(count):
                path = root / part / variant.name / f"{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                render(Scene(variant, (label + i) % 8, i % 6, 100 * label + i)).save(path)

    def rendered(home: bool) -> dict:
        return {
            v.name: [render(Scene(v, label if home else (3 * i + label) % 8, i % 6, 7000 + 100 * label + i)) for i in range(8)]
            for label, v in enumerate(variants)
        }

    reader = {"class_path": "tests.quality_fakes.ToyMeterReader"}
    results = {}
    for name, home in (("datadream_like", True), ("bob_like", False)):
        folder = write_synthetic_set(tmp_path / name, names, rendered(home))
        main(["test", "-c", str(write_config(tmp_path, root, folder, {"context_reader": reader}, image_size=64))])
        results[name] = report_of(folder)["context"]["detected_synthetic"]
    assert results["datadream_like"]["nmi"] > 0.9  # every class in its own background
    assert results["bob_like"]["nmi"] < 0.4
    assert len(results["datadream_like"]["context_counts"]) == 4


def test_uneven_classes_leave_metrics_empty_with_a_warning(tmp_path, caplog):
    root = make_class_folders(tmp_path / "data", CLASSES, train_per_class=8, test_per_class=1)
    for extra in range(4, 8):  # beta keeps 4 train images (2 shots + 2 val), gamma 3 (2 + 1)
        (root / "train" / "beta" / f"beta_{extra:03d}.png").unlink()
    for extra in range(3, 8):
        (root / "train" / "gamma" / f"gamma_{extra:03d}.png").unlink()
    synthetic = write_synthetic_set(
        tmp_path / "uneven", CLASSES,
        {"alpha": [solid_image(100, seed=i) for i in range(6)], "beta": [solid_image(120, seed=i) for i in range(2)],
         "gamma": [solid_image(140, seed=0)]},
    )
    with caplog.at_level(logging.WARNING):
        main(["test", "-c", str(write_config(tmp_path, root, synthetic, val_per_class=5))])
    rows = {row["class_name"]: row for row in report_of(synthetic)["classes"]}
    assert [(r["num_real"], r["num_synthetic"]) for r in rows.values()] == [(5, 6), (2, 2), (1, 1)]
    assert rows["alpha"]["kid"] is not None and rows["alpha"]["fid"] is not None
    assert rows["beta"]["fid"] is not None and rows["beta"]["kid"] is None
    assert rows["gamma"]["fid"] is None and rows["gamma"]["diversity_real"] is None
    assert "needs 2 real and 2 synthetic images, has 1 and 1" in rows["gamma"]["not_computed"]["fid"]
    assert "kid not computed for 2 of 3 class(es)" in caplog.text
    assert "fid not computed for 1 of 3 class(es)" in caplog.text
    overall = report_of(synthetic)["overall"]
    assert overall["num_classes_fid"] == 2 and overall["fid_mean"] == pytest.approx((rows["alpha"]["fid"] + rows["beta"]["fid"]) / 2)


def test_disjoint_or_foreign_classes_fail_clearly(tmp_path):
    root = make_class_folders(tmp_path / "data", CLASSES, train_per_class=6, test_per_class=2)
    for file in (root / "test" / "gamma").iterdir():  # the official test split lacks gamma
        file.unlink()
    (root / "test" / "gamma").rmdir()
    only_gamma = write_synthetic_set(tmp_path / "gamma", CLASSES, {"gamma": [solid_image(90, seed=i) for i in range(3)]})
    with pytest.raises(BobInputError, match="share no class"):
        main(["test", "-c", str(write_config(tmp_path, root, only_gamma, real_part="test"))])
    foreign = write_synthetic_set(tmp_path / "foreign", CLASSES, {"delta": [solid_image(90)], "alpha": [solid_image(80)]})
    with pytest.raises(SyntheticSetError, match="delta"):
        main(["test", "-c", str(write_config(tmp_path, root, foreign))])


@pytest.mark.slow
def test_ddp_on_two_processes_matches_one(world, tmp_path):
    root, _, bright = world
    # 9 real + 8 synthetic images: over 2 ranks the sampler repeats one image, which must count once.
    images = sorted((bright / "images").rglob("*.png"))[:-1]
    odd = write_synthetic_set(
        tmp_path / "odd", CLASSES, {name: [p for p in images if p.parent.name == f"{label:04d}"] for label, name in enumerate(CLASSES)}
    )
    config = write_config(tmp_path, root, odd, {"feature_cache": None})
    main(["test", "-c", str(config), "--model.init_args.report_name=single"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "main.py", "test", "-c", str(config), "--model.init_args.report_name=ddp",
         "--trainer.devices=2", "--trainer.strategy=ddp"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = report_of(odd, "single"), report_of(odd, "ddp")
    assert ddp["overall"]["num_real"] == 9 and ddp["overall"]["num_synthetic"] == 8
    assert ddp["context"]["detected_synthetic"]["num_images"] == 8
    for key in ("overall", "classes", "context"):
        assert _close(ddp[key], single[key]), key


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9)
    return a == b
