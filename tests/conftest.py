"""Test-wide settings: never reach a hub or W&B, keep runs small."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory):
    """A tiny random Stable Diffusion pipeline folder, built once per test session."""
    from tests.tiny_models import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd"))
