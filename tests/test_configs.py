"""Every shipped YAML parses, and every stage config instantiates its model, data and trainer."""

from pathlib import Path

import pytest
import yaml
from lightning.pytorch import LightningDataModule, LightningModule

from bob.cli import main
from tests import fake_data

REPO = Path(__file__).resolve().parents[1]
TRAINER_PRESETS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))
STAGE_CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "trainer" and "parts" not in p.parts)


def dataset_section(config: dict) -> dict:
    return config["data"]["init_args"]["dataset"]


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    """One fake dataset per reader class, made lazily and shared by all configs using it."""
    made: dict[str, Path] = {}

    def root_for(reader_class: str) -> Path:
        short = reader_class.rsplit(".", 1)[-1]
        if short not in made:
            writer = fake_data.FAKE_LAYOUT_WRITERS[short]
            made[short] = writer(tmp_path_factory.mktemp(short))
        return made[short]

    return root_for


@pytest.mark.parametrize("config", STAGE_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_stage_config_instantiates(config, fake_roots, tmp_path):
    raw = yaml.safe_load(config.read_text())
    if "data" not in raw or "model" not in raw:
        pytest.fail(f"{config} is not a complete stage config (needs model and data)")
    reader = dataset_section(raw)["class_path"]
    cli = main(
        [
            "-c", str(config),
            f"--data.init_args.dataset.init_args.root={fake_roots(reader)}",
            f"--data.init_args.split_file={tmp_path / 'split.json'}",
            "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true",
        ],
        run=False,
    )
    assert isinstance(cli.model, LightningModule)
    assert isinstance(cli.datamodule, LightningDataModule)
    assert cli.datamodule.num_classes >= 2


@pytest.mark.parametrize("preset", TRAINER_PRESETS, ids=lambda p: p.name)
def test_trainer_preset_merges_after_a_stage_config(preset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(REPO / "tests" / "configs" / "toy_fit.yaml"), "-c", str(preset), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = yaml.safe_load(preset.read_text())["trainer"]
    for key, value in expected.items():
        assert printed["trainer"][key] == value
