"""Runs a grid: each point is a short ``fit`` in its own process; the best point becomes the final run."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bob.atomic import atomic_write_json, atomic_write_text
from bob.sweep.grid import expand_grid, format_value, point_label, point_overrides

log = logging.getLogger(__name__)


@dataclass
class PointResult:
    index: int
    point: dict[str, Any]
    score: float | None
    status: str  # "done", "failed (exit N)" or "no score"

    @property
    def label(self) -> str:
        return point_label(self.point)


class Sweep:
    """A hyper-parameter grid over the CLI, run point by point, resumable.

    Every point runs ``fit`` for ``sweep_epochs`` epochs in a fresh process (clean W&B run,
    clean DDP, memory given back) with ``test_after_fit`` off, so the test set plays no part in
    the choice. Its best validation score (the ``ModelCheckpoint`` monitor, ``val/acc`` in the
    shipped configs) goes to ``<out_dir>/points/<index>/result.json``; points that have one
    are skipped when the sweep is run again. The table of all points is written to
    ``results.tsv`` and the final run's command, with the best values and ``final_epochs``, to
    ``final_command.txt``.

    Args:
        cli_args: the ``fit`` arguments every run shares, e.g. ``-c configs/classifier.yaml -c configs/datasets/aircraft.yaml``.
        grid: CLI option -> values.
        out_dir: folder of the sweep's outputs.
        sweep_epochs: epochs of each grid point (the paper: 10).
        final_epochs: epochs of the final run (the paper: 100).
        mode: whether a higher (``max``) or lower (``min``) monitored score is better.
    """

    def __init__(
        self,
        cli_args: list[str],
        grid: dict[str, list[Any]],
        out_dir: str | Path,
        sweep_epochs: int = 10,
        final_epochs: int = 100,
        mode: Literal["max", "min"] = "max",
    ):
        self.cli_args = list(cli_args)
        self.points = expand_grid(grid)
        self.out_dir = Path(out_dir)
        self.sweep_epochs = sweep_epochs
        self.final_epochs = final_epochs
        self.mode = mode

    def point_dir(self, index: int) -> Path:
        return self.out_dir / "points" / f"{index:03d}"

    def point_args(self, index: int) -> list[str]:
        return [
            "fit", *self.cli_args, *point_overrides(self.points[index]),
            f"--trainer.max_epochs={self.sweep_epochs}",
            "--model.init_args.test_after_fit=false",
            f"--trainer.default_root_dir={self.point_dir(index)}",
        ]

    def point_command(self, index: int) -> list[str]:
        result = self.point_dir(index) / "result.json"
        return [sys.executable, "-m", "bob.sweep.point", str(result), *self.point_args(index)]

    def _read_result(self, index: int) -> PointResult | None:
        path = self.point_dir(index) / "result.json"
        if not path.is_file():
            return None
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("args") != self.point_args(index):
            return None  # made with other shared arguments: run it again
        score = saved.get("score")
        return PointResult(index, self.points[index], score, "done" if score is not None else "no score")

    def _environment(self, name: str, job_type: str) -> dict[str, str]:
        # W&B reads these when the logger does not set them: runs of one sweep are grouped and named.
        return {**os.environ, "WANDB_RUN_GROUP": self.out_dir.name, "WANDB_NAME": name, "WANDB_JOB_TYPE": job_type}

    def run_point(self, index: int) -> PointResult:
        done = self._read_result(index)
        if done is not None:
            log.info("point %d/%d (%s): already done, score %s", index + 1, len(self.points), done.label, done.score)
            return done
        label = point_label(self.points[index])
        log.info("point %d/%d: %s", index + 1, len(self.points), label)
        self.point_dir(index).mkdir(parents=True, exist_ok=True)
        completed = subprocess.run(self.point_command(index), env=self._environment(f"{index:03d} {label}", "sweep"))
        if completed.returncode != 0:
            log.error("point %d (%s) failed with exit code %d", index, label, completed.returncode)
            return PointResult(index, self.points[index], None, f"failed (exit {completed.returncode})")
        return self._read_result(index) or PointResult(index, self.points[index], None, "no score")

    def run(self) -> list[PointResult]:
        results = [self.run_point(index) for index in range(len(self.points))]
        self.write_table(results)
        best = self.best(results)
        if best is not None:
            atomic_write_text(self.out_dir / "final_command.txt", shlex.join(self.final_command(best)) + "\n")
        return results

    def best(self, results: list[PointResult]) -> PointResult | None:
        scored = [r for r in results if r.score is not None]
        if not scored:
            return None
        return (max if self.mode == "max" else min)(scored, key=lambda r: r.score)

    def write_table(self, results: list[PointResult]) -> Path:
        keys = list(self.points[0]) if self.points else []
        ordered = sorted(results, key=lambda r: (r.score is None, -(r.score or 0) if self.mode == "max" else (r.score or 0)))
        lines = ["\t".join(["point", "score", "status", *keys])]
        for r in ordered:
            score = "" if r.score is None else f"{r.score:.4f}"
            lines.append("\t".join([f"{r.index:03d}", score, r.status, *(format_value(r.point[k]) for k in keys)]))
        atomic_write_json(self.out_dir / "results.json", [asdict(r) for r in ordered])
        return atomic_write_text(self.out_dir / "results.tsv", "\n".join(lines) + "\n")

    def final_command(self, best: PointResult) -> list[str]:
        return [
            sys.executable, "-m", "bob", "fit", *self.cli_args, *point_overrides(best.point),
            f"--trainer.max_epochs={self.final_epochs}",
        ]

    def launch_final(self, best: PointResult) -> int:
        log.info("final run (%d epochs): %s", self.final_epochs, best.label)
        return subprocess.run(self.final_command(best), env=self._environment(f"final {best.label}", "final")).returncode
