"""The downstream classifier (stage 4): a backbone trained on real + synthetic images."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR

from bob.data.errors import BobInputError
from bob.datamodules.fewshot import default_eval_transform
from bob.datamodules.real_images import HOST_FIELDS, TO_FLOAT, scale_images
from bob.datamodules.surface import StageData, TrainingPoolData, stage_data
from bob.modules.checkpoints import check_trained_weights, keep_trained_weights
from bob.modules.class_specs import build_from_spec, class_path, factory_argument
from bob.modules.classifier.backbone import Backbone
from bob.modules.classifier.manifest import write_classifier_manifest
from bob.modules.classifier.metrics import classification_metrics
from bob.modules.classifier.mixing import PartwiseMix, real_synthetic_loss
from bob.modules.classifier.schedule import warmup_cosine

log = logging.getLogger(__name__)


class Classifier(LightningModule):
    """Fine-tunes a backbone on batches that mix real and synthetic images (docs/method.md, stage 4).

    loss = λ·CE(real part) + (1−λ)·CE(synthetic part), with CutMix/MixUp on a fraction of
    batches applied to each part separately. Validation and test report top-1 accuracy
    (``acc``), mean per-class accuracy (``acc_per_class``) and, on long-tail splits,
    ``acc_many`` / ``acc_medium`` / ``acc_few``. After ``fit`` the CLI tests the checkpoint of
    the best validation epoch when ``test_after_fit`` is set, and every test writes a
    ``manifest.json`` in the run's folder (inputs, settings, results). Checkpoints hold
    only the trained weights (adapters, heads, or everything under full fine-tuning) plus
    buffers; the rest is reloaded from the backbone's source.

    A checkpoint is self-contained: its hyperparameters hold the backbone (``class_path`` +
    ``init_args``), the optimizer, the class and prompt names, the descriptor and the image
    size, and it records the preprocessing (`preprocessing`), so
    ``Classifier.load_from_checkpoint(path)`` rebuilds the model alone and ``predict`` needs
    no training config (``python main.py predict -c configs/predict.yaml --ckpt_path ...``).

    Args:
        backbone: the network (``class_path: CLIPBackbone`` or ``TimmBackbone``); a checkpoint
            passes its spec (a ``class_path`` + ``init_args`` mapping).
        num_classes: number of classes (linked from the data).
        class_names: raw class names in label order (linked from the data).
        prompt_names: class names as text prompts read them (linked from the data).
        descriptor: the dataset's super-category, e.g. ``aircraft`` (linked from the data).
        image_size: side of the input images (linked from the data).
        real_weight: λ, the weight of the real part of the loss; 1 ignores synthetic images,
            0 ignores real ones. The paper sweeps {0.5, 0.8}.
        mix_prob: fraction of training batches that get CutMix or MixUp.
        cutmix_alpha: Beta parameter of CutMix.
        mixup_alpha: Beta parameter of MixUp.
        label_smoothing: label smoothing of the cross-entropy.
        optimizer: optimizer over the backbone's parameter groups (AdamW in the paper); a
            checkpoint passes its spec.
        warmup_epochs: epochs of linear learning-rate warm-up before the cosine decay.
        min_lr: learning rate at the end of the cosine decay.
        test_after_fit: after ``fit``, test the best-validation checkpoint.
    """

    #: Batches may hold uint8 images (a quarter of the bytes to copy): `forward` and
    #: `training_step` scale them on the device, the backbone normalises them.
    scales_uint8_images = True

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        class_names: list[str] | None = None,
        prompt_names: list[str] | None = None,
        descriptor: str = "object",
        image_size: int = 224,
        real_weight: float = 0.8,
        mix_prob: float = 0.2,
        cutmix_alpha: float = 1.0,
        mixup_alpha: float = 1.0,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = AdamW,
        warmup_epochs: float = 3.0,
        min_lr: float = 1e-8,
        test_after_fit: bool = True,
    ):
        super().__init__()
        if not 0.0 <= real_weight <= 1.0:
            raise BobInputError(
                f"real_weight (λ in λ·CE(real) + (1−λ)·CE(synthetic)) must be in [0, 1], got {real_weight}"
            )
        if not 0.0 <= mix_prob <= 1.0:
            raise BobInputError(f"mix_prob must be in [0, 1], got {mix_prob}")
        if class_names is not None and len(class_names) != num_classes:
            raise BobInputError(f"{len(class_names)} class names for num_classes={num_classes}")
        if isinstance(backbone, Mapping):
            backbone = build_from_spec(backbone, Backbone, "the classifier's backbone")
        optimizer, optimizer_spec = factory_argument(optimizer, torch.optim.Optimizer, "the classifier's optimizer")
        # Specs, not objects: hyperparameters go into checkpoints, YAML and the logger's config.
        self.save_hyperparameters(ignore=["backbone", "optimizer"])
        specs = {"backbone": backbone.spec(), "optimizer": optimizer_spec}
        self.save_hyperparameters({k: v for k, v in specs.items() if v is not None})
        self.backbone = backbone
        self.num_classes = num_classes
        self.class_names = class_names
        self.prompt_names = prompt_names or class_names or [str(i) for i in range(num_classes)]
        self.descriptor = descriptor
        self.image_size = image_size
        self.real_weight = real_weight
        self.label_smoothing = label_smoothing
        self.optimizer_factory = optimizer
        self.warmup_epochs = warmup_epochs
        self.min_lr = min_lr
        self.test_after_fit = test_after_fit
        self.mixer = PartwiseMix(num_classes, mix_prob, cutmix_alpha, mixup_alpha)
        self.val_metrics = classification_metrics("val", num_classes)
        self.test_metrics = classification_metrics("test", num_classes)
        self._class_groups: dict[str, str] = {}
        # Checkpoints carry only trained weights, so loading one is partial by design; the
        # keys that must be there are checked in `on_load_checkpoint`.
        self.strict_loading = False

    def configure_model(self, pretrained_weights: bool = True) -> None:
        if not self.backbone.built:
            self.backbone.build(self.num_classes, self.prompt_names, self.descriptor, self.image_size, pretrained_weights)
            trainable = sum(p.numel() for p in self.backbone.parameters() if p.requires_grad)
            total = sum(p.numel() for p in self.backbone.parameters())
            log.info("%s: %d of %d parameters train (%.2f%%)", type(self.backbone).__name__, trainable, total,
                     100 * trainable / max(total, 1))

    def setup(self, stage: str) -> None:
        if stage == "predict":
            return  # any images (`ImagePredictDataModule`): no split, no groups
        # Long-tail splits say which classes are many/medium/few-shot; the test metrics report them.
        # A test writes the manifest, which records the training pool: ask for it before testing.
        data = stage_data(self.trainer, "Classifier", TrainingPoolData if stage == "test" else StageData)
        groups = data.split.class_groups
        if groups and groups != self._class_groups:
            self._class_groups = dict(groups)
            for part in ("val", "test"):
                metrics = classification_metrics(part, self.num_classes, self.class_names, groups)
                setattr(self, f"{part}_metrics", metrics.to(self.device))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of images in [0, 1] (float, or uint8 scaled here on their device)."""
        return self.backbone(scale_images(images, self))

    def _real_first(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Images and labels with the real samples first, and how many are real.

        Batches of `collate_samples` are in that order and say so on the host; any other batch is
        read once (``is_synthetic``) and reordered.
        """
        images, labels = scale_images(batch["image"], self), batch["label"]
        host = batch.get(HOST_FIELDS)
        if host is not None and "num_real" in host:
            return images, labels, host["num_real"]
        flags = batch["is_synthetic"]
        flags = [bool(flag) for flag in (flags.tolist() if isinstance(flags, torch.Tensor) else flags)]
        order = sorted(range(len(flags)), key=flags.__getitem__)
        if order != list(range(len(flags))):
            index = torch.tensor(order, device=images.device)
            images, labels = images[index], labels[index]
        return images, labels, flags.count(False)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # No device value is read here (docs/finetuning.md, "What a training step costs").
        images, labels, num_real = self._real_first(batch)
        images, targets = self.mixer(images, labels, num_real)
        logits = self(images)
        loss, parts = real_synthetic_loss(logits, targets, num_real, self.real_weight, self.label_smoothing)
        size = len(images)
        # The logger converts these at its log_every_n_steps; the progress bar, which would convert
        # its values every step, shows the mean loss of the last finished epoch.
        self.log("train/loss", loss, batch_size=size)
        self.log("epoch_loss", loss, on_step=False, on_epoch=True, prog_bar=True, logger=False, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/loss_{name}", value, batch_size=size)
        # Known on the host: a host tensor, as a Python float would be copied to the device each step.
        self.log("train/synthetic_fraction", torch.tensor((size - num_real) / size), batch_size=size)
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        logits = self(batch["image"])
        labels = batch["label"]
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits, labels)
        size = len(labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), sync_dist=True, batch_size=size)
        self.log_dict(metrics, batch_size=size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_end(self) -> None:
        # Every rank calls it: finding the folder may be a collective call; rank 0 writes.
        write_classifier_manifest(self.trainer, self)

    def preprocess(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 CHW images of any size as one float batch in [0, 1]: the evaluation transform
        (shorter side resized to ``image_size``, bicubic, then a centre crop), as validation saw them."""
        transform = default_eval_transform(self.image_size)
        return torch.stack([TO_FLOAT(transform(image)) for image in images])

    def preprocessing(self) -> dict[str, Any]:
        """How an image becomes the network's input; saved in checkpoints and the manifest."""
        return {
            "image_size": self.image_size,
            "resize": "shorter side to image_size, bicubic, antialiased",
            "center_crop": self.image_size,
            "scale": "uint8 / 255",
            "mean": self.backbone.mean.flatten().tolist(),
            "std": self.backbone.std.flatten().tolist(),
        }

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        images = batch["image"]
        if isinstance(images, list | tuple):  # images of their own sizes (`ImagePredictDataModule`)
            images = self.preprocess(images)
        probabilities = self(images).float().softmax(dim=-1)
        return {"sample_id": batch["sample_id"], "probabilities": probabilities, "prediction": probabilities.argmax(-1)}

    def configure_optimizers(self) -> dict[str, Any]:
        groups = self.backbone.param_groups()
        if not groups:
            raise BobInputError(f"{type(self.backbone).__name__} has no trainable parameters; check `finetune`")
        optimizer = self.optimizer_factory(groups)
        for group in optimizer.param_groups:
            group["lr"] *= group.pop("lr_scale", 1.0)
        total = self.trainer.estimated_stepping_batches
        per_epoch = max(1, self.trainer.num_training_batches // self.trainer.accumulate_grad_batches)
        warmup = min(int(total), round(self.warmup_epochs * per_epoch))
        factors = [warmup_cosine(warmup, int(total), min(1.0, self.min_lr / g["lr"]) if g["lr"] else 0.0)
                   for g in optimizer.param_groups]
        scheduler = LambdaLR(optimizer, factors)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep_trained_weights(checkpoint, self)
        # `--ckpt_path` and `load_from_checkpoint` rebuild the module from these; values the CLI
        # links that this class does not take (e.g. path_values) would make that fail.
        accepted = inspect.signature(type(self).__init__).parameters
        hparams = checkpoint.get("hyper_parameters", {})
        hparams = {k: v for k, v in hparams.items() if k in accepted or k.startswith("_")}
        # Lightning's key for the class of a checkpoint made by the CLI; set for one made in
        # Python too, so `python main.py predict --ckpt_path` finds the class either way.
        checkpoint["hyper_parameters"] = {"_class_path": class_path(type(self)), **hparams}
        checkpoint["preprocessing"] = self.preprocessing()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Loaded outside a trainer the model is not built yet; a checkpoint of full fine-tuning
        # holds every weight, so the pretrained ones need not be read (nor be reachable).
        self.configure_model(pretrained_weights=self.backbone.finetune != "full")
        check_trained_weights(checkpoint, self, "it was made with another backbone or fine-tuning mode")
        preprocessing = checkpoint.get("preprocessing")
        if preprocessing is not None:
            self.backbone.set_normalization(preprocessing["mean"], preprocessing["std"])
