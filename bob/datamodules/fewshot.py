"""The few-shot DataModule: reads or draws the split, serves real images as dict batches."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from bob.data.caption_bank import CaptionBank
from bob.data.datasets.base import DatasetReader
from bob.data.errors import BobInputError, SplitError
from bob.data.external_splits import load_longtail_source, load_split_source
from bob.data.images import verify_images
from bob.data.longtail import sample_longtail_split
from bob.data.records import ImageRecord
from bob.data.release_indices import carve_test_split
from bob.data.splits import FewShotSplit, sample_fewshot_split
from bob.datamodules.real_images import (
    NEEDS_IMAGE_GEOMETRY,
    NEEDS_TRAIN_IMAGES,
    SCALES_UINT8_IMAGES,
    RecordDataset,
    collate_samples,
)

log = logging.getLogger(__name__)

#: ``{sampling}`` is ``5shot``, ``lt100`` (long-tail) or ``5shot-ext-<name>-<hash>`` (external source).
DEFAULT_SPLIT_FILE = "runs/splits/{dataset}_{sampling}_seed{seed}.json"
ClassNameForm = Literal["folder", "display"]
#: synthetic images per class the paper balances the real pool against (100 per class).
IMAGES_PER_CLASS = 100


def default_train_transform(image_size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=(0.25, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )


def default_eval_transform(image_size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.Resize(image_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(image_size),
        ]
    )


class FewShotDataModule(LightningDataModule):
    """Real images of a few-shot split.

    The split is read from ``split_file`` when it exists and made (then saved there) when it
    does not, so every stage pointed at the same file sees the same images. It is made in one
    of three ways: ``shots`` per class drawn with ``seed``; a long-tail subset
    (``imbalance_factor``); or taken from ``split_source``. ``predict`` serves the training
    shots, which is what the captioning stage describes.

    Args:
        dataset: the dataset reader (``class_path: FGVCAircraft``, ``ClassFolders``...).
        shots: real training images per class; null for long-tail splits.
        seed: seed of the split draw (and of the validation draw for external splits).
        split_file: where the split is read from or written to; ``{dataset}``, ``{sampling}``,
            ``{shots}``, ``{imbalance_factor}`` and ``{seed}`` are filled in. A file made with
            other settings is refused, never silently reused.
        val_per_class: extra real validation images per class from the official train split;
            None takes the dataset's default (the paper's sizes).
        split_source: an external split: a bob split file (``.json``), a text file with one
            image path per line (relative to the dataset folder), or a Diff-II style folder
            ``<k>shot/train/<class folder>/<n>.jpg`` (see docs/datasets.md). The dataset
            configs point at Diff-II's folders, the splits of the paper's runs.
        split_tag: how ``{sampling}`` names a split taken from ``split_source``
            (``5shot-<split_tag>``); None names it by the source's file name and a hash of its
            path.
        imbalance_factor: make a long-tail split instead (CUB-LT, Flowers-LT: 100, 20 or 10);
            needs ``shots: null``. With ``split_source`` the long-tail images are Diff-II's
            ``imb_<dataset>_<1/imbalance_factor>`` folder, the paper's runs' split.
        val_indices: an index file of the authors' long-tail protocol: validation images are
            the official test images at its positions (``cub_test_validsplit.pkl``); read without
            running pickle code. Needs ``test_indices``.
        test_indices: the matching index file of test images (``cub_test_testsplit.pkl``);
            the rest of the official test split is not used.
        longtail_groups: ``[many_above, few_below]``: long-tail classes with more than
            ``many_above`` training images are ``many``, fewer than ``few_below`` ``few``;
            None takes the dataset's default.
        image_size: side of the square images the model receives.
        batch_size: images per batch on each device.
        num_workers: dataloader worker processes.
        pin_memory: page-locked batches, so their copy to the GPU runs alongside the step; None
            (auto) pins them when the trainer runs on CUDA.
        train_transform: augmentation applied to uint8 image tensors during fit; None uses a
            random resized crop and horizontal flip.
        eval_transform: transform for validation, test and predict; None resizes and center-crops.
        verify_shots: decode every training shot once in ``setup`` so a corrupt file fails early.
        caption_bank: folder of a caption bank (stage 1 output), placeholders as in
            ``split_file``; when given, every sample also carries one string field per attribute
            (``background``, ``pose``...) and the bank must match the training shots exactly.
        real_repeats: how many times each real shot counts against synthetic images: the
            classifier repeats each real shot this often per epoch, and long-tail generation
            tops class c up to ``top_up_to - real_repeats * n_real(c)`` images. None uses
            ``100 // shots`` for few-shot splits and 1 for long-tail splits.
        arm: the experiment arm (``bob``, ``datadream``...), filled into ``{arm}`` in run paths.
        model_tag: a suffix for run folders made with another base model (``-sd15``), filled
            into ``{model_tag}``.
        class_name_form: how prompts (fine-tuning, generation, the CLIP head) write class
            names: ``folder`` as the authors' code did, from the Diff-II folder names
            (``Black_footed_Albatross``, ``F_A-18``, ``am_general_hummer_suv_2000``), or
            ``display`` as words (``Black footed Albatross``, ``F/A-18``, Pets breeds title-cased).
    """

    def __init__(
        self,
        dataset: DatasetReader,
        shots: int | None = 5,
        seed: int = 0,
        split_file: str = DEFAULT_SPLIT_FILE,
        val_per_class: int | None = None,
        split_source: str | None = None,
        split_tag: str | None = None,
        imbalance_factor: float | None = None,
        val_indices: str | None = None,
        test_indices: str | None = None,
        longtail_groups: tuple[int, int] | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        train_transform: Callable | None = None,
        eval_transform: Callable | None = None,
        verify_shots: bool = True,
        caption_bank: str | None = None,
        real_repeats: int | None = None,
        arm: str = "bob",
        model_tag: str = "",
        class_name_form: ClassNameForm = "folder",
    ):
        super().__init__()
        if imbalance_factor is not None and shots is not None:
            raise BobInputError(
                f"imbalance_factor={imbalance_factor} makes a long-tail split, which has no fixed shots; "
                "set shots: null (or drop imbalance_factor)"
            )
        if (val_indices is None) != (test_indices is None):
            raise BobInputError("val_indices and test_indices come together: give both index files, or neither")
        if imbalance_factor is None and shots is None and split_source is None:
            raise BobInputError("shots is null: give shots, imbalance_factor (long-tail) or split_source")
        self.dataset = dataset
        self.shots = shots
        self.seed = seed
        self.split_file_template = split_file
        self.val_per_class = val_per_class
        self.split_source = split_source
        self.split_tag = split_tag
        self.imbalance_factor = imbalance_factor
        self.val_indices = val_indices
        self.test_indices = test_indices
        self.longtail_groups = longtail_groups
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.train_transform = train_transform or default_train_transform(image_size)
        self.eval_transform = eval_transform or default_eval_transform(image_size)
        self.verify_shots = verify_shots
        if real_repeats is not None and real_repeats < 1:
            raise BobInputError(f"real_repeats must be at least 1, got {real_repeats}")
        self.real_repeats_setting = real_repeats
        self.arm = arm
        self.model_tag = model_tag
        self.class_name_form = class_name_form
        self.caption_bank_path = str(self.format_path(caption_bank, "caption_bank")) if caption_bank is not None else None
        self._split: FewShotSplit | None = None
        self._caption_bank: CaptionBank | None = None

    # Values linked into the model by the CLI (they must agree between data and model).
    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def prompt_names(self) -> list[str]:
        return self.dataset.folder_names if self.class_name_form == "folder" else self.dataset.prompt_names

    @property
    def descriptor(self) -> str:
        return self.dataset.descriptor

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sampling(self) -> str:
        """How the split is made, as it appears in split file names."""
        size = f"lt{self.imbalance_factor:g}" if self.imbalance_factor is not None else f"{self.shots}shot"
        if self.split_source is None:
            return size
        if self.split_tag is not None:
            return f"{size}-{self.split_tag}"
        source = Path(self.split_source).expanduser().resolve()
        tag = hashlib.sha256(str(source).encode()).hexdigest()[:6]
        return f"{size}-ext-{source.stem}-{tag}"

    def path_values(self) -> dict[str, Any]:
        """Values the ``{placeholders}`` of run paths take, the same in every stage's config."""
        return {
            "dataset": self.dataset.name, "sampling": self.sampling, "shots": self.shots,
            "imbalance_factor": self.imbalance_factor, "seed": self.seed,
            "arm": self.arm, "model_tag": self.model_tag,
        }

    def format_path(self, template: str, setting: str = "path") -> Path:
        """Fill a run-path template (``runs/{dataset}/lora/bob_{sampling}_seed{seed}``) for this split.

        Args:
            template: the path with placeholders among `path_values`.
            setting: the name of the option it came from, for the error message.
        """
        try:
            return Path(template.format(**self.path_values()))
        except (KeyError, IndexError) as error:
            raise BobInputError(
                f"{setting} {template!r} has an unknown placeholder {error}; use "
                + ", ".join(f"{{{name}}}" for name in self.path_values())
            ) from error

    @property
    def real_repeats(self) -> int:
        if self.real_repeats_setting is not None:
            return self.real_repeats_setting
        shots = self.split.shots
        return max(1, IMAGES_PER_CLASS // shots) if shots else 1

    @property
    def split_file(self) -> Path:
        return self.format_path(self.split_file_template, "split_file")

    def split_request(self) -> dict[str, Any]:
        """The settings a split file must have been made with to be reused (saved in its details)."""
        val = self.val_per_class if self.val_per_class is not None else self.dataset.default_val_per_class
        request: dict[str, Any] = {"shots": self.shots, "seed": self.seed, "val_per_class": val}
        if self.imbalance_factor is not None:
            many, few = self.longtail_groups or self.dataset.longtail_groups
            request.update(imbalance_factor=self.imbalance_factor, many_above=many, few_below=few)
        if self.split_source is not None:
            request["split_source"] = str(Path(self.split_source).expanduser().resolve())
        if self.val_indices is not None:
            request["val_indices"] = str(Path(self.val_indices).expanduser().resolve())
            request["test_indices"] = str(Path(self.test_indices).expanduser().resolve())
        return request

    @property
    def split(self) -> FewShotSplit:
        """The split, loaded or drawn on first use (cheap: index files only, no images)."""
        if self._split is None:
            self._split = self._load_or_make_split()
        return self._split

    @property
    def caption_bank(self) -> CaptionBank | None:
        """The attached caption bank, checked against the training shots on first use."""
        if self.caption_bank_path is None:
            return None
        if self._caption_bank is None:
            bank = CaptionBank.load(self.caption_bank_path)
            bank.check_matches(self.split.train)
            self._caption_bank = bank
        return self._caption_bank

    def _make_split(self) -> FewShotSplit:
        request = self.split_request()
        if self.split_source is not None and self.imbalance_factor is not None:
            split = load_longtail_source(
                self.split_source, self.dataset, self.imbalance_factor, self.seed, request["val_per_class"],
                request["many_above"], request["few_below"],
            )
        elif self.split_source is not None:
            split = load_split_source(self.split_source, self.dataset, self.shots, self.seed, request["val_per_class"])
        elif self.imbalance_factor is not None:
            split = sample_longtail_split(
                self.dataset, self.imbalance_factor, self.seed, request["val_per_class"],
                many_above=request["many_above"], few_below=request["few_below"],
            )
        else:
            split = sample_fewshot_split(self.dataset, self.shots, self.seed, request["val_per_class"])
        if self.val_indices is not None:
            # The authors' long-tail protocol: validation and test both come from the official test split.
            split.val, split.test = carve_test_split(self.dataset, self.val_indices, self.test_indices)
            split.details.update(val_from="test split (index files)", val_indices=self.val_indices, test_indices=self.test_indices)
        split.details["request"] = request
        return split

    def _load_or_make_split(self) -> FewShotSplit:
        path = self.split_file
        if path.is_file():
            split = FewShotSplit.load(path, self.dataset)
            made_with, wanted = split.details.get("request"), self.split_request()
            if made_with is not None and made_with != wanted:
                changed = sorted(k for k in made_with.keys() | wanted.keys() if made_with.get(k) != wanted.get(k))
                raise SplitError(
                    f"split file {path} was made with "
                    + ", ".join(f"{k}={made_with.get(k)!r}" for k in changed)
                    + " but this run asks for "
                    + ", ".join(f"{k}={wanted.get(k)!r}" for k in changed)
                    + "; delete it or point split_file elsewhere"
                )
            log.info("read split %s (%d train, %d val, %d test)", path, len(split.train), len(split.val), len(split.test))
            return split
        split = self._make_split()
        # Under DDP every rank draws the same split; writing is atomic, so concurrent writes are harmless.
        split.save(path)
        log.info("wrote split %s (%d train, %d val, %d test)", path, len(split.train), len(split.val), len(split.test))
        return split

    def prepare_data(self) -> None:
        self.dataset.check_layout()
        _ = self.split

    def setup(self, stage: str) -> None:
        if self.verify_shots:
            verify_images([r.path for r in self.split.train])
        _ = self.caption_bank

    def extra_fields(self, records: list[ImageRecord]) -> dict[str, dict[str, Any]]:
        """Per-sample fields beyond image and label, by sample id: caption attributes of training images."""
        bank = self.caption_bank
        if bank is None:
            return {}
        return {r.sample_id: dict(bank[r.sample_id].attributes) for r in records if r.sample_id in bank.records}

    def records_dataset(self, records: list[ImageRecord], train: bool) -> Dataset:
        transform = self.train_transform if train else self.eval_transform
        # Plain values only: each dataloader worker gets a pickled copy of the dataset.
        return RecordDataset(
            records, transform, self.extra_fields(records), uint8_images=self.uint8_images, load=self.image_loader(),
            images=self.train_images if train else True, geometry=train and self.image_geometry,
        )

    def image_loader(self) -> Callable[[str], Any] | None:
        """What reads an image file as a uint8 tensor for `RecordDataset`; None: decode it (here, always)."""
        return None

    @property
    def uint8_images(self) -> bool:
        """Serve images as uint8: the trainer's module scales them on its device (`SCALES_UINT8_IMAGES`)."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return getattr(module, SCALES_UINT8_IMAGES, False) is True

    @property
    def train_images(self) -> bool:
        """Serve training images: False when the trainer's module keeps its own latents of them (`NEEDS_TRAIN_IMAGES`)."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return getattr(module, NEEDS_TRAIN_IMAGES, True) is not False

    @property
    def image_geometry(self) -> bool:
        """Serve each training image's size and crop corner: the trainer's module asks for them (`NEEDS_IMAGE_GEOMETRY`)."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        return getattr(module, NEEDS_IMAGE_GEOMETRY, False) is True

    @property
    def pins_memory(self) -> bool:
        """``pin_memory``, or where it is None (auto): whether the trainer runs on CUDA."""
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and isinstance(getattr(self.trainer, "accelerator", None), CUDAAccelerator)

    def make_dataloader(
        self, dataset: Dataset, shuffle: bool, drop_last: bool = False, collate_fn: Callable | None = None
    ) -> DataLoader:
        """The one dataloader factory every DataModule in bob uses; ``collate_fn`` None: torch's default."""
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pins_memory,
            collate_fn=collate_fn,
        )

    def records_dataloader(self, records: list[ImageRecord], train: bool, shuffle: bool) -> DataLoader:
        """Batches of `RecordDataset` samples through `collate_samples` (host-side labels, real images first)."""
        return self.make_dataloader(self.records_dataset(records, train), shuffle=shuffle, collate_fn=collate_samples)

    def train_dataloader(self) -> DataLoader:
        return self.records_dataloader(self.split.train, train=True, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.records_dataloader(self.split.val, train=False, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.records_dataloader(self.split.test, train=False, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.records_dataloader(self.split.train, train=False, shuffle=False)
