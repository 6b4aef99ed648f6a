"""Every shipped YAML parses and instantiates: stage configs alone, parts merged onto a stage."""

from pathlib import Path

import pytest
import yaml
from lightning.pytorch import LightningDataModule, LightningModule

from bob.cli import main
from bob.datamodules import FewShotDataModule
from tests import fake_data

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TRAINER_PRESETS = sorted((CONFIGS / "trainer").glob("*.yaml"))
#: The composed layout: stage configs free of dataset names, and what merges onto each.
STAGE_NAMES = ["captions", "t2i", "generate", "quality", "classifier"]
DATASETS = sorted((CONFIGS / "datasets").glob("*.yaml"))
#: Stage the classifier parts and grids are merged onto.
CLASSIFIER_BASE = [CONFIGS / "classifier.yaml", CONFIGS / "datasets" / "aircraft.yaml"]
#: overlay folder -> the stages it merges onto
OVERLAYS = {"t2i": ["t2i"], "generate": ["generate"], "models": ["t2i", "generate"], "classifier": ["classifier"]}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def is_stage(path: Path) -> bool:
    raw = load(path)
    return "model" in raw and "data" in raw


SHIPPED = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "trainer")
#: The toy world's configs are whole runs, one file each.
TOY_STAGES = [p for p in SHIPPED if p.parent.name == "toyworld" and is_stage(p)]
GRIDS = [p for p in SHIPPED if p.parent.name == "grids"]
PARTS = [
    (stage, p) for p in SHIPPED if p.parent != CONFIGS and p.parts[len(CONFIGS.parts)] in OVERLAYS and p not in GRIDS
    for stage in OVERLAYS[p.parts[len(CONFIGS.parts)]]
]


def config_id(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def test_every_shipped_config_is_covered():
    covered = {CONFIGS / f"{name}.yaml" for name in STAGE_NAMES} | set(DATASETS) | set(TOY_STAGES) | set(GRIDS)
    covered |= {part for _, part in PARTS}
    covered.add(CONFIGS / "predict.yaml")  # runs end to end on a classifier checkpoint in test_classifier_predict.py
    assert set(SHIPPED) - covered == set()


def test_stage_configs_name_no_dataset():
    names = [p.stem for p in DATASETS] + ["aircraft", "FGVCAircraft", "CUB200", "StanfordCars", "OxfordPets", "Flowers102"]
    for stage in STAGE_NAMES:
        text = "\n".join(line for line in (CONFIGS / f"{stage}.yaml").read_text().splitlines() if not line.startswith("#"))
        assert not [name for name in names if name in text], stage


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    """One fake dataset per reader class, made lazily and shared by all configs using it."""
    made: dict[str, Path] = {}

    def root_for(reader_class: str) -> Path:
        short = reader_class.rsplit(".", 1)[-1]
        if short not in made:
            made[short] = fake_data.FAKE_LAYOUT_WRITERS[short](tmp_path_factory.mktemp(short))
        return made[short]

    return root_for


def deep_merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def instantiate(configs: list[Path], fake_roots, tmp_path: Path, extra: list[str] = ()):
    """Instantiate model, data and trainer as `fit`/`predict` would, on a fake copy of the dataset."""
    merged: dict = {}
    for path in configs:
        deep_merge(merged, load(path))
    overrides = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true"]
    dataset = merged["data"].get("init_args", {}).get("dataset")
    if dataset is not None:
        overrides += [
            f"--data.init_args.dataset.init_args.root={fake_roots(dataset['class_path'])}",
            f"--data.init_args.split_file={tmp_path / 'split.json'}",
        ]
    args = [arg for path in configs for arg in ("-c", str(path))]
    return main([*args, *overrides, *extra], run=False)


def check(cli) -> None:
    assert isinstance(cli.model, LightningModule)
    assert isinstance(cli.datamodule, LightningDataModule)
    if isinstance(cli.datamodule, FewShotDataModule):
        assert cli.datamodule.num_classes >= 2


@pytest.mark.parametrize("dataset", DATASETS, ids=config_id)
@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stage_config_instantiates_with_each_dataset(stage, dataset, fake_roots, tmp_path):
    check(instantiate([CONFIGS / f"{stage}.yaml", dataset], fake_roots, tmp_path))


@pytest.mark.parametrize("config", TOY_STAGES, ids=config_id)
def test_toy_world_config_instantiates(config, fake_roots, tmp_path):
    check(instantiate([config], fake_roots, tmp_path))


@pytest.mark.parametrize(("stage", "part"), PARTS, ids=lambda x: x if isinstance(x, str) else config_id(x))
def test_overlay_instantiates_on_its_stage(stage, part, fake_roots, tmp_path):
    check(instantiate([CONFIGS / f"{stage}.yaml", CONFIGS / "datasets" / "aircraft.yaml", part], fake_roots, tmp_path))


@pytest.mark.parametrize("grid", GRIDS, ids=config_id)
def test_grid_keys_are_cli_options(grid, fake_roots, tmp_path):
    backbone = CONFIGS / "classifier" / "backbones" / grid.name
    extra = [f"--{key}={values[-1]}" for key, values in load(grid).items()]
    check(instantiate([*CLASSIFIER_BASE, backbone], fake_roots, tmp_path, extra))


@pytest.mark.parametrize("preset", TRAINER_PRESETS, ids=lambda p: p.name)
def test_trainer_preset_merges_after_a_stage_config(preset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(REPO / "tests" / "configs" / "toy_fit.yaml"), "-c", str(preset), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load(preset)["trainer"]
    for key, value in expected.items():
        assert printed["trainer"][key] == value
