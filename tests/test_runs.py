"""One folder per run (config, manifest, checkpoints, W&B files), the full config in W&B, and the stage artifacts."""

from pathlib import Path
from typing import Any

import pytest
import wandb
import yaml

import bob
from bob.artifacts import build_wandb_artifact, link_stage_artifacts, stage_artifact
from bob.cli import main
from bob.loggers import WandbLogger
from tests import t2i_fixtures
from tests.classifier_fixtures import timm_backbone, write_classifier_config
from tests.generation_world import generation_config


def wandb_logger(save_dir: Path, project: str = "bob-test") -> dict[str, Any]:
    return {"class_path": "bob.loggers.WandbLogger", "init_args": {"project": project, "save_dir": str(save_dir)}}


def saved_config(run: Path) -> dict[str, Any]:
    text = (run / "config.yaml").read_text()
    assert text.startswith(f"# written by bob {bob.__version__}")
    return yaml.safe_load(text)


class ArtifactRecorder:
    """Stands in for an online W&B run: records what a stage used and logged."""

    def __init__(self):
        self.used: list[Any] = []
        self.logged: list[Any] = []

    def use_artifact(self, artifact: Any) -> None:
        self.used.append(artifact)

    def log_artifact(self, artifact: Any) -> None:
        self.logged.append(artifact)


def test_the_logger_names_its_run_folder_before_wandb_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    first, second = WandbLogger(project="p", save_dir=str(tmp_path)), WandbLogger(project="p", save_dir=str(tmp_path))
    assert first.version != second.version and len(first.version) == 8
    assert first._wandb_init["dir"] == str(tmp_path / "p" / first.version)
    assert WandbLogger(project="p", save_dir=str(tmp_path), id="resume01").version == "resume01"
    monkeypatch.setenv("WANDB_RUN_ID", "fromenv1")
    assert WandbLogger(project="p", save_dir=str(tmp_path)).version == "fromenv1"


def test_lora_then_generation_leave_two_run_folders_linked_by_artifacts(tmp_path, tiny_sd_path, monkeypatch):
    recorder = ArtifactRecorder()
    monkeypatch.setattr("bob.artifacts.online_wandb_run", lambda trainer: recorder)
    runs = tmp_path / "runs"
    world = t2i_fixtures.make_world(tmp_path)
    fit = t2i_fixtures.fit_config(tmp_path, world, tiny_sd_path, trainer={"logger": wandb_logger(runs)})
    t2i = main(["fit", "-c", str(fit)])
    wandb.finish()  # each stage is its own process in real use
    generate = generation_config(
        tmp_path / "generate.yaml", world, tiny_sd_path, tmp_path / "synthetic", lora=tmp_path / "lora",
        trainer={"logger": wandb_logger(runs)}, data={"images_per_class": 1},
    )
    generation = main(["predict", "-c", str(generate)])

    folders = sorted(p for p in (runs / "bob-test").iterdir() if p.is_dir())
    assert {p.name for p in folders} == {t2i.trainer.logger.version, generation.trainer.logger.version}
    for folder in folders:
        assert (folder / "wandb").is_dir()  # W&B's own files live in the run's folder too
    lora_run = saved_config(runs / "bob-test" / t2i.trainer.logger.version)
    generation_run = saved_config(runs / "bob-test" / generation.trainer.logger.version)
    # Complete: every init argument, defaults included.
    assert lora_run["model"]["class_path"].endswith("LoRAFineTuner")
    assert lora_run["model"]["init_args"]["unet_rank"] == 4 and "warmup_steps" in lora_run["model"]["init_args"]
    assert generation_run["model"]["class_path"].endswith("SyntheticImageGenerator")
    assert generation_run["model"]["init_args"]["guidance_scale"] == 2.0
    assert generation_run["data"]["init_args"]["images_per_class"] == 1
    # The W&B run's config holds the same full config.
    config = dict(generation.trainer.logger.experiment.config)
    assert config["bob_version"] == bob.__version__
    assert config["model"]["init_args"]["num_inference_steps"] == 3

    # caption bank -> LoRA -> synthetic set: the version one stage logged is the one the next used.
    used = {a.type: a for a in recorder.used}
    logged = {a.type: a for a in recorder.logged}
    assert set(logged) == {"lora", "synthetic_set"} and set(used) == {"caption_bank", "lora"}
    assert used["lora"].name == logged["lora"].name and used["lora"].digest == logged["lora"].digest
    assert set(logged["synthetic_set"].manifest.entries) == {"manifest.json", "manifest.jsonl"}
    assert logged["synthetic_set"].metadata["folder"] == (tmp_path / "synthetic").resolve().as_uri()


def test_two_classifier_runs_keep_their_own_config_manifest_and_checkpoint(tmp_path):
    config = write_classifier_config(tmp_path, timm_backbone(), model_args={"test_after_fit": True})
    raw = yaml.safe_load(config.read_text())
    raw["trainer"]["logger"] = wandb_logger(tmp_path / "runs", "bob-sweep")
    config.write_text(yaml.safe_dump(raw))
    versions, recorded = [], []
    for lr in (1e-3, 3e-3):
        cli = main(["fit", "-c", str(config), "--trainer.max_epochs=1", f"--model.init_args.optimizer.init_args.lr={lr}"])
        versions.append(cli.trainer.logger.version)
        recorded.append(dict(cli.trainer.logger.experiment.config))
        wandb.finish()
    assert versions[0] != versions[1]
    for version, lr, wandb_config in zip(versions, (1e-3, 3e-3), recorded, strict=True):
        run = tmp_path / "runs" / "bob-sweep" / version
        assert saved_config(run)["model"]["init_args"]["optimizer"]["init_args"]["lr"] == lr
        assert (run / "manifest.json").is_file() and list((run / "checkpoints").glob("best-*.ckpt"))
        # What tells sweep runs apart reaches W&B: the backbone, the learning rate, the weight decay.
        model = wandb_config["model"]["init_args"]
        assert model["optimizer"]["init_args"]["lr"] == lr and model["optimizer"]["init_args"]["weight_decay"] == 1e-4
        assert model["backbone"]["init_args"]["model_name"] == "test_resnet"


def test_stage_artifact_references_the_folder_manifests_offline(tmp_path):
    folder = tmp_path / "lora" / "bob_5shot_seed0"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"weights_sha256": "abc"}')
    artifact = build_wandb_artifact(stage_artifact("lora", folder))
    assert artifact.name == "lora-bob_5shot_seed0" and artifact.type == "lora"
    entry = artifact.manifest.entries["manifest.json"]
    assert entry.ref == (folder / "manifest.json").resolve().as_uri() and entry.digest  # checksummed reference
    assert artifact.metadata["sha256"]["manifest.json"] and artifact.metadata["folder"] == folder.resolve().as_uri()
    # The same content in another folder of the same name is the same version (other machine, other path).
    copy = tmp_path / "elsewhere" / "bob_5shot_seed0"
    copy.mkdir(parents=True)
    (copy / "manifest.json").write_text('{"weights_sha256": "abc"}')
    assert build_wandb_artifact(stage_artifact("lora", copy)).digest == artifact.digest


def test_offline_runs_log_no_artifacts_and_do_not_fail(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = write_classifier_config(tmp_path, timm_backbone(), model_args={"test_after_fit": True})
    raw = yaml.safe_load(config.read_text())
    raw["trainer"]["logger"] = wandb_logger(tmp_path / "runs")
    config.write_text(yaml.safe_dump(raw))
    cli = main(["fit", "-c", str(config), "--trainer.max_epochs=1"])
    assert not link_stage_artifacts(cli.trainer, [stage_artifact("synthetic_set", tmp_path / "synthetic")])
    assert (tmp_path / "runs" / "bob-test" / cli.trainer.logger.version / "manifest.json").is_file()


def test_the_run_folder_exists_when_wandb_starts_so_it_finds_the_git_commit(tmp_path, monkeypatch):
    seen = {}

    def init(**kwargs):
        seen["dir_exists"] = Path(kwargs["dir"]).is_dir()
        raise RuntimeError("stop here")

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(project="p", save_dir=str(tmp_path / "runs"))
    with pytest.raises(RuntimeError, match="stop here"):
        _ = logger.experiment
    assert seen["dir_exists"] and Path(logger._wandb_init["dir"]).parent.parent == tmp_path / "runs"
