"""Feature extractors for FID, KID and diversity: FID Inception-v3, CLIP image tower, DINOv2, timm models, VAE latents."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.error import URLError

import torch
from huggingface_hub import try_to_load_from_cache
from torch import Tensor, nn

from bob.data.errors import BobInputError
from bob.hub import check_model_available, hub_offline, torch_hub_checkpoint
from bob.timm_checks import check_timm_name, check_timm_weights_available

#: torch-fidelity's port of the TensorFlow FID graph, the weights every published FID uses.
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def files_fingerprint(path: Path) -> str:
    """A short hash of the names, sizes and modification times of a file or a folder's files.

    Cheap even for gigabyte checkpoints; a replaced weight file changes its size or time.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def model_fingerprint(name_or_path: str, probe_file: str = "config.json") -> str:
    """Which weights a hub id or folder means: the folder's files, or the cached hub revision."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return f"local:{files_fingerprint(path)}"
    cached = try_to_load_from_cache(name_or_path, probe_file)
    return f"hub:{name_or_path}@{Path(cached).parent.name}" if isinstance(cached, str) else f"hub:{name_or_path}"


def resize(images: Tensor, size: int) -> Tensor:
    """Bicubic, antialiased resize of a float batch in [0, 1] to ``size`` x ``size``."""
    if images.shape[-2:] == (size, size):
        return images
    resized = nn.functional.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return resized.clamp(0.0, 1.0)


class FeatureExtractor(nn.Module):
    """Maps float images in [0, 1] of shape (B, 3, H, W) to feature vectors (B, D).

    Subclasses build nothing heavy in ``__init__``; `load` fetches the weights (the
    LightningModule calls it from ``configure_model``). Features are computed in fp32 whatever
    the trainer precision: FID is sensitive to feature precision.
    """

    #: short name used in report file names (``quality-<short_name>.json``).
    short_name: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False

    @abstractmethod
    def load(self) -> None:
        """Load the weights (fail clearly when they cannot be found offline)."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What decides the features (class, weights, layer, input size): the real-feature cache key."""

    @abstractmethod
    def extract(self, images: Tensor) -> Tensor:
        """Features of fp32 images in [0, 1]."""

    def forward(self, images: Tensor) -> Tensor:
        if not self.loaded:
            raise RuntimeError(f"{type(self).__name__}.load() must run before features are extracted")
        with torch.autocast(images.device.type, enabled=False):
            return self.extract(images.float()).float().flatten(1)


class InceptionFeatures(FeatureExtractor):
    """The FID Inception-v3 that torchmetrics' `FrechetInceptionDistance` uses (torch-fidelity's port).

    Images are turned into bytes as torchmetrics does (``(x * 255).byte()``) and resized to
    299 px inside the network. This is the standard for comparing FID with published numbers.

    Args:
        weights_path: the file ``weights-inception-2015-12-05-6726825d.pth``. None uses the copy
            in the torch hub cache (``~/.cache/torch/hub/checkpoints``), downloading it there once
            when online; offline (``HF_HUB_OFFLINE=1``) a missing copy is an error that says
            where to get it.
        feature_layer: which pooled activation to use; 2048 is the standard FID layer.
    """

    short_name = "inception"

    def __init__(self, weights_path: str | None = None, feature_layer: Literal[64, 192, 768, 2048] = 2048):
        super().__init__()
        self.weights_path = weights_path
        self.feature_layer = feature_layer

    def weights_file(self) -> Path:
        """The local weights file, downloaded into the torch hub cache first if needed and allowed."""
        if self.weights_path is not None:
            path = Path(self.weights_path).expanduser()
            if not path.is_file():
                raise BobInputError(f"Inception weights file {path} does not exist; download it from {INCEPTION_URL}")
            return path
        cached = torch_hub_checkpoint(INCEPTION_URL)
        if cached.is_file():
            return cached
        if hub_offline():
            raise BobInputError(
                f"the FID Inception weights are not in {cached.parent} and the run is offline (HF_HUB_OFFLINE). "
                f"Download {INCEPTION_URL} on a machine with internet (or run `python -m bob.weights` there with "
                "this run's arguments) and pass its path as --model.init_args.extractor.init_args.weights_path, "
                "or copy it into that folder"
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(INCEPTION_URL, str(cached))
        except (URLError, OSError) as error:
            raise BobInputError(
                f"cannot download the FID Inception weights from {INCEPTION_URL} ({error}); download the file "
                "elsewhere and pass it as --model.init_args.extractor.init_args.weights_path"
            ) from error
        return cached

    def load(self) -> None:
        try:
            import torch_fidelity  # noqa: F401
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ModuleNotFoundError as error:
            raise BobInputError("InceptionFeatures needs torch-fidelity: pip install torch-fidelity==0.4.0") from error
        path = self.weights_file()
        try:
            # torch-fidelity unpickles the file without restriction; a tensors-only load first
            # refuses a file that carries code.
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise BobInputError(f"{path} is not an Inception state dict ({error})") from error
        self.network = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=[str(self.feature_layer)], feature_extractor_weights_path=str(path)
        )
        self.loaded = True

    def identity(self) -> dict[str, Any]:
        weights = "torch-hub:" + INCEPTION_URL.rsplit("/", 1)[-1]
        if self.weights_path is not None:
            weights = f"file:{files_fingerprint(Path(self.weights_path).expanduser())}"
        return {"extractor": type(self).__name__, "weights": weights, "feature_layer": self.feature_layer}

    def extract(self, images: Tensor) -> Tensor:
        return self.network((images * 255).byte())


class _HubVisionFeatures(FeatureExtractor):
    """A transformers vision model loaded by hub id or folder, fed resized, normalised images."""

    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]

    def __init__(self, model: str, input_size: int | None):
        super().__init__()
        self.model_name = model
        self.input_size = input_size

    @abstractmethod
    def _from_pretrained(self, name_or_path: str) -> nn.Module: ...

    def load(self) -> None:
        check_model_available(self.model_name, "config.json")
        self.network = self._from_pretrained(self.model_name).eval().requires_grad_(False)
        self.pixel_size = self.input_size or self.network.config.image_size
        self.register_buffer("pixel_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.loaded = True

    def identity(self) -> dict[str, Any]:
        return {
            "extractor": type(self).__name__,
            "model": self.model_name,
            "weights": model_fingerprint(self.model_name),
            "input_size": self.input_size,
        }

    def pixels(self, images: Tensor) -> Tensor:
        return (resize(images, self.pixel_size) - self.pixel_mean) / self.pixel_std


class CLIPImageFeatures(_HubVisionFeatures):
    """The projected image embedding of a CLIP vision tower (`CLIPVisionModelWithProjection`).

    Args:
        model: hub id or local folder of a CLIP model (the vision tower is read from it).
        input_size: side the images are resized to; None takes the model's ``image_size`` (224).
    """

    short_name = "clip"
    mean, std = CLIP_MEAN, CLIP_STD

    def __init__(self, model: str = "openai/clip-vit-base-patch16", input_size: int | None = None):
        super().__init__(model, input_size)

    def _from_pretrained(self, name_or_path: str) -> nn.Module:
        from transformers import CLIPVisionModelWithProjection

        return CLIPVisionModelWithProjection.from_pretrained(name_or_path)

    def extract(self, images: Tensor) -> Tensor:
        return self.network(pixel_values=self.pixels(images)).image_embeds


class DINOv2Features(_HubVisionFeatures):
    """The final-layer CLS token of DINOv2 (`Dinov2Model`), the FD-DINOv2 feature of Stein et al. 2023.

    Self-supervised features that track human judgement of image sets better than Inception,
    especially for small sets. ViT-L/14 at 224 px is the reference setting.

    Args:
        model: hub id or local folder of a DINOv2 model.
        input_size: side the images are resized to (a multiple of the patch size, 14).
    """

    short_name = "dinov2"
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, model: str = "facebook/dinov2-large", input_size: int | None = 224):
        super().__init__(model, input_size)

    def _from_pretrained(self, name_or_path: str) -> nn.Module:
        from transformers import Dinov2Model

        return Dinov2Model.from_pretrained(name_or_path)

    def extract(self, images: Tensor) -> Tensor:
        return self.network(pixel_values=self.pixels(images)).pooler_output


class VAELatentFeatures(FeatureExtractor):
    """Mean latents of a diffusers `AutoencoderKL` encoder, average-pooled to a small grid.

    A feature space for worlds without a pretrained recognition network: the toy world ships a
    VAE in its prior, so its sets can be measured offline. Numbers are comparable only with
    runs on the same VAE, never with published FID.

    Args:
        model: hub id or local folder of a diffusers VAE, or of a pipeline (with ``subfolder``).
        subfolder: the VAE's folder inside ``model`` (``vae`` for a pipeline); null when
            ``model`` is the VAE itself.
        grid: side of the pooled latent grid; features are latent channels x grid x grid.
        input_size: side images are resized to before encoding; null keeps the data's size.
    """

    short_name = "vae"

    def __init__(self, model: str, subfolder: str | None = "vae", grid: int = 4, input_size: int | None = None):
        super().__init__()
        self.model_name = model
        self.subfolder = subfolder
        self.grid = grid
        self.input_size = input_size

    def load(self) -> None:
        from diffusers import AutoencoderKL

        check_model_available(self.model_name, f"{self.subfolder}/config.json" if self.subfolder else "config.json")
        self.network = AutoencoderKL.from_pretrained(self.model_name, subfolder=self.subfolder).eval().requires_grad_(False)
        self.loaded = True

    def identity(self) -> dict[str, Any]:
        return {
            "extractor": type(self).__name__,
            "model": self.model_name,
            "subfolder": self.subfolder,
            "weights": model_fingerprint(self.model_name, f"{self.subfolder}/config.json" if self.subfolder else "config.json"),
            "grid": self.grid,
            "input_size": self.input_size,
        }

    def extract(self, images: Tensor) -> Tensor:
        if self.input_size is not None:
            images = resize(images, self.input_size)
        latents = self.network.encode(images * 2.0 - 1.0).latent_dist.mean
        return nn.functional.adaptive_avg_pool2d(latents, self.grid)


class TimmFeatures(FeatureExtractor):
    """Pooled pre-logits features of any timm image model, with weights from the hub or a file.

    For a domain whose own recognition network beats ImageNet's (or where no hub is reachable):
    the toy world measures its sets with its shipped broad-world backbone, the way FID measures
    photos with an ImageNet-trained Inception. Numbers are comparable only with runs on the same
    weights.

    Args:
        model_name: a timm model name, optionally with a weights tag (``resnet50.tv2_in1k``).
        weights_file: a ``.safetensors`` / ``.pth`` file of the model's weights (without head);
            null takes timm's pretrained weights from the Hugging Face hub cache.
        input_size: side images are resized to before the network; null keeps the data's size.
    """

    short_name = "timm"

    def __init__(self, model_name: str, weights_file: str | None = None, input_size: int | None = None):
        super().__init__()
        check_timm_name(model_name, pretrained=weights_file is None)
        self.model_name = model_name
        self.weights_file = weights_file
        self.input_size = input_size

    def load(self) -> None:
        import timm

        kwargs: dict[str, Any] = {}
        if self.weights_file is not None:
            path = Path(self.weights_file).expanduser()
            if not path.is_file():
                raise BobInputError(f"timm weights file {path} does not exist (extractor.init_args.weights_file)")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        else:
            check_timm_weights_available(self.model_name)
        # num_classes=0: timm returns the pooled features in place of logits.
        self.network = timm.create_model(self.model_name, pretrained=True, num_classes=0, **kwargs).eval().requires_grad_(False)
        config = self.network.pretrained_cfg
        self.mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(config["std"]).view(1, 3, 1, 1)
        self.loaded = True

    def identity(self) -> dict[str, Any]:
        weights = f"file:{files_fingerprint(Path(self.weights_file).expanduser())}" if self.weights_file else "timm-pretrained"
        return {"extractor": type(self).__name__, "model": self.model_name, "weights": weights, "input_size": self.input_size}

    def extract(self, images: Tensor) -> Tensor:
        if self.input_size is not None:
            images = resize(images, self.input_size)
        return self.network((images - self.mean.to(images.device)) / self.std.to(images.device))
