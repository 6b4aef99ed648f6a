"""Peak memory of one variant: GPU allocations on CUDA, else the resident-set increase of a fresh process."""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import Run, VariantResult

MARKER = "BENCH_MEMORY "
RUN_SCRIPT = Path(__file__).with_name("run.py")


def cuda_peak_tracker(result: VariantResult, function: Callable[[], Run]) -> Callable[[], Run]:
    """``function`` that also records the largest GPU allocation peak of its runs in ``result``."""

    def tracked() -> Run:
        gc.collect()  # the previous variant's models, kept alive by reference cycles until collected
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        run = function()
        peak = torch.cuda.max_memory_allocated() / 2**20
        result.peak_memory_mib = max(peak, result.peak_memory_mib or 0.0)
        result.memory_kind = "GPU, allocated"
        return run

    return tracked


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (``VmRSS``: resident set now, ``VmHWM``: its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_increase(function: Callable[[], Any]) -> dict[str, float]:
    """Run ``function``; its peak resident set above what the process held before it, in MiB.

    The libraries every variant uses are imported first, so their code is not counted against
    the variant that happens to import them.
    """
    import diffusers  # noqa: F401
    import lightning  # noqa: F401
    import peft  # noqa: F401
    import timm  # noqa: F401
    import transformers  # noqa: F401

    import bob.cli  # noqa: F401

    before = status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS, to the current RSS
        function()
        peak = status_kib("VmHWM")
    except OSError:
        function()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; includes earlier peaks
    return {"peak_rss_increase_mib": (peak - before) / 1024, "baseline_rss_mib": before / 1024}


def probe_in_subprocess(argv: list[str], spec: str) -> float | None:
    """Peak RSS increase of variant ``spec`` (``stage:variant``) run once in a fresh interpreter.

    A process of its own, because memory one variant frees stays with the allocator and would
    hide the next variant's allocations.
    """
    command = [sys.executable, str(RUN_SCRIPT), *argv, "--repeats", "1", "--probe", spec]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in completed.stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])["peak_rss_increase_mib"]
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
    print(f"  memory probe {spec} failed (exit {completed.returncode}): " + " | ".join(tail), file=sys.stderr)
    return None
