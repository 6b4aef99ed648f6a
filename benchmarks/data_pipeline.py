"""CPU cost per image of the training transforms on uint8 tensors (as bob's datasets apply them) and on PIL images.

    python benchmarks/data_pipeline.py [--sizes 1024x683,320x240] [--repeats 5]

One thread, a photo-like JPEG of each size decoded in memory; the median of the repetitions.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
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
    parser.add_argument("--sizes", default="1024x683,320x240", help="comma-separated WIDTHxHEIGHT of the photos")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| photo | transforms | decode only | decode + transforms on PIL | decode + transforms on a uint8 tensor |\n"
          "|---|---|---|---|---|")
    for size in args.sizes.split(","):
        width, height = (int(side) for side in size.split("x"))
        time_transforms(size, photo(width, height, 1), args.images, args.repeats)


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


if __name__ == "__main__":
    main()
