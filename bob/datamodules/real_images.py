"""A torch Dataset over `ImageRecord`s that yields the project's dict samples, and their collate."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

from bob.data.images import load_uint8
from bob.data.records import ImageRecord

#: PIL -> uint8 tensor before user transforms (RandAugment and friends want uint8),
#: float in [0, 1] after them; normalisation belongs to the model.
TO_UINT8 = v2.ToImage()
TO_FLOAT = v2.ToDtype(torch.float32, scale=True)
#: The batch key of `collate_samples`' host-side values (plain Python, never moved to a device).
HOST_FIELDS = "host"
#: A LightningModule with this attribute set to True takes uint8 ``batch["image"]`` and scales it
#: on its device (`scale_images`); the few-shot DataModules then serve uint8 images, a quarter of
#: the bytes of float32 to copy to the device.
SCALES_UINT8_IMAGES = "scales_uint8_images"
#: A LightningModule with this attribute set to False keeps what it needs of every training image
#: itself (`LoRAFineTuner` with ``latent_crops``); the few-shot DataModules then neither decode
#: nor transfer training images.
NEEDS_TRAIN_IMAGES = "needs_train_images"
#: A LightningModule with this attribute set to True wants each training image's geometry in its
#: batches (`LoRAFineTuner` on SD-XL, for its size and crop conditioning): ``original_size``, the
#: decoded file's (height, width), and ``crop_top_left``, the (top, left) pixel of the resized
#: image where the transform's crop starts (`transform_with_crop_corner`).
NEEDS_IMAGE_GEOMETRY = "needs_image_geometry"


def transform_with_crop_corner(transform: Callable, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``transform(image)`` and where its crop starts: the (top, left) of the output's first pixel
    in the resized image, in output pixels.

    The image's top-left corner rides through the transform as a keypoint, which torchvision's
    v2 transforms move (resize, crop) without clamping it to the canvas, so after a crop it sits
    at (-left, -top). A transform that is not a v2 transform cannot carry it: (0, 0) is returned,
    and a random crop in such a transform goes unrecorded.
    """
    if not isinstance(transform, v2.Transform):
        return transform(image), (0, 0)
    corner = tv_tensors.KeyPoints([[0.0, 0.0]], canvas_size=tuple(image.shape[-2:]))
    out = transform({"image": tv_tensors.Image(image), "corner": corner})
    x, y = out["corner"][0].tolist()
    return out["image"].as_subclass(torch.Tensor), (max(0, round(-y)), max(0, round(-x)))


class RecordDataset(Dataset):
    """Images of a list of records, each sample a dict.

    Keys: ``image`` (float CHW in [0, 1]; uint8 CHW with ``uint8_images``), ``label``,
    ``sample_id``, ``is_synthetic`` (the ``is_synthetic`` argument: False for real images), plus
    the record's entry in ``extra_fields`` (sample id -> fields, e.g. caption attributes).

    Args:
        load: reads a record's image file as a uint8 CHW tensor (a picklable callable, e.g. a
            `bob.data.resized_cache.ResizedImageCache`); None decodes the file (`load_rgb`).
        uint8_images: keep an image that leaves ``transform`` as uint8 (the model scales it on
            its device, `scale_images`); an image the transform made float is scaled here as
            always.
        images: False serves samples without ``image`` (no file is read).
        geometry: also serve ``original_size`` (the decoded image's height and width) and
            ``crop_top_left`` (`transform_with_crop_corner`), as int tensors of 2.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        transform: Callable | None = None,
        extra_fields: Mapping[str, Mapping[str, Any]] | None = None,
        is_synthetic: bool = False,
        uint8_images: bool = False,
        load: Callable[[str], torch.Tensor] | None = None,
        images: bool = True,
        geometry: bool = False,
    ):
        self.records = records
        self.images = images
        self.geometry = geometry
        self.transform = transform
        self.extra_fields = extra_fields or {}
        self.is_synthetic = is_synthetic
        self.uint8_images = uint8_images
        self.load = load

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        sample: dict[str, Any] = {}
        if self.images:
            image = (self.load or load_uint8)(record.path)
            if self.geometry:
                sample["original_size"] = torch.tensor(image.shape[-2:])
                corner = (0, 0)
                if self.transform is not None:
                    image, corner = transform_with_crop_corner(self.transform, image)
                sample["crop_top_left"] = torch.tensor(corner)
            elif self.transform is not None:
                image = self.transform(image)
            sample["image"] = image if self.uint8_images and image.dtype == torch.uint8 else TO_FLOAT(image)
        sample.update({
            "label": record.label,
            "sample_id": record.sample_id,
            "is_synthetic": self.is_synthetic,
        })
        sample.update(self.extra_fields.get(record.sample_id, {}))
        return sample


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`default_collate`, real images first, plus host-side copies of what a training step reads.

    Real samples come before synthetic ones (each part in its order), so a model takes the two
    parts as slices, never as boolean masks, whose sizes are device values. ``batch["host"]``
    holds ``label`` (a list of ints) and ``num_real`` (how many samples come first), read by the
    training steps instead of the device tensors: reading a device value makes the host wait
    for the GPU. Runs in the DataLoader's workers.
    """
    samples = sorted(samples, key=lambda sample: bool(sample.get("is_synthetic", False)))
    batch = default_collate(samples)
    batch[HOST_FIELDS] = {
        "label": [int(sample["label"]) for sample in samples],
        "num_real": sum(not sample.get("is_synthetic", False) for sample in samples),
    }
    return batch


def scale_images(images: Any, module: Any = None) -> Any:
    """uint8 images as float in [0, 1], on their device (`TO_FLOAT`: the same numbers as scaling
    before the transfer); float images, and anything else, as they are.

    ``module``: a LightningModule; under a trainer its precision plugin then converts the images
    as it converts float inputs before the transfer (``16-true`` -> float16).
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        return images
    images = TO_FLOAT(images)
    trainer = getattr(module, "_trainer", None)
    return trainer.precision_plugin.convert_input(images) if trainer is not None else images


def host_labels(batch: Mapping[str, Any]) -> list[int]:
    """A batch's labels as Python ints: its host-side copy (`collate_samples`) where it has one.

    Otherwise ``batch["label"]`` is read, in one call (one wait where it is on a GPU).
    """
    host = batch.get(HOST_FIELDS)
    if host is not None and "label" in host:
        return list(host["label"])
    labels = batch["label"]
    return labels.tolist() if isinstance(labels, torch.Tensor) else [int(label) for label in labels]
