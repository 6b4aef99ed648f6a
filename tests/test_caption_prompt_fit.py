"""The prompt-fit measurement script (benchmarks/caption_prompt_fit.py) on fake released banks."""

import gzip
import importlib.util
from pathlib import Path

from transformers import CLIPTokenizer

from tests.test_caption_bank import RELEASE_PREFIX, RELEASE_ROWS, write_release_tsvs
from tests.tiny_models import tiny_clip_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "caption_prompt_fit.py"
spec = importlib.util.spec_from_file_location("caption_prompt_fit", SCRIPT)
caption_prompt_fit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(caption_prompt_fit)


def test_clip_vocabulary_is_built_the_way_clip_builds_it(tmp_path):
    bpe = tmp_path / "bpe.txt.gz"
    with gzip.open(bpe, "wt", encoding="utf-8") as file:
        file.write("#version: 0.2\nh a\nha t</w>\n")
    folder = caption_prompt_fit.write_clip_vocab(bpe, tmp_path / "vocab")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    assert len(tokenizer) == 256 * 2 + 2 + 2
    assert tokenizer.convert_ids_to_tokens(tokenizer("hat")["input_ids"]) == ["<|startoftext|>", "hat</w>", "<|endoftext|>"]


def test_measure_counts_overlong_prompts_and_fits_them(tmp_path):
    rows = {**RELEASE_ROWS, f"{RELEASE_PREFIX}/Embraer_Legacy_600/0.jpg": ("Sky.", "Flying.")}
    folder = write_release_tsvs(tmp_path / "aircraft_5shot", rows)
    tokenizer = tiny_clip_tokenizer(tmp_path / "tok")  # one token per character: prompts run long
    row = caption_prompt_fit.measure_bank(folder, tokenizer, max_tokens=100)
    assert row["records"] == 4 and row["longest_class"] == "Embraer Legacy 600"
    # Own class: only the longest answer overflows; paired with the longest class name, three do.
    assert row["own_class_over"] == 1 and row["any_class_over"] == 3
    assert row["shortened_records"] == 3 and row["max_after_fit"] <= 100
    assert row["pose"]["max"] > row["pose"]["median"]
