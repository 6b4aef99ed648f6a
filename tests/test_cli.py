import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import bob
from bob.cli import main
from bob.loggers import WandbLogger
from tests.fake_data import make_class_folders

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path) -> Path:
    root = make_class_folders(tmp_path / "data", ["F/A-18".replace("/", "_"), "707-320", "A380"], 6, 2)
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 1,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "runs")}},
            "enable_progress_bar": False,
            "enable_checkpointing": False,
        },
        "model": {"class_path": "tests.cli_toys.LinkedToyModule"},
        "data": {
            "class_path": "FewShotDataModule",
            "init_args": {
                "dataset": {"class_path": "ClassFolders", "init_args": {"root": str(root), "descriptor": "aircraft"}},
                "shots": 2,
                "val_per_class": 2,
                "image_size": 16,
                "batch_size": 4,
                "num_workers": 0,
                "split_file": str(tmp_path / "split.json"),
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "fit" in capsys.readouterr().out


def test_fit_help_documents_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert "--trainer.max_epochs" in capsys.readouterr().out


def test_links_data_values_into_model(tmp_path):
    cli = main(["-c", str(write_config(tmp_path))], run=False)
    assert cli.model.hparams.num_classes == 3
    assert cli.model.hparams.descriptor == "aircraft"
    assert cli.model.hparams.class_names == cli.datamodule.class_names


def test_fit_saves_versioned_config_and_split(tmp_path):
    config = write_config(tmp_path)
    for _ in range(2):  # the second run overwrites the saved config instead of refusing
        cli = main(["fit", "-c", str(config)])
    saved = Path(cli.trainer.log_dir) / "config.yaml"
    text = saved.read_text()
    assert text.startswith(f"# written by bob {bob.__version__}")
    assert yaml.safe_load(text)["data"]["init_args"]["shots"] == 2
    assert (tmp_path / "split.json").is_file()


def test_print_config_exits_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(write_config(tmp_path)), "--print_config"])
    assert exit_info.value.code == 0
    assert "LinkedToyModule" in capsys.readouterr().out


def test_entry_points_run_the_same_cli():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for command in ([sys.executable, "main.py", "--help"], [sys.executable, "-m", "bob", "--help"]):
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "{fit,validate,test,predict}" in result.stdout


def test_wandb_logger_goes_offline_without_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    logger = WandbLogger(project="bob-test", save_dir=str(tmp_path))
    assert logger._offline is True


def test_wandb_logger_stays_online_with_key(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = WandbLogger(project="bob-test", save_dir=str(tmp_path))
    assert logger._offline is False
