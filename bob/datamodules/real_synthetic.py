"""The classifier's data: real shots repeated to the paper's ratio, pooled with a synthetic image set."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, DataLoader
from torchvision.transforms import v2

from bob.data.datasets.base import DatasetReader
from bob.data.errors import BobInputError, CorruptImageError
from bob.data.images import describe_broken, verify_images
from bob.data.records import ImageRecord
from bob.data.resized_cache import ResizedImageCache
from bob.data.separable_blur import SeparableGaussianBlur
from bob.data.synthetic_set import load_synthetic_records
from bob.datamodules.fewshot import FewShotDataModule
from bob.datamodules.real_images import RecordDataset, collate_samples

log = logging.getLogger(__name__)


def paper_train_transform(image_size: int = 224) -> v2.Compose:
    """The paper's training augmentation, on uint8 images, in the authors' order.

    RandAugment comes first, on the whole photo, as in the authors' loader; the photometric
    operations after the crop work on ``image_size`` pixels.
    """
    return v2.Compose(
        [
            v2.RandAugment(),
            v2.RandomResizedCrop(image_size, scale=(0.25, 1.0), interpolation="bicubic", antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            # Separable: torchvision's blur up to float rounding, about 6x cheaper at 224 px.
            v2.RandomApply([SeparableGaussianBlur(kernel_size=23, sigma=(0.1, 2.0))], p=0.2),
            v2.RandomSolarize(threshold=128.0, p=0.2),
        ]
    )


class RealSyntheticDataModule(FewShotDataModule):
    """Real training shots plus synthetic images, each sample flagged with ``is_synthetic``.

    Each epoch holds every real shot `real_repeats` times (independently augmented) and every
    synthetic image once; at 5 shots and 100 synthetic images per class the default repeat of
    ``100 // shots`` = 20 makes the two pools the same size, as in the paper. The classifier
    weighs the two parts of each batch with λ. Validation and test use real images only. The
    synthetic folder is listed whenever the training dataloader is built, so a set made or
    refreshed during the run (`OnTheFlyGeneration`) is read as it is then.

    Args:
        dataset: the dataset reader (``class_path: FGVCAircraft``, ``ClassFolders``...).
        synthetic: folder of a synthetic image set (stage 3 output, ``python main.py predict -c
            configs/generate.yaml -c configs/datasets/<dataset>.yaml``); ``{dataset}``,
            ``{sampling}`` (``5shot``, ``lt100``), ``{arm}`` and the other placeholders of
            ``split_file`` are filled in. None trains on the real images alone, unless the
            `OnTheFlyGeneration` callback makes the set during this run (it then names the folder).
        cache_short_side: None (the default) decodes every image file each time it is read, as
            the paper's loader does. A number of pixels, at least ``image_size`` (256 for 224),
            turns on the resized image cache: each real and synthetic image is decoded once,
            shrunk so its shorter side is this many pixels, and stored as uint8 under
            ``cache_dir``; the transforms then run on the stored image. Faster (per image on one
            thread: the paper's augmentation 2.8x at 1024x683, 1.2x at 500x375; evaluation 3-8x)
            and not exact: the random crops sample fewer source pixels and evaluation images are
            resized twice (docs/reproduce.md, "Resized image cache").
        cache_dir: folder of the cache's ``resized_<cache_short_side>`` folders; placeholders as
            in ``split_file``. Entries are keyed by the image file's absolute path, size and
            modification time, so one folder serves every dataset and run, and deleting it is
            always safe.
        **kwargs: the arguments of `FewShotDataModule` (shots, seed, split_file, batch_size...);
            ``train_transform`` defaults to the paper's augmentation here. With ``verify_shots``
            (the default) every validation and test image is decoded once too, before training,
            so a corrupt test image is not found only after the last epoch.
    """

    def __init__(
        self,
        dataset: DatasetReader,
        synthetic: str | None = None,
        cache_short_side: int | None = None,
        cache_dir: str = "runs/image_cache",
        **kwargs: Any,
    ):
        super().__init__(dataset, **kwargs)
        if cache_short_side is not None and cache_short_side < self.image_size:
            raise BobInputError(
                f"cache_short_side={cache_short_side} is smaller than image_size={self.image_size}: every crop "
                f"would be enlarged; use at least {self.image_size} (256 for 224), or null to read the files"
            )
        self.cache_short_side = cache_short_side
        self.cache_dir = cache_dir
        if kwargs.get("train_transform") is None:
            self.train_transform = paper_train_transform(self.image_size)
        if synthetic is not None and Path(synthetic).suffix.lower() in (".yaml", ".yml"):
            raise BobInputError(
                f"synthetic is a synthetic set's folder, got the config {synthetic}; to generate the set during "
                "this run, set synthetic: null and add the callback `{class_path: OnTheFlyGeneration, init_args: "
                f"{{config: {synthetic}}}}}` to trainer.callbacks (see docs/generation.md)"
            )
        self.synthetic = synthetic
        self._made_during_run: Path | None = None
        self._evaluation_images_verified = False

    @property
    def synthetic_folder(self) -> Path | None:
        if self._made_during_run is not None:
            return self._made_during_run
        return self.format_path(self.synthetic, "synthetic") if self.synthetic is not None else None

    def use_synthetic_folder(self, folder: Path) -> None:
        """Train on the set in ``folder``, made during this run (by the time the training dataloader is built)."""
        named = self.synthetic_folder
        if named is not None and named.resolve() != Path(folder).resolve():
            raise BobInputError(
                f"data.synthetic names {named}, but this run generates its synthetic set in {folder}; "
                "set data.synthetic: null (the generation config decides the folder)"
            )
        self._made_during_run = Path(folder)

    def synthetic_records(self) -> list[ImageRecord]:
        """The synthetic training images, listed from the folder now (and checked against the classes)."""
        folder = self.synthetic_folder
        if folder is None:
            return []
        records = load_synthetic_records(folder, self.class_names)
        if not records:
            raise BobInputError(f"synthetic set {folder} lists no images")
        return records

    @property
    def image_cache(self) -> ResizedImageCache | None:
        """The resized image cache (``cache_short_side``), or None when it is off."""
        if self.cache_short_side is None:
            return None
        # Entries' long side is rounded so that the eval resize to image_size sizes them as it
        # sizes the original image (`cached_size`).
        return ResizedImageCache(self.format_path(self.cache_dir, "cache_dir"), self.cache_short_side, self.image_size)

    def image_loader(self) -> ResizedImageCache | None:
        return self.image_cache

    def fill_image_cache(self, synthetic: list[ImageRecord]) -> None:
        """Decode and store every real and synthetic image the cache lacks, failing on broken files."""
        cache = self.image_cache
        assert cache is not None
        records = [*self.split.train, *self.split.val, *self.split.test, *synthetic]
        paths = list(dict.fromkeys(r.path for r in records))
        todo = len(cache.missing(paths))
        log.info("image cache %s: %d of %d images cached, %d to decode", cache.root, len(paths) - todo, len(paths), todo)
        broken = cache.fill(paths, f"caching {todo} images at short side {cache.short_side}")
        if broken:
            raise CorruptImageError(
                f"{describe_broken(broken)}; replace or remove them and rerun "
                "(`python -m bob.check_data <the run's arguments>` lists every broken image)"
            )

    def extra_fields(self, records: list[ImageRecord]) -> dict[str, dict[str, Any]]:
        # Real and synthetic samples are collated together, so they must carry the same keys;
        # the classifier reads no captions.
        return {}

    def prepare_data(self) -> None:
        super().prepare_data()
        synthetic = self.synthetic_records()  # a named set is checked before any model loads
        if self.cache_short_side is not None:
            # Lightning runs prepare_data on one process per node, before the others' setup:
            # they (and their dataloader workers) find the entries made. Building an entry decodes
            # its image, so this checks every image that has none; an entry exists only for an
            # image that decoded, as it is now (size and modification time).
            self.fill_image_cache(synthetic)
            self._evaluation_images_verified = True
        if self.verify_shots and not self._evaluation_images_verified:
            # Here rather than in setup: Lightning runs prepare_data on one process per node, so
            # each image is decoded once, not once per GPU; the test after fit needs no second pass.
            records = [*self.split.val, *self.split.test]
            verify_images([r.path for r in records], f"checking {len(records)} validation and test images")
            self._evaluation_images_verified = True

    def setup(self, stage: str) -> None:
        if self.cache_short_side is None:
            super().setup(stage)
            return
        # With the cache on, prepare_data checked the training shots as it cached them, and an
        # image without an entry is decoded (failing on a broken file) when it is read.
        _ = self.caption_bank

    def pool_summary(self, synthetic: list[ImageRecord] | None = None) -> dict[str, Any]:
        """What the training pool is made of, for the logger."""
        synthetic = self.synthetic_records() if synthetic is None else synthetic
        return {
            "data/split_file": str(self.split_file),
            "data/real_shots": len(self.split.train),
            "data/real_repeats": self.real_repeats,
            "data/synthetic_folder": str(self.synthetic_folder) if self.synthetic_folder else None,
            "data/synthetic_images": len(synthetic),
            "data/cache_short_side": self.cache_short_side,
        }

    def train_dataset(self, synthetic: list[ImageRecord] | None = None) -> ConcatDataset:
        """Every real shot `real_repeats` times, then ``synthetic`` (by default the folder's images now)."""
        synthetic = self.synthetic_records() if synthetic is None else synthetic
        uint8 = self.uint8_images
        load = self.image_loader()
        real = RecordDataset(self.split.train * self.real_repeats, self.train_transform, uint8_images=uint8, load=load)
        parts = [real]
        if synthetic:
            parts.append(
                RecordDataset(synthetic, self.train_transform, is_synthetic=True, uint8_images=uint8, load=load)
            )
        return ConcatDataset(parts)

    def train_dataloader(self) -> DataLoader:
        synthetic = self.synthetic_records()
        per_class = Counter(r.label for r in synthetic)
        without = [name for label, name in enumerate(self.class_names) if not per_class[label]]
        if synthetic and without and self.split.shots is not None:
            log.warning("%d class(es) have no synthetic images, e.g. %s", len(without), without[:3])
        real = len(self.split.train)
        log.info(
            "training pool: %d real shots x %d repeats = %d real, %d synthetic (%s)",
            real, self.real_repeats, real * self.real_repeats, len(synthetic),
            self.synthetic_folder or "no synthetic set",
        )
        if self.trainer is not None and self.trainer.logger is not None:
            self.trainer.logger.log_hyperparams(self.pool_summary(synthetic))
        dataset = self.train_dataset(synthetic)
        # Drop the last partial batch: a batch of one breaks batch-norm and part-wise mixing.
        # `collate_samples` puts each batch's real images first: the classifier slices the parts.
        return self.make_dataloader(
            dataset, shuffle=True, drop_last=len(dataset) > self.batch_size, collate_fn=collate_samples
        )
