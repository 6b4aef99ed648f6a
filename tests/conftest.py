"""Test-wide settings: never reach a hub or W&B, keep runs small."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models: one intra-op thread is many times faster than two contended ones on small CPUs.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory):
    """A tiny random Stable Diffusion pipeline folder, built once per test session."""
    from tests.tiny_models import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_sdxl_path(tmp_path_factory):
    """A tiny random SD-XL pipeline folder, built once per test session."""
    from tests.tiny_models import save_tiny_stable_diffusion_xl

    return save_tiny_stable_diffusion_xl(tmp_path_factory.mktemp("tiny_sdxl"))


@pytest.fixture(scope="session")
def tiny_sd3_path(tmp_path_factory):
    """A tiny random SD3 pipeline folder, built once per test session."""
    from tests.tiny_models import save_tiny_stable_diffusion_3

    return save_tiny_stable_diffusion_3(tmp_path_factory.mktemp("tiny_sd3"))


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    """A tiny random CLIP model folder (32 px images, with tokenizer), built once per test session."""
    from tests.tiny_models import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(autouse=True)
def finish_wandb_runs():
    """A W&B run left open by one test would silently receive the next test's logs."""
    yield
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
