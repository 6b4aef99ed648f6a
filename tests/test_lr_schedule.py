"""The fine-tuner's LR schedule reproduces the release's effective one, or the paper's text."""

import math

import pytest
import torch

from bob.modules.diffusion.lr_schedule import build_lr_scheduler, cosine_horizon

# (training images, optimizer steps of a 400-epoch run at effective batch 80, LR at the end)
# The steps are those of the authors' 10-GPU runs (batch 8 per GPU) and of bob's effective batch 80.
RELEASE_RUNS = {
    "aircraft_5shot": (500, 400 * math.ceil(math.ceil(500 / 8) / 10), 0.9717e-4),
    "cub_5shot": (1000, 400 * math.ceil(math.ceil(1000 / 8) / 10), 0.9745e-4),
    "pets_5shot": (185, 400 * math.ceil(math.ceil(185 / 8) / 10), 0.9673e-4),
}


def final_lr(schedule: str, warmup: int, horizon: int, steps: int) -> float:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    scheduler = build_lr_scheduler(optimizer, schedule, warmup, horizon)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return scheduler.get_last_lr()[0]


@pytest.mark.parametrize("run", list(RELEASE_RUNS))
def test_release_horizon_keeps_the_lr_near_its_peak(run):
    images, steps, end_lr = RELEASE_RUNS[run]
    horizon = cosine_horizon(steps, max_epochs=400, num_samples=images, effective_batch_size=80, horizon_batch_size=8)
    assert horizon == 400 * math.ceil(images / 8)
    assert final_lr("cosine", 100, horizon, steps) == pytest.approx(end_lr, rel=2e-4)


def test_paper_text_schedule_decays_to_zero_over_the_run():
    horizon = cosine_horizon(2800, max_epochs=400, num_samples=500, effective_batch_size=80, horizon_batch_size=None)
    assert horizon == 2800
    assert final_lr("cosine", 100, horizon, 2800) == pytest.approx(0.0, abs=1e-12)
    # Half-way through the decay the LR is half its peak: about half the release's mean LR.
    assert final_lr("cosine", 100, horizon, 1450) == pytest.approx(0.5e-4, rel=1e-3)


def test_step_sized_runs_scale_their_own_length():
    assert cosine_horizon(300, max_epochs=-1, num_samples=500, effective_batch_size=80, horizon_batch_size=8) == 3000
    with pytest.raises(ValueError, match="at least 1"):
        cosine_horizon(300, max_epochs=10, num_samples=500, effective_batch_size=80, horizon_batch_size=0)


def test_constant_schedule_after_warmup():
    assert final_lr("constant", 100, 0, 50) == pytest.approx(0.5e-4)
    assert final_lr("constant", 100, 0, 500) == pytest.approx(1e-4)
