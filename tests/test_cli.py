import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import bob
from bob.callbacks import StepProgressBar
from bob.cli import main, run
from bob.console import error_message
from bob.data.errors import CorruptImageError, DatasetLayoutError
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
    out = capsys.readouterr().out
    assert "--trainer.max_epochs" in out
    # bob's modules build their own optimizers; LightningCLI's would train no parameters.
    assert not re.search(r"--(optimizer|lr_scheduler)\b", out)


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


def config_without_data(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    shutil.rmtree(tmp_path / "data")
    return config


def test_input_error_is_one_line_from_the_command_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BOB_DEBUG", None)
    command = [sys.executable, "main.py", "fit", "-c", str(config_without_data(tmp_path))]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: ClassFolders: dataset root") and errors[0].endswith("`root`.")


def test_debug_switch_keeps_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["main.py", "fit", "-c", str(config_without_data(tmp_path))])
    monkeypatch.delenv("BOB_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 2
    monkeypatch.setenv("BOB_DEBUG", "1")
    with pytest.raises(DatasetLayoutError):
        run()


def test_error_lines_under_ddp_and_from_dataloader_workers(monkeypatch, capsys):
    from lightning.pytorch.utilities import rank_zero_only
    from torch._utils import ExceptionWrapper

    from bob.console import input_errors_as_one_line

    try:
        raise CorruptImageError("cannot decode image a.jpg (truncated)")
    except CorruptImageError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(CorruptImageError) as worker_error:
        wrapped.reraise()
    assert "Original Traceback" in str(worker_error.value)
    assert error_message(worker_error.value) == "cannot decode image a.jpg (truncated)"

    monkeypatch.delenv("BOB_DEBUG", raising=False)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with pytest.raises(SystemExit), input_errors_as_one_line():
        raise DatasetLayoutError("no images under data/x")
    assert capsys.readouterr().err == "error (rank 1): no images under data/x\n"


def test_configs_are_found_inside_the_package_from_any_folder(tmp_path, monkeypatch):
    from bob.shipped import configs_dir, with_shipped_configs

    monkeypatch.chdir(tmp_path)
    args = with_shipped_configs(["fit", "-c", "configs/t2i.yaml", "--config=configs/datasets/cub.yaml", "-c", "mine.yaml"])
    assert args == ["fit", "-c", str(configs_dir() / "t2i.yaml"), f"--config={configs_dir() / 'datasets' / 'cub.yaml'}",
                    "-c", "mine.yaml"]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "t2i.yaml").write_text("{}")
    assert with_shipped_configs(["-c", "configs/t2i.yaml"]) == ["-c", "configs/t2i.yaml"]  # a local file wins
    assert (configs_dir() / "t2i.yaml").read_bytes() == (REPO / "configs" / "t2i.yaml").read_bytes()


def test_cli_shows_steps_in_a_run_sized_in_steps(tmp_path):
    config = write_config(tmp_path)
    cli = main(["fit", "-c", str(config), "--trainer.enable_progress_bar=true", "--trainer.max_epochs=null", "--trainer.max_steps=5"])
    bar = cli.trainer.progress_bar_callback
    assert isinstance(bar, StepProgressBar)
    assert bar.train_progress_bar.total == 5 and bar.train_progress_bar.n == 5
    assert bar.train_progress_bar.desc.startswith("Epoch ") and "/" not in bar.train_progress_bar.desc
    named = {"class_path": "lightning.pytorch.callbacks.TQDMProgressBar", "init_args": {"refresh_rate": 5}}
    cli = main(["-c", str(config), "--trainer.enable_progress_bar=true", f"--trainer.callbacks={json.dumps([named])}"], run=False)
    assert type(cli.trainer.progress_bar_callback).__name__ == "TQDMProgressBar"  # a bar the config names is kept


def test_notices_without_content_are_silenced(caplog):
    import logging
    import warnings

    from lightning.pytorch.utilities import rank_zero_info
    from lightning.pytorch.utilities._pytree import _tree_flatten

    from bob.loggers import silence_empty_notices

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_empty_notices()
        _tree_flatten({"a": [1, 2]})
        warnings.warn("a FutureWarning bob's users should see", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a FutureWarning bob's users should see"]
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        rank_zero_info("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]")
        rank_zero_info("GPU available: False, used: False")
    assert [record.getMessage() for record in caplog.records] == ["GPU available: False, used: False"]
    assert "anonymous" not in WandbLogger(project="bob-test", offline=True)._wandb_init


def test_an_in_process_run_lets_the_previous_runs_model_go(tmp_path):
    import gc
    import weakref

    from bob.cli import release_finished_runs

    config = write_config(tmp_path)
    cli = main(["-c", str(config)], run=False)
    model = weakref.ref(cli.model)
    del cli
    gc.collect()
    assert model() is not None  # jsonargparse's caches hold the finished CLI...
    release_finished_runs()  # ...until the next main() releases them
    gc.collect()
    assert model() is None
