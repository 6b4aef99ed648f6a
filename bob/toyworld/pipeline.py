"""The four BOB stages on one toy-world dataset, for a chosen set of arms, through the regular CLI and configs."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bob.atomic import atomic_write_json
from bob.cli import main as cli_main
from bob.shipped import PACKAGE_ROOT, configs_dir
from bob.toyworld.dataset import SPLIT_FILE, write_dataset

log = logging.getLogger(__name__)

#: every arm, in table order: real shots only; DataDream (class-only LoRA, class-only prompts); the
#: paper's middle ablation (BOB's context-preserving LoRA, each prompt's context drawn only from its
#: own class's captions); BOB (context-preserving LoRA, contexts drawn from every class's captions).
ALL_ARMS = ("real", "datadream", "within_class", "bob")
#: the demo's arms, the default of `PipelineSettings.arms`.
ARMS = ("real", "datadream", "bob")
#: overall numbers of a synthetic set's quality report kept in the run's summary.
QUALITY_KEYS = ("fid_mean", "fid_median", "fid_pooled", "kid_mean", "diversity_synthetic_mean", "diversity_real_mean")
#: each fine-tuned LoRA's stage 2 (fine-tuning) and stage 3 (generation) configs; BOB's read the caption bank.
_STAGE_CONFIGS = {"datadream": ("t2i_datadream.yaml", "generate_datadream.yaml"), "bob": ("t2i.yaml", "generate.yaml")}
#: synthetic arm -> the LoRA (and its generation config) it generates through, and its overrides of that config.
_GENERATION = {
    "datadream": ("datadream", ()),
    "within_class": ("bob", ("--data.init_args.strategy=within_class",)),
    "bob": ("bob", ()),
}


def synthetic_arms(arms: tuple[str, ...] | list[str]) -> list[str]:
    """The arms among ``arms`` that train on a synthetic set, in their order."""
    return [arm for arm in arms if arm != "real"]


def lora_of(arm: str) -> str:
    """The fine-tuned LoRA a synthetic arm generates through (its folder ``lora/<name>/``)."""
    return _GENERATION[arm][0]


def compute_environment(jobs: int = 1) -> dict[str, Any]:
    """What decides the exact numbers of a CPU run besides the seed: training is bit-reproducible
    only with the same CPU kernels (AVX2, AVX-512...) and thread count; another machine moves a
    demo's test accuracy by a few points (measured: one seed, 27.7% against 29.4% real-only).
    ``jobs`` is how many stages ran side by side, sharing this process's threads equally; a stage
    that ran alone had them all."""
    import platform

    import torch

    return {
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(), "stage_processes": jobs, "machine": platform.machine(),
    }


def default_jobs() -> int:
    """How many stages a run puts side by side: two, where torch has two threads or more to share.

    On the toy world's small batches a second thread speeds a stage up little (on a 2-core
    machine: a LoRA step 1.14x, a generation batch 1.55x), while two one-thread processes run
    almost at full speed each (`docs/toyworld.md`, "The demo")."""
    import torch

    return max(1, min(2, torch.get_num_threads()))


def jobs_argument(value: str) -> int:
    """The ``--jobs`` value of the toy-world commands: a whole number of stages side by side, 1 or more."""
    import argparse

    jobs = int(value)
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {jobs}")
    return jobs


def _stage_in_process(out: str, settings: PipelineSettings, stage: str, name: str, threads: int) -> tuple[Any, dict[str, float]]:
    """One stage of a run in a worker process: ``ToyWorldPipeline.<stage>(name)`` on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    # Bars of stages side by side would overwrite each other on one terminal line.
    pipeline = ToyWorldPipeline(out, settings, progress_bars=False)
    return getattr(pipeline, stage)(name), pipeline.timings


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
        arms: the classifier arms to run (a subset of `ALL_ARMS`, kept in that order); the
            default is the demo's three, ``within_class`` adds the paper's middle ablation.
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
    arms: tuple[str, ...] = ARMS
    prior: str | None = None
    configs: str | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.arms) - set(ALL_ARMS))
        if unknown or not self.arms:
            raise ValueError(f"arms must be a non-empty subset of {ALL_ARMS}, got {tuple(self.arms)}")
        self.arms = tuple(arm for arm in ALL_ARMS if arm in self.arms)

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
    """Runs data -> captions -> LoRA per fine-tuning -> generation, quality and classifier per arm into one folder.

    Every stage is ``bob.cli.main`` on a shipped ``configs/toyworld`` file plus path and size
    overrides, i.e. exactly what a user would type. Stage outputs: ``data/``, ``captions/``,
    ``lora/<lora>/``, ``synthetic/<arm>/``, ``classifier/<arm>/``, logs under ``logs/``. The
    ``within_class`` arm fine-tunes nothing: it generates through BOB's LoRA (`lora_of`).

    Args:
        out: the run's folder.
        settings: sizes, seed, arms and prior of the run.
        jobs: how many independent stages (the LoRAs; the generations; the classifiers) run at
            once, each in its own process with an equal share of this process's torch threads;
            1 runs every stage here, one after another. The stages and their seeds are the same
            either way; only the thread count of each stage, which moves CPU float rounding,
            differs (`compute_environment`).
        progress_bars: show each stage's Lightning progress bars.
    """

    def __init__(self, out: str | Path, settings: PipelineSettings, jobs: int = 1, progress_bars: bool = True):
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.out = Path(out)
        self.settings = settings
        self.jobs = jobs
        self.progress_bars = progress_bars
        self.prior = str(settings.prior or default_prior())
        self.configs = Path(settings.configs or default_configs())
        self.timings: dict[str, float] = {}

    @property
    def data_root(self) -> Path:
        return self.out / "data"

    @property
    def synthetic_arms(self) -> list[str]:
        return synthetic_arms(self.settings.arms)

    @property
    def loras(self) -> list[str]:
        """The LoRAs the run's synthetic arms need, each fine-tuned once."""
        return list(dict.fromkeys(lora_of(arm) for arm in self.synthetic_arms))

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
            *([] if self.progress_bars else ["--trainer.enable_progress_bar=false"]),
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

    def _caption_bank(self, lora: str) -> list[str]:
        """The caption bank override for the stage configs of ``lora`` that read one (BOB's)."""
        return [f"--data.init_args.caption_bank={self.out / 'captions'}"] if lora == "bob" else []

    def lora(self, lora: str) -> None:
        """Fine-tunes one LoRA (``datadream`` or ``bob``) into ``lora/<lora>/``."""
        s = self.settings
        overrides = [
            f"--model.init_args.base_model={self.prior}",
            f"--trainer.max_steps={s.lora_steps}",
            f"--trainer.callbacks.init_args.dirpath={self.out / 'lora' / lora}",
            f"--data.init_args.batch_size={s.lora_batch_size}",
            f"--model.init_args.effective_batch_size={s.lora_batch_size}",
            *self._caption_bank(lora),
        ]
        self._run(f"lora_{lora}", "fit", _STAGE_CONFIGS[lora][0], overrides)

    def generate(self, arm: str) -> None:
        """The arm's synthetic set into ``synthetic/<arm>/``, through its LoRA's generation config.

        A set left by an earlier run of this pipeline is removed first: its LoRA has just been
        fine-tuned again, and the generation stage rightly refuses to mix two recipes in one set.
        """
        s = self.settings
        lora, arm_overrides = _GENERATION[arm]
        folder = self.out / "synthetic" / arm
        if folder.exists():
            shutil.rmtree(folder)
        overrides = [
            f"--model.init_args.base_model={self.prior}",
            f"--model.init_args.lora={self.out / 'lora' / lora}",
            f"--model.init_args.num_inference_steps={s.generation_steps}",
            f"--data.init_args.output_dir={folder}",
            f"--data.init_args.images_per_class={s.images_per_class}",
            f"--data.init_args.generation_seed={s.seed}",
            *self._caption_bank(lora),
            *arm_overrides,
        ]
        self._run(f"generate_{arm}", "predict", _STAGE_CONFIGS[lora][1], overrides)

    def quality(self, arm: str) -> dict[str, Any]:
        """FID/KID/diversity of the arm's synthetic set against the real test images; when the run
        has DataDream's set, every other arm's report also counts the classes where it is closer to
        real than DataDream's."""
        folder = self.out / "synthetic" / arm
        overrides = [
            f"--data.init_args.synthetic={folder}",
            f"--model.init_args.extractor.init_args.weights_file={default_backbone()}",
            f"--model.init_args.feature_cache={self.out / 'quality_cache'}",
        ]
        if arm != "datadream" and "datadream" in self.settings.arms:
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
        checkpoint = cli.trainer.checkpoint_callback
        best = checkpoint.best_model_score
        metrics["val/acc_best"] = None if best is None else float(best)
        # Which epoch was tested: validation accuracy (1/160 steps) can tie across epochs, and
        # the earliest best is kept, so two runs with the same best score may test different weights.
        metrics["best_checkpoint"] = Path(checkpoint.best_model_path).name if checkpoint.best_model_path else None
        return metrics

    def stage_threads(self, side_by_side: int) -> int:
        """The torch threads of each of ``side_by_side`` stages: this process's, shared equally."""
        import torch

        return max(1, torch.get_num_threads() // side_by_side)

    def _stage_processes(self) -> contextlib.AbstractContextManager[Executor | None]:
        if self.jobs == 1:
            return contextlib.nullcontext()
        # Spawned, not forked: a fork of a process whose OpenMP pool has run can hang.
        return ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"))

    def _each(self, stage: str, names: list[str], processes: Executor | None) -> dict[str, Any]:
        """``stage`` for every one of ``names``: here one after another, or ``jobs`` at a time side by side in ``processes``.

        In rounds of ``jobs`` stages that share the threads; a last round of one stage runs here
        with every thread (three generations on two cores: two side by side, then one on both
        cores, rather than the third on one core beside an idle one).
        """
        per_round = self.jobs if processes is not None else 1
        results = {}
        for start in range(0, len(names), per_round):
            group = names[start:start + per_round]
            if len(group) == 1:
                results[group[0]] = getattr(self, stage)(group[0])
                continue
            threads = self.stage_threads(len(group))
            log.warning(
                "toy world [%s]: %s %s side by side (%d processes, %d thread(s) each; progress bars off, "
                "each stage's log in %s)", self.out.name, stage, ", ".join(group), len(group), threads, self.out / "logs",
            )
            started = time.monotonic()
            futures = {
                name: processes.submit(_stage_in_process, str(self.out), self.settings, stage, name, threads)
                for name in group
            }
            for name, future in futures.items():
                results[name], timings = future.result()
                self.timings.update(timings)
            log.warning("toy world [%s]: %s %s done in %.0f s", self.out.name, stage, ", ".join(group), time.monotonic() - started)
        return results

    def run(self) -> dict[str, Any]:
        """All stages; returns the classifier metrics per arm and the stage timings."""
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.data()
        self.captions()
        with self._stage_processes() as processes:
            self._each("lora", self.loras, processes)
            self._each("generate", self.synthetic_arms, processes)
            # Here, one after another: the quality stages share one feature cache, and take seconds.
            quality = self._each("quality", self.synthetic_arms, None)
            results = self._each("classifier", list(self.settings.arms), processes)
        summary = {
            "settings": asdict(self.settings), "prior": self.prior, "classifier": results, "quality": quality,
            "timings": self.timings, "wall_seconds": round(time.monotonic() - started, 1),
            "compute": compute_environment(self.jobs),
        }
        atomic_write_json(self.out / "results.json", summary)
        return summary
