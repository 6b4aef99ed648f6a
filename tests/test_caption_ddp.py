"""The caption stage under DDP on 2 CPU processes: every image captioned by exactly one rank."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from bob.data.caption_bank import CaptionBank
from tests.caption_fixtures import save_never_silent_qwen2_5_vl, write_caption_config
from tests.fake_data import make_class_folders

REPO = Path(__file__).resolve().parents[1]


class SampleIdLog(Callback):
    """Appends the sample ids each rank predicts to ``<folder>/rank<N>.txt``."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a", encoding="utf-8") as file:
            file.writelines(f"{sample_id}\n" for sample_id in batch["sample_id"])


@pytest.mark.slow
def test_two_processes_caption_each_image_once(tmp_path):
    vlm = save_never_silent_qwen2_5_vl(tmp_path / "vlm")
    root = make_class_folders(tmp_path / "data", ["alpha", "beta", "gamma"], train_per_class=4, test_per_class=1)
    log_dir = tmp_path / "ranks"
    log_callback = (
        "    - class_path: tests.test_caption_ddp.SampleIdLog\n"
        f"      init_args: {{folder: \"{log_dir}\"}}"
    )
    # 9 images over 2 ranks: the shards are uneven, which a padding sampler would hide by duplicating.
    config = write_caption_config(tmp_path / "captions.yaml", vlm, root, str(tmp_path / "bank"), extra_callbacks=log_callback)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "main.py", "predict", "-c", str(config),
         "--trainer.devices=2", "--trainer.strategy=ddp"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    per_rank = {p.name: p.read_text().split() for p in sorted(log_dir.glob("rank*.txt"))}
    assert sorted(per_rank) == ["rank0.txt", "rank1.txt"]
    counts = Counter(sample_id for ids in per_rank.values() for sample_id in ids)
    bank = CaptionBank.load(tmp_path / "bank")
    assert len(bank) == 9 and bank.complete
    assert set(counts) == set(bank.records) and set(counts.values()) == {1}
