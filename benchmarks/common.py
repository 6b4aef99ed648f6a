"""Benchmark settings, and running one of bob's stages in-process through its CLI, as a user would."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.timing import Run, ThroughputClock
from benchmarks.world import World

CLOCK = {"class_path": "benchmarks.timing.ThroughputClock"}


@dataclass(frozen=True)
class Settings:
    """What every variant of a stage shares.

    Args:
        device: ``cpu`` or ``cuda``.
        steps: timed training steps per repetition (after one warm-up epoch).
        lora_batch: LoRA fine-tuning batch (the paper: 8 per GPU).
        classifier_batch: classifier batch (the paper: 64).
        generation_steps: sampler steps per image (the paper: 50).
        generation_batch: images per batch on bob's generation path (the release: 1).
        guidance: classifier-free guidance scale (the paper: 2.0).
        caption_batch: images per batch on bob's captioning path.
        caption_tokens: tokens generated per answer (every answer is this long).
        num_workers: dataloader worker processes, the same on both paths.
        compile: also time bob's LoRA step with ``torch.compile``.
        reference_images: images the one-per-call reference loops make (None: all); their speed
            per image is the same after the first, and at batch 1 on real models they are slow.
        precision: trainer precision of bob's "defaults" variants; None: bf16 mixed precision on
            GPUs that have it (as bob's GPU configs), 32-true elsewhere (as configs/trainer/cpu.yaml).
    """

    device: str = "cpu"
    steps: int = 8
    lora_batch: int = 4
    classifier_batch: int = 16
    generation_steps: int = 20
    generation_batch: int = 8
    guidance: float = 2.0
    caption_batch: int = 4
    caption_tokens: int = 8
    num_workers: int = 0
    compile: bool = False
    reference_images: int | None = None
    precision: str | None = None

    @property
    def accelerator(self) -> str:
        return "gpu" if self.device == "cuda" else "cpu"

    @property
    def default_precision(self) -> str:
        """What bob's configs use on this device: bf16 mixed precision on GPUs that have it, else fp32."""
        if self.precision is not None:
            return self.precision
        if self.device == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "32-true"


def trainer_section(settings: Settings, run_dir: Path, **extra: Any) -> dict[str, Any]:
    """A quiet single-device trainer with the throughput clock; no logger, checkpoints or progress bar."""
    return {
        "accelerator": settings.accelerator,
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(run_dir),
        "callbacks": [CLOCK],
        **extra,
    }


def dataset_section(world: World) -> dict[str, Any]:
    return {"class_path": "ClassFolders", "init_args": {"root": str(world.data), "descriptor": "aircraft", "name": "bench"}}


def run_stage(subcommand: str, config: dict[str, Any], run_dir: Path) -> ThroughputClock:
    """Run ``python main.py <subcommand> -c <config>`` in this process; return its throughput clock."""
    from bob.cli import main

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    cli = main([subcommand, "-c", str(path)])
    clocks = [c for c in cli.trainer.callbacks if isinstance(c, ThroughputClock)]
    if len(clocks) != 1:
        raise RuntimeError(f"expected one ThroughputClock in the trainer's callbacks, found {len(clocks)}")
    return clocks[0]


def run_fresh_predict(config: dict[str, Any], run_dir: Path, expected: int, what: str) -> Run:
    """One timed ``predict`` of a resumable stage into ``run_dir``, which is then deleted.

    A resumable stage skips what its folder already holds, so every timed repeat needs a fresh
    folder, and the item count proves the stage did all the work (``what`` names it in the error).
    """
    clock = run_stage("predict", config, run_dir).clock
    if clock.items != expected:
        raise RuntimeError(f"bob's {what} stage processed {clock.items} images, expected {expected}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return clock.run(1)


def quiet_logs() -> None:
    """Keep the benchmark's output to its own lines: bob and Lightning log only warnings."""
    bob_logger = logging.getLogger("bob")
    if not bob_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s bob: %(message)s"))
        bob_logger.addHandler(handler)
        bob_logger.propagate = False
    bob_logger.setLevel(logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()
