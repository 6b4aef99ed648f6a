import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.t2i_fixtures import fit_config, make_world, manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_the_effective_batch(tmp_path, tiny_sd_path):
    grid = {"class_path": "SampleGrid", "init_args": {"every_n_steps": 1, "num_classes": 2, "num_contexts": 2,
                                                      "num_inference_steps": 1}}
    export = {"class_path": "LoRAExport", "init_args": {"dirpath": str(tmp_path / "lora")}}
    config = fit_config(
        tmp_path, make_world(tmp_path), tiny_sd_path,
        model={"effective_batch_size": 6},
        data={"batch_size": 1},
        trainer={"max_epochs": 2, "max_steps": -1, "strategy": "ddp", "devices": 2},
        callbacks=[export, grid],
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, "main.py", "fit", "-c", str(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    training = manifest(tmp_path / "lora")["training"]
    # 6 images over 2 processes, 1 per batch: 3 micro-batches per process = 1 step of 6 images per epoch,
    # the same optimizer steps a single process takes with 6 accumulation steps.
    assert training["world_size"] == 2 and training["accumulate_grad_batches"] == 3
    assert training["global_step"] == 2
    assert "effective batch 6 = 1 per device x 2 device(s) x 3 accumulation step(s)" in result.stderr + result.stdout
    assert len(list((tmp_path / "run" / "samples").glob("step_*.png"))) == 3  # start, steps 1 and 2
