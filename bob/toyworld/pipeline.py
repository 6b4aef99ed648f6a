"""The four BOB stages on one toy-world dataset, for three arms, through the regular CLI and configs."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bob.atomic import atomic_write_json
from bob.cli import main as cli_main
from bob.shipped import PACKAGE_ROOT, configs_dir
from bob.toyworld.dataset import SPLIT_FILE, write_dataset

log = logging.getLogger(__name__)

ARMS = ("real", "datadream", "bob")
#: overall numbers of a synthetic set's quality report kept in the run's summary.
QUALITY_KEYS = ("fid_mean", "fid_median", "fid_pooled", "kid_mean", "diversity_synthetic_mean", "diversity_real_mean")
#: the arm whose LoRA and synthetic set each generative arm uses (stage 2 and 3 configs).
_STAGE_CONFIGS = {"datadream": ("t2i_datadream.yaml", "generate_datadream.yaml"), "bob": ("t2i.yaml", "generate.yaml")}


def default_prior() -> Path:
    """The shipped toy prior (a diffusers pipeline folder inside the package)."""
    return PACKAGE_ROOT / "toyworld" / "prior"


def default_backbone() -> Path:
    """The shipped classifier backbone weights, pretrained on the broad world."""
    return PACKAGE_ROOT / "toyworld" / "backbone" / "model.safetensors"


def default_configs() -> Path:
    return configs_dir() / "toyworld"


@dataclass
class PipelineSettings:
    """How big one toy-world run is; the defaults are the demo's.

    Args:
        seed: seed of the world (images), the split, every stage's ``seed_everything``.
        num_classes: few-shot classes (up to 16).
        shots: real training images per class.
        bias: share of a class's shots in its home background.
        val_per_class: uniform-context validation images per class.
        test_per_class: uniform-context test images per class.
        lora_steps: optimizer steps of each LoRA fine-tuning.
        lora_batch_size: images per LoRA step.
        images_per_class: synthetic images per class and arm.
        generation_steps: sampler steps per image.
        classifier_epochs: epochs of each classifier run.
        classifier_batch_size: images per classifier step.
        real_repeats: times each real shot appears per classifier epoch.
        prior: the text-to-image model (diffusers folder); None is the shipped toy prior.
        configs: folder of the toy-world stage configs; None is the shipped ``configs/toyworld``.
    """

    seed: int = 0
    num_classes: int = 16
    shots: int = 5
    bias: float = 0.8
    val_per_class: int = 10
    test_per_class: int = 30
    lora_steps: int = 300
    lora_batch_size: int = 16
    images_per_class: int = 30
    generation_steps: int = 20
    classifier_epochs: int = 12
    classifier_batch_size: int = 64
    real_repeats: int = 10
    prior: str | None = None
    configs: str | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def tiny(cls, **overrides: Any) -> PipelineSettings:
        """The smallest run that still goes through every stage (about a minute on a CPU): checks an
        install or a change end to end; its numbers mean nothing."""
        sizes = dict(
            num_classes=4, val_per_class=2, test_per_class=3, lora_steps=2, lora_batch_size=4, images_per_class=2,
            generation_steps=2, classifier_epochs=1, classifier_batch_size=8, real_repeats=1,
        )
        return cls(**{**sizes, **overrides})


class ToyWorldPipeline:
    """Runs data -> captions -> LoRA (x2) -> generation (x2) -> classifier (x3) into one folder.

    Every stage is ``bob.cli.main`` on a shipped ``configs/toyworld`` file plus path and size
    overrides, i.e. exactly what a user would type. Stage outputs: ``data/``, ``captions/``,
    ``lora/<arm>/``, ``synthetic/<arm>/``, ``classifier/<arm>/``, logs under ``logs/``.
    """

    def __init__(self, out: str | Path, settings: PipelineSettings):
        self.out = Path(out)
        self.settings = settings
        self.prior = str(settings.prior or default_prior())
        self.configs = Path(settings.configs or default_configs())
        self.timings: dict[str, float] = {}

    @property
    def data_root(self) -> Path:
        return self.out / "data"

    def _common(self, stage: str) -> list[str]:
        s = self.settings
        logger = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                  "init_args": {"save_dir": str(self.out / "logs"), "name": stage}}
        return [
            f"--seed_everything={s.seed}",
            f"--trainer.logger={json.dumps(logger)}",
            f"--data.init_args.dataset.init_args.root={self.data_root}",
            f"--data.init_args.split_file={self.data_root / SPLIT_FILE}",
            f"--data.init_args.shots={s.shots}",
            f"--data.init_args.seed={s.seed}",
            *s.extra.get(stage, []),
        ]

    def _run(self, stage: str, subcommand: str, config: str, overrides: list[str]) -> Any:
        log.warning("toy world [%s]: %s", self.out.name, stage)
        started = time.monotonic()
        # The demo's own flags are in sys.argv; LightningCLI would take them for the stage's.
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            cli = cli_main([subcommand, "-c", str(self.configs / config), *self._common(stage), *overrides])
        finally:
            sys.argv = argv
        self.timings[stage] = round(time.monotonic() - started, 1)
        return cli

    def data(self) -> None:
        s = self.settings
        started = time.monotonic()
        write_dataset(self.data_root, s.num_classes, s.shots, s.val_per_class, s.test_per_class, s.bias, s.seed)
        self.timings["data"] = round(time.monotonic() - started, 1)

    def captions(self) -> None:
        self._run("captions", "predict", "captions.yaml", [f"--trainer.callbacks.init_args.output_dir={self.out / 'captions'}"])

    def lora(self, arm: str) -> None:
        s = self.settings
        overrides = [
            f"--model.init_args.base_model={self.prior}",
            f"--trainer.max_steps={s.lora_steps}",
            f"--trainer.callbacks.init_args.dirpath={self.out / 'lora' / arm}",
            f"--data.init_args.batch_size={s.lora_batch_size}",
            f"--model.init_args.effective_batch_size={s.lora_batch_size}",
        ]
        if arm == "bob":
            overrides.append(f"--data.init_args.caption_bank={self.out / 'captions'}")
        self._run(f"lora_{arm}", "fit", _STAGE_CONFIGS[arm][0], overrides)

    def generate(self, arm: str) -> None:
        s = self.settings
        overrides = [
            f"--model.init_args.base_model={self.prior}",
            f"--model.init_args.lora={self.out / 'lora' / arm}",
            f"--model.init_args.num_inference_steps={s.generation_steps}",
            f"--data.init_args.output_dir={self.out / 'synthetic' / arm}",
            f"--data.init_args.images_per_class={s.images_per_class}",
            f"--data.init_args.generation_seed={s.seed}",
        ]
        if arm == "bob":
            overrides.append(f"--data.init_args.caption_bank={self.out / 'captions'}")
        self._run(f"generate_{arm}", "predict", _STAGE_CONFIGS[arm][1], overrides)

    def quality(self, arm: str) -> dict[str, Any]:
        """FID/KID/diversity of the arm's synthetic set against the real test images; BOB's
        report also counts the classes where it is closer to real than DataDream's."""
        folder = self.out / "synthetic" / arm
        overrides = [
            f"--data.init_args.synthetic={folder}",
            f"--model.init_args.extractor.init_args.weights_file={default_backbone()}",
            f"--model.init_args.feature_cache={self.out / 'quality_cache'}",
        ]
        if arm == "bob":
            overrides.append("--model.init_args.compare_with=" + json.dumps({"datadream": str(self.out / "synthetic" / "datadream")}))
        cli = self._run(f"quality_{arm}", "test", "quality.yaml", overrides)
        report = json.loads((folder / f"{cli.model.report_name}.json").read_text(encoding="utf-8"))
        summary = {key: report["overall"].get(key) for key in QUALITY_KEYS}
        for name, compared in report["comparisons"].items():
            summary[f"fid_lower_than_{name}"] = f"{compared['fid_lower_in']}/{compared['fid_compared']}"
        return summary

    def classifier(self, arm: str) -> dict[str, float]:
        s = self.settings
        synthetic = "null" if arm == "real" else str(self.out / "synthetic" / arm)
        folder = self.out / "classifier" / arm
        if folder.exists():
            shutil.rmtree(folder)  # a rerun must not report an earlier run's best checkpoint
        cli = self._run(f"classifier_{arm}", "fit", "classifier.yaml", [
            f"--data.init_args.synthetic={synthetic}",
            f"--data.init_args.real_repeats={s.real_repeats}",
            f"--data.init_args.batch_size={s.classifier_batch_size}",
            f"--trainer.max_epochs={s.classifier_epochs}",
            f"--trainer.callbacks.init_args.dirpath={folder}",
            "--model.init_args.backbone.init_args.model_kwargs="
            + json.dumps({"pretrained_cfg_overlay": {"file": str(default_backbone())}}),
        ])
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}
        best = cli.trainer.checkpoint_callback.best_model_score
        metrics["val/acc_best"] = None if best is None else float(best)
        return metrics

    def run(self) -> dict[str, Any]:
        """All stages; returns the classifier metrics per arm and the stage timings."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.data()
        self.captions()
        for arm in ("datadream", "bob"):
            self.lora(arm)
            self.generate(arm)
        quality = {arm: self.quality(arm) for arm in ("datadream", "bob")}
        results = {arm: self.classifier(arm) for arm in ARMS}
        summary = {
            "settings": asdict(self.settings), "prior": self.prior, "classifier": results, "quality": quality,
            "timings": self.timings,
        }
        atomic_write_json(self.out / "results.json", summary)
        return summary
