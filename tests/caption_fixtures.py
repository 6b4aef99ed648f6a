"""Caption-stage test fixtures: a tiny random-weight Qwen2.5-VL saved like a hub copy, and a stage config."""

from __future__ import annotations

from pathlib import Path

from benchmarks.architectures import TINY, save_captioner


def save_never_silent_qwen2_5_vl(folder: str | Path) -> Path:
    """The benchmarks' tiny random Qwen2.5-VL (``TINY``) with its processor. Its end token is
    suppressed: a random model may end at once, and tests that are not about empty answers need
    every answer to have text."""
    return save_captioner(folder, TINY)


def write_caption_config(
    path: Path, model: Path, data_root: Path, output_dir: str, shots: int = 3, batch_size: int = 2,
    extra_callbacks: str = "",
) -> Path:
    """A caption-stage config over a `ClassFolders` fake dataset, for a CPU run in seconds."""
    path.write_text(
        f"""
trainer:
  accelerator: cpu
  devices: 1
  logger: false
  default_root_dir: "{path.parent}"
  enable_progress_bar: false
  callbacks:
    - class_path: CaptionWriter
      init_args: {{output_dir: "{output_dir}"}}
{extra_callbacks}
model:
  class_path: Captioner
  init_args: {{model: "{model}", max_new_tokens: 4}}
data:
  class_path: CaptionDataModule
  init_args:
    dataset: {{class_path: ClassFolders, init_args: {{root: "{data_root}", descriptor: aircraft, name: toy}}}}
    shots: {shots}
    val_per_class: 1
    split_file: "{path.parent / 'split_{sampling}_seed{seed}.json'}"
    batch_size: {batch_size}
    num_workers: 0
""",
        encoding="utf-8",
    )
    return path
