"""The prior's CLIP tokenizer: a BPE vocabulary learned from the toy world's own caption words."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

from bob.toyworld.captions import all_caption_texts

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
#: CLIP's pre-tokenizer for ASCII text: letter runs, single digits, punctuation runs.
_PIECES = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def caption_words(texts: list[str] | None = None) -> list[str]:
    """The distinct pre-tokenized words of the toy world's captions, sorted."""
    texts = all_caption_texts() if texts is None else texts
    words = set()
    for text in texts:
        words.update(_PIECES.findall(_PLACEHOLDER.sub(" ", text).lower()))
    return sorted(words)


def _symbols(word: str) -> tuple[str, ...]:
    return (*word[:-1], word[-1] + "</w>")


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges until every word is one token.

    BPE encoding replays merges by rank, which reproduces this segmentation exactly, so every
    caption word becomes a single token and any other word (a name the world lacks) splits into
    pieces that are all in the vocabulary.
    """
    segmented = {word: _symbols(word) for word in words}
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols in segmented.values():
            pairs.update(zip(symbols, symbols[1:], strict=False))
        if not pairs:
            return merges
        # Most frequent first, ties by the pair itself: deterministic on every machine.
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for word, symbols in segmented.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            segmented[word] = tuple(merged)


def write_tokenizer_files(folder: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` that `transformers.CLIPTokenizer` loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(caption_words())
    characters = string.ascii_lowercase + string.digits + string.punctuation
    vocab: dict[str, int] = {}
    for token in [*characters, *(c + "</w>" for c in characters), *(a + b for a, b in merges), *SPECIAL_TOKENS]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def build_tokenizer(folder: str | Path, max_length: int = 77):
    """A `CLIPTokenizer` over the toy world's vocabulary, written into ``folder``."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    tokenizer = CLIPTokenizer(
        str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"), model_max_length=max_length
    )
    if len(tokenizer) < 100:
        raise RuntimeError(f"toy-world tokenizer has only {len(tokenizer)} tokens; its vocabulary did not load")
    return tokenizer
