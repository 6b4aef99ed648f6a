"""Caption-stage test fixtures: a tiny random-weight Qwen2.5-VL saved like a hub copy, and a stage config."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL_TOKENS = [
    "<|im_end|>", "<|endoftext|>", "<|im_start|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]

#: The shape of Qwen2.5-VL's own template, for a user turn of images and text.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_symbols() -> list[str]:
    # GPT-2 style byte-level alphabet, as Qwen's tokenizer uses.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_qwen_tokenizer_files(folder: Path) -> Path:
    """A byte-level BPE vocabulary with no merges: every byte is one token."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(_byte_symbols())}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def save_tiny_qwen2_5_vl(folder: str | Path, seed: int = 0) -> Path:
    """Save a ~0.1 M-parameter Qwen2.5-VL and its processor; load with the Auto classes."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    folder = Path(folder)
    files = write_qwen_tokenizer_files(folder / "tokenizer_files")
    tokenizer = Qwen2Tokenizer(
        vocab=str(files / "vocab.json"), merges=str(files / "merges.txt"), unk_token=None,
        bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[2:]})
    assert len(tokenizer) == 256 + len(SPECIAL_TOKENS), "tokenizer lost its vocabulary"
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS), strict=True))
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 32,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.bos_token_id = None
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_never_silent_qwen2_5_vl(folder: str | Path) -> Path:
    """The tiny model with its end token suppressed: a random model may end at once, and tests
    that are not about empty answers need every answer to have text."""
    from transformers import GenerationConfig

    folder = save_tiny_qwen2_5_vl(folder)
    generation = GenerationConfig.from_pretrained(folder)
    generation.suppress_tokens = [generation.eos_token_id]
    generation.save_pretrained(folder)
    return folder


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
