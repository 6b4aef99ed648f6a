"""How many BOB prompts built from released caption banks exceed CLIP's 77-token limit, before and after fitting."""

# The CLIP BPE file ships in the open_clip_torch wheel (or pass SD's tokenizer folder):
#   pip download --no-deps open_clip_torch==3.3.0 -d clip_bpe && unzip -o clip_bpe/*.whl \
#       'open_clip/bpe_simple_vocab_16e6.txt.gz' -d clip_bpe
#   python benchmarks/caption_prompt_fit.py --captions <folder of *_5shot banks> \
#       --bpe clip_bpe/open_clip/bpe_simple_vocab_16e6.txt.gz

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python benchmarks/caption_prompt_fit.py` puts only benchmarks/ on the path

from benchmarks.architectures import byte_symbols  # noqa: E402
from bob.data.caption_tsv import import_tsv_bank  # noqa: E402
from bob.data.class_names import prompt_name  # noqa: E402
from bob.data.prompt_fit import count_tokens, longest_class_name  # noqa: E402
from bob.data.prompts import CONTEXT_TEMPLATE, PromptTemplate  # noqa: E402

#: Released bank folder prefix -> the dataset's descriptor.
DESCRIPTORS = {"aircraft": "aircraft", "car": "car", "cub": "bird", "pet": "pet", "flower": "flower"}
#: The release writes class folders with "/" replaced; these are the variants' real names.
REAL_NAMES = {"F-16A_B": "F-16A/B", "F_A-18": "F/A-18"}


def write_clip_vocab(bpe_gz: Path, folder: Path) -> Path:
    """vocab.json + merges.txt built from ``bpe_simple_vocab_16e6.txt.gz`` exactly as CLIP builds them."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [line for line in lines if line.strip()]
    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


def load_clip_tokenizer(bpe: Path | None, tokenizer_dir: Path | None):
    from transformers import CLIPTokenizer

    if tokenizer_dir is None:
        tokenizer_dir = write_clip_vocab(bpe, Path(tempfile.mkdtemp()))
    tokenizer = CLIPTokenizer(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"), model_max_length=77)
    if len(tokenizer) != 49408:
        raise SystemExit(f"expected CLIP's 49408-token vocabulary, got {len(tokenizer)}")
    return tokenizer


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_bank(folder: Path, tokenizer, max_tokens: int = 77) -> dict:
    """Token statistics of one released bank and the effect of `CaptionBank.fit_to_token_limit`."""
    descriptor = DESCRIPTORS[folder.name.split("_")[0]]
    bank = import_tsv_bank(folder)
    names = {c: prompt_name(REAL_NAMES.get(c, c)) for c in {r.class_name for r in bank.records.values()}}
    template = PromptTemplate(CONTEXT_TEMPLATE, descriptor)
    worst = longest_class_name(names.values(), tokenizer)
    own = [count_tokens(tokenizer, template.format(names[r.class_name], r.attributes)) for r in bank.records.values()]
    cross = [count_tokens(tokenizer, template.format(worst, r.attributes)) for r in bank.records.values()]
    fitted = bank.fit_to_token_limit(template, tokenizer, names.values(), max_tokens)
    fit = fitted.manifest["prompt_fit"]
    after = [count_tokens(tokenizer, template.format(worst, r.attributes)) for r in fitted.records.values()]
    row = {"bank": folder.name, "records": len(bank), "longest_class": worst}
    for attribute in bank.attributes:
        lengths = [count_tokens(tokenizer, r.attributes[attribute]) - 2 for r in bank.records.values()]
        row[attribute] = {"median": round(statistics.median(lengths)), "p95": percentile(lengths, 0.95), "max": max(lengths)}
    row.update(
        own_class_over=sum(n > max_tokens for n in own),
        own_class_max=max(own),
        any_class_over=sum(n > max_tokens for n in cross),
        any_class_max=max(cross),
        shortened_captions=fit["num_shortened_captions"],
        shortened_records=fit["num_shortened_records"],
        max_after_fit=max(after),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--captions", type=Path, required=True, help="a released bank folder, or a folder of them")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bpe", type=Path, help="CLIP's bpe_simple_vocab_16e6.txt.gz")
    source.add_argument("--tokenizer_dir", type=Path, help="a folder with CLIP's vocab.json and merges.txt")
    parser.add_argument("--max_tokens", type=int, default=77)
    args = parser.parse_args()
    tokenizer = load_clip_tokenizer(args.bpe, args.tokenizer_dir)
    banks = [args.captions] if (args.captions / "pose.tsv").is_file() else sorted(p for p in args.captions.iterdir() if p.is_dir())
    limit = args.max_tokens
    print("| bank | records | background tokens (median/p95/max) | pose tokens (median/p95/max) "
          f"| prompts > {limit}, own class | prompts > {limit}, longest class | captions shortened | max after fit |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in banks:
        r = measure_bank(folder, tokenizer, args.max_tokens)
        stats = ["/".join(str(r[a][k]) for k in ("median", "p95", "max")) for a in ("background", "pose")]
        print(
            f"| {r['bank']} | {r['records']} | {stats[0]} | {stats[1]} | {r['own_class_over']} (max {r['own_class_max']}) "
            f"| {r['any_class_over']} (max {r['any_class_max']}, {r['longest_class']}) "
            f"| {r['shortened_captions']} in {r['shortened_records']} records | {r['max_after_fit']} |"
        )


if __name__ == "__main__":
    main()
