"""The classifier through the CLI, in-process: fit -> test at the best epoch, checkpoints, bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bob.cli import main
from bob.modules import Classifier
from tests.classifier_fixtures import CLASSES, clip_backbone, timm_backbone, write_classifier_config
from tests.fake_data import make_class_folders

REPO = Path(__file__).resolve().parents[1]
FAST = ["--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2"]


def logged_metrics(trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_fit_then_test_at_the_best_validation_epoch(tmp_path):
    config = write_classifier_config(tmp_path, timm_backbone(), data_args={"real_repeats": 2})
    cli = main(["fit", "-c", str(config), "--trainer.max_epochs=3"])
    trainer = cli.trainer
    checkpoint = trainer.checkpoint_callback
    # The test ran on the checkpoint of the best validation epoch, not on the last weights.
    assert checkpoint.best_model_path and trainer.ckpt_path == checkpoint.best_model_path
    rows = logged_metrics(trainer)
    val = [(float(r["val/acc"]), int(r["epoch"])) for r in rows if r.get("val/acc")]
    assert len(val) == 3
    best_epoch = max(val, key=lambda v: (v[0], -v[1]))[1]
    assert f"best-epoch={best_epoch}" in checkpoint.best_model_path
    tested = [r for r in rows if r.get("test/acc")]
    assert len(tested) == 1 and 0 <= float(tested[0]["test/acc_per_class"]) <= 1
    assert any(r.get("train/loss_real") for r in rows) and any(r.get("train/loss_synthetic") for r in rows)
    # The run's folder holds its config, its manifest and its checkpoints.
    run = Path(trainer.logger.log_dir)
    assert Path(checkpoint.best_model_path).parent == run / "checkpoints" and (run / "config.yaml").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["tested_checkpoint"] == checkpoint.best_model_path
    assert manifest["class_names"] == CLASSES and manifest["preprocessing"]["image_size"] == 32
    assert manifest["test"]["test/acc"] == pytest.approx(float(tested[0]["test/acc"]))
    assert manifest["inputs"]["synthetic_manifest"]["sha256"] and manifest["inputs"]["split_file"]["sha256"]
    assert manifest["training_pool"]["data/real_repeats"] == 2 and manifest["training_pool"]["data/synthetic_images"] == 12
    assert manifest["backbone"] == {**manifest["backbone"], "class": "TimmBackbone", "model_name": "test_resnet"}
    # Full fine-tuning: the checkpoint holds every weight plus batch-norm statistics.
    state = torch.load(checkpoint.best_model_path, weights_only=False)["state_dict"]
    assert set(state) == set(cli.model.state_dict())
    assert any(k.endswith("running_mean") for k in state)


def test_clip_lora_checkpoint_holds_adapters_only_and_reloads(tmp_path, tiny_clip_path):
    config = write_classifier_config(
        tmp_path, clip_backbone(tiny_clip_path, lora_rank=4), data_args={"real_repeats": 1},
        model_args={"test_after_fit": False},
    )
    fitted = main(["fit", "-c", str(config), "--trainer.max_epochs=1", *FAST])
    best = fitted.trainer.checkpoint_callback.best_model_path
    state = torch.load(best, weights_only=False)["state_dict"]
    assert state and all("lora_" in key for key in state)
    assert not [r for r in logged_metrics(fitted.trainer) if r.get("test/acc")]  # test_after_fit: false

    tested = main(["test", "-c", str(config), f"--ckpt_path={best}", *FAST])
    reloaded = tested.model.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(reloaded[key], value)
    assert "test/acc" in tested.trainer.callback_metrics
    # The checkpoint alone: the adapters on the CLIP weights its backbone spec names.
    alone = Classifier.load_from_checkpoint(best).state_dict()
    for key, value in state.items():
        torch.testing.assert_close(alone[key], value)


def test_long_tail_split_reports_many_medium_few(tmp_path):
    make_class_folders(tmp_path / "data", CLASSES, train_per_class=14, test_per_class=3)  # 13, 4, 1 shots
    config = write_classifier_config(
        tmp_path, timm_backbone(), synthetic=False,
        data_args={"shots": None, "imbalance_factor": 10, "longtail_groups": [8, 3], "val_per_class": 1},
    )
    cli = main(["fit", "-c", str(config), "--trainer.max_epochs=1"])
    assert set(cli.datamodule.split.class_groups.values()) == {"many", "medium", "few"}
    metrics = cli.trainer.callback_metrics
    for name in ("test/acc", "test/acc_per_class", "test/acc_many", "test/acc_medium", "test/acc_few"):
        assert name in metrics, name
    assert cli.datamodule.real_repeats == 1


def test_lambda_outside_unit_interval_fails_before_training(tmp_path):
    config = write_classifier_config(tmp_path, timm_backbone(), synthetic=False)
    # jsonargparse wraps the model's BobInputError (a ValueError) and keeps its message.
    with pytest.raises(ValueError, match=r"real_weight \(λ.*must be in \[0, 1\], got 1.5"):
        main(["fit", "-c", str(config), "--model.init_args.real_weight=1.5"])


def test_backbone_name_timm_does_not_know_lists_close_names(tmp_path):
    config = write_classifier_config(tmp_path, timm_backbone("resnet5O"), synthetic=False)
    with pytest.raises(ValueError, match=r"timm has no model 'resnet5O'; close names: \['resnet50'"):
        main(["fit", "-c", str(config)])


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    config = write_classifier_config(tmp_path, timm_backbone(), data_args={"real_repeats": 2})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "main.py", "fit", "-c", str(config), "--trainer.devices=2", "--trainer.strategy=ddp",
         "--trainer.max_epochs=2", "--trainer.limit_train_batches=2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = next((tmp_path / "run" / "lightning_logs").glob("version_*")) / "metrics.csv"
    rows = list(csv.DictReader(metrics.open()))
    assert [r for r in rows if r.get("test/acc")], "the best-epoch test did not run under DDP"
    assert len({r["epoch"] for r in rows if r.get("val/acc")}) == 2
    assert "distributed_backend=gloo" in completed.stderr + completed.stdout
