"""What stage 3 costs besides the diffusion model: planning, prompt fitting, image encoding, resume bookkeeping.

    python benchmarks/generation_overhead.py [--classes 200] [--per-class 100] [--bank 1000] [--recheck 500]

CPU only, no model weights: the numbers say whether planning and writing can slow a GPU run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bob.data.generation_plan import Context, GenerationPlan
from bob.data.prompts import CONTEXT_TEMPLATE, PromptTemplate
from bob.data.synthetic_set import SyntheticSetFolder
from bob.shipped import PACKAGE_ROOT

#: A CLIP tokenizer that ships with bob (the toy world prior's), limit 77 tokens like SD's.
TOKENIZER = PACKAGE_ROOT / "toyworld" / "prior"


def photo_like(size: int, seed: int) -> np.ndarray:
    """Smooth colour gradients plus mild noise: compresses like a photo, unlike pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(3 * x + rng.uniform(0, 6)), np.cos(2 * y + rng.uniform(0, 6)), x * y], axis=-1)
    image = (base - base.min()) / (base.max() - base.min() + 1e-9) * 200 + rng.normal(0, 6, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--bank", type=int, default=1000, help="caption bank records")
    parser.add_argument("--encode", type=int, default=20, help="512 px images to encode per format")
    parser.add_argument("--recheck", type=int, default=500, help="512 px PNGs a resumed run re-checks (size + sha256)")
    args = parser.parse_args()

    names = [f"class {i:03d}" for i in range(args.classes)]
    bank = [
        Context({"background": f"background number {i}", "pose": f"pose number {i}"}, f"img{i}", names[i % args.classes])
        for i in range(args.bank)
    ]
    template = PromptTemplate(CONTEXT_TEMPLATE, "bird")
    start = time.perf_counter()
    plan = GenerationPlan(names, names, [args.per_class] * args.classes, template, "marginal", bank)
    _ = plan.fingerprint
    print(f"plan: {len(plan)} items ({args.classes} classes x {args.per_class}, bank {args.bank}) "
          f"in {time.perf_counter() - start:.2f} s")

    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER, subfolder="tokenizer")
    start = time.perf_counter()
    fitted = plan.fit_prompts(plan.items, tokenizer)
    print(f"fit {len(fitted)} prompts to {tokenizer.model_max_length} tokens "
          f"({sum(bool(i.shortened) for i in fitted)} shortened): {time.perf_counter() - start:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("png", "jpg", "webp"):
            folder = SyntheticSetFolder(Path(tmp) / fmt, image_format=fmt)
            images = [photo_like(512, i) for i in range(args.encode)]
            start = time.perf_counter()
            for item, image in zip(plan.items, images, strict=False):
                folder.write(item, image, {})
            per_image = (time.perf_counter() - start) / args.encode
            size = np.mean([p.stat().st_size for p in (Path(tmp) / fmt).rglob(f"*.{fmt}")]) / 1024
            print(f"write 512x512 {fmt}: {per_image * 1000:.1f} ms/image (image + sidecar), {size:.0f} KiB/image")

        folder = SyntheticSetFolder(Path(tmp) / "recheck")
        image = photo_like(512, 0)
        for item in plan.items[: args.recheck]:
            folder.write(item, image, {})
        size = sum(p.stat().st_size for p in (Path(tmp) / "recheck").rglob("*.png")) / 2**20
        start = time.perf_counter()
        SyntheticSetFolder(Path(tmp) / "recheck").recheck()  # a new run: nothing verified yet
        seconds = time.perf_counter() - start
        print(f"re-check {args.recheck} finished 512x512 PNGs ({size:.0f} MiB, size + sha256): {seconds:.2f} s, "
              f"{seconds / args.recheck * 1000:.2f} ms/image, {size / seconds:.0f} MiB/s")

        folder = SyntheticSetFolder(Path(tmp) / "resume")
        tiny = np.zeros((8, 8, 3), np.uint8)
        for item in plan.items:
            folder.write(item, tiny, {})
        start = time.perf_counter()
        done = folder.done_keys()
        print(f"resume scan, {len(done)} finished images as sidecars: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        folder.finish([i.key for i in plan.items], {})
        print(f"assemble manifest.jsonl of {len(plan)} lines: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        done = folder.done_keys()
        print(f"resume scan, {len(done)} finished images in manifest.jsonl: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
