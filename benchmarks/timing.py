"""Throughput clocks for both code paths, alternating repetitions and medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import Callback


@dataclass
class Run:
    """One timed repetition of one variant: items per wall-clock second and per second of CPU time.

    CPU time (all threads of this process) does not grow while other processes hold the cores,
    so on a shared CPU its ratios are steadier; on a GPU only wall-clock time means anything.
    """

    throughput: float
    items: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_throughput(self) -> float:
        return self.items / self.cpu_seconds


class Clock:
    """Timestamps after each unit of work (a training step, a generated batch) and how many items it held.

    On CUDA every mark waits for the device, so a mark is when the work really finished.
    """

    def __init__(self, device: str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.marks: list[tuple[float, float, int]] = []

    def mark(self, items: int) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), time.process_time(), items))

    @property
    def items(self) -> int:
        return sum(items for _, _, items in self.marks)

    def run(self, warmup: int) -> Run:
        """Items per second after the first ``warmup`` marks (at least one).

        The warm-up marks absorb one-off work (first-call allocations, kernel selection,
        cache filling); what follows is the steady state a long run lives in.
        """
        warmup = max(1, warmup)
        if len(self.marks) <= warmup:
            raise RuntimeError(f"only {len(self.marks)} marks for {warmup} warm-up marks; run more steps")
        start, end = self.marks[warmup - 1], self.marks[-1]
        items = sum(n for _, _, n in self.marks[warmup:])
        seconds = end[0] - start[0]
        return Run(items / seconds, items, seconds, end[1] - start[1])


def batch_items(batch: Any) -> int:
    for key in ("label", "sample_id", "image"):
        if isinstance(batch, dict) and key in batch:
            return len(batch[key])
    raise TypeError(f"cannot count the items of a {type(batch).__name__} batch")


class ThroughputClock(Callback):
    """Marks the `Clock` after every training or predict batch of a Lightning run.

    The end of ``predict`` is marked too (no items), so writers that finish in the background
    are waited for, as the reference loops wait for their own file writes.
    """

    def __init__(self):
        self.clock = Clock()

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.clock = Clock(str(trainer.strategy.root_device))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.clock.mark(batch_items(batch))

    def on_predict_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.clock.mark(batch_items(batch))

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self.clock.mark(0)


@dataclass
class VariantResult:
    """All repetitions of one variant, and its peak memory. ``compared``: False for a variant on
    another model than the reference's, which has no ratio to it."""

    name: str
    description: str
    reference: bool
    runs: list[Run] = field(default_factory=list)
    peak_memory_mib: float | None = None
    memory_kind: str | None = None
    compared: bool = True

    @property
    def median(self) -> float:
        return statistics.median(r.throughput for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        values = [r.throughput for r in self.runs]
        return {
            "name": self.name,
            "description": self.description,
            "reference": self.reference,
            "median": self.median,
            "min": min(values),
            "max": max(values),
            "median_cpu_time": statistics.median(r.cpu_throughput for r in self.runs),
            "runs": [{**vars(r), "cpu_throughput": r.cpu_throughput} for r in self.runs],
            "peak_memory_mib": self.peak_memory_mib,
            "memory_kind": self.memory_kind,
            "compared": self.compared,
        }


def paired_ratio(variant: VariantResult, reference: VariantResult, cpu_time: bool = False) -> float:
    """Median over repetitions of variant / reference throughput, each pair measured back to back.

    Pairing cancels load that drifts between repetitions better than a ratio of medians.
    """
    pairs = zip(variant.runs, reference.runs, strict=True)
    if cpu_time:
        return statistics.median(v.cpu_throughput / r.cpu_throughput for v, r in pairs)
    return statistics.median(v.throughput / r.throughput for v, r in pairs)


def alternate(
    variants: dict[str, Callable[[], Run]], repeats: int,
    on_run: Callable[[str, Run], None] | None = None,
) -> dict[str, list[Run]]:
    """Run every variant ``repeats`` times, interleaved, rotating the order each repetition.

    Rotation keeps a variant from always following the same neighbour (whose leftover
    allocations or warm caches could favour or slow it).
    """
    names = list(variants)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for repetition in range(repeats):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            run = variants[name]()
            runs[name].append(run)
            if on_run is not None:
                on_run(name, run)
    return runs
