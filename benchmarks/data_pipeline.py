"""CPU cost per image of the training transforms on uint8 tensors (as bob's datasets apply them) and on PIL images,
and of the classifier's loader with and without the resized image cache (`cache_short_side`).

    python benchmarks/data_pipeline.py [--sizes 1024x683,500x375] [--repeats 5] [--cache-side 256] [--files a.jpg,b.jpg]

One thread, a photo-like JPEG of each size (decoded in memory for the first table, read from a
file for the cache table, the cache's entries from the page cache); CPU time per image, the
median of the repetitions. ``--files`` adds real image files to the cache tables.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from benchmarks.world import photo  # noqa: E402
from bob.data.images import load_rgb  # noqa: E402
from bob.data.resized_cache import ResizedImageCache  # noqa: E402
from bob.datamodules.fewshot import default_eval_transform  # noqa: E402
from bob.datamodules.real_images import TO_UINT8  # noqa: E402
from bob.datamodules.real_synthetic import paper_train_transform  # noqa: E402


def per_image_ms(work: Callable[[], object], images: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        torch.manual_seed(0)  # the same random augmentations for every case
        start = time.process_time()
        for _ in range(images):
            work()
        times.append((time.process_time() - start) / images * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--sizes", default="1024x683,500x375", help="comma-separated WIDTHxHEIGHT of the photos")
    parser.add_argument("--cache-side", type=int, default=256, help="the resized cache's short side")
    parser.add_argument("--image-size", type=int, default=224, help="the classifier's input size")
    parser.add_argument("--files", default="", help="comma-separated real image files for the cache tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [tuple(int(side) for side in size.split("x")) for size in args.sizes.split(",")]
    print("| photo | transforms | decode only | decode + transforms on PIL | decode + transforms on a uint8 tensor |\n"
          "|---|---|---|---|---|")
    for width, height in sizes:
        time_transforms(f"{width}x{height}", photo(width, height, 1), args.images, args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        sources = []
        for index, (width, height) in enumerate(sizes):
            path = Path(folder) / f"photo_{width}x{height}.jpg"
            photo(width, height, 1 + index).save(path, quality=90)
            sources.append((f"{width}x{height} (photo-like JPEG)", path))
        for file in filter(None, args.files.split(",")):
            with Image.open(file) as image:
                sources.append((f"{image.width}x{image.height} ({Path(file).name})", Path(file)))
        time_cache(sources, Path(folder) / "cache", args.cache_side, args.image_size, args.images, args.repeats)


def time_transforms(size: str, picture: Image.Image, images: int, repeats: int) -> None:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()

    def decode() -> Image.Image:
        return Image.open(io.BytesIO(jpeg)).convert("RGB")

    to_float = v2.ToDtype(torch.float32, scale=True)
    pipelines = {
        "LoRA: Resize(512) + RandomCrop(512)": v2.Compose([v2.Resize(512, antialias=True), v2.RandomCrop(512)]),
        "classifier: the paper's augmentation at 224": paper_train_transform(224),
    }
    decode_ms = per_image_ms(decode, images, repeats)
    for name, transform in pipelines.items():
        cases = [
            lambda t=transform: to_float(v2.ToImage()(t(decode()))),
            lambda t=transform: to_float(t(v2.ToImage()(decode()))),
        ]
        cells = " | ".join(f"{per_image_ms(case, images, repeats):.1f} ms" for case in cases)
        print(f"| {size} | {name} | {decode_ms:.1f} ms | {cells} |")


def time_cache(
    sources: list[tuple[str, Path]], folder: Path, side: int, image_size: int, images: int, repeats: int
) -> None:
    """Per photo: today's loader (decode the file + transforms) against the cache's (read the entry + transforms)."""
    cache = ResizedImageCache(folder, side, match_size=image_size)
    pipelines = {
        f"train: the paper's augmentation at {image_size}": paper_train_transform(image_size),
        f"eval: resize {image_size} + centre crop": default_eval_transform(image_size),
    }
    print(f"\n| photo | transforms | decode + transforms | cached ({side}): read + transforms | speed-up "
          "| images/s per worker, decode | images/s per worker, cached |\n|---|---|---|---|---|---|---|")
    built = []
    for label, path in sources:
        build_ms = per_image_ms(lambda p=path: cache.build(p), 3, repeats)  # the one-off cost, paid in prepare_data
        entry_kb = cache.entry(path).stat().st_size / 1024
        original = TO_UINT8(load_rgb(path))
        evaluate = pipelines[f"eval: resize {image_size} + centre crop"]
        difference = (evaluate(cache(path)).int() - evaluate(original).int()).abs().float().mean().item()
        built.append((label, build_ms, entry_kb, difference))
        for name, transform in pipelines.items():
            decoded = per_image_ms(lambda t=transform, p=path: t(TO_UINT8(load_rgb(p))), images, repeats)
            cached = per_image_ms(lambda t=transform, p=path: t(cache(p)), images, repeats)
            print(f"| {label} | {name} | {decoded:.1f} ms | {cached:.1f} ms | {decoded / cached:.1f}x "
                  f"| {1000 / decoded:.0f} | {1000 / cached:.0f} |")
    print("\n| photo | entry on disk | building it (decode + shrink + write, once) "
          "| eval transform, cached vs original: mean abs difference (of 255) |\n|---|---|---|---|")
    for label, build_ms, entry_kb, difference in built:
        print(f"| {label} | {entry_kb:.0f} kB | {build_ms:.1f} ms | {difference:.2f} |")


if __name__ == "__main__":
    main()
