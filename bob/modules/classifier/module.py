"""The downstream classifier (stage 4): a backbone trained on real + synthetic images."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR

from bob.data.errors import BobInputError
from bob.modules.classifier.backbone import Backbone
from bob.modules.classifier.manifest import write_classifier_manifest
from bob.modules.classifier.metrics import classification_metrics
from bob.modules.classifier.mixing import PartwiseMix, real_synthetic_loss
from bob.modules.classifier.schedule import warmup_cosine

log = logging.getLogger(__name__)


class Classifier(LightningModule):
    """Fine-tunes a backbone on batches that mix real and synthetic images (PAPER.md, Step 4).

    loss = λ·CE(real part) + (1−λ)·CE(synthetic part), with CutMix/MixUp on a fraction of
    batches applied to each part separately. Validation and test report top-1 accuracy
    (``acc``), mean per-class accuracy (``acc_per_class``) and, on long-tail splits,
    ``acc_many`` / ``acc_medium`` / ``acc_few``. After ``fit`` the CLI tests the checkpoint of
    the best validation epoch when ``test_after_fit`` is set, and every test writes a
    ``manifest.json`` beside the checkpoints (inputs, settings, results). Checkpoints hold
    only the trained weights (adapters, heads, or everything under full fine-tuning) plus
    buffers; the rest is reloaded from the backbone's source.

    Args:
        backbone: the network (``class_path: CLIPBackbone`` or ``TimmBackbone``).
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
        optimizer: optimizer over the backbone's parameter groups (AdamW in the paper).
        warmup_epochs: epochs of linear learning-rate warm-up before the cosine decay.
        min_lr: learning rate at the end of the cosine decay.
        test_after_fit: after ``fit``, test the best-validation checkpoint.
    """

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
        self.save_hyperparameters(ignore=["backbone", "optimizer", "class_names", "prompt_names"])
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

    def configure_model(self) -> None:
        if not self.backbone.built:
            self.backbone.build(self.num_classes, self.prompt_names, self.descriptor, self.image_size)
            trainable = sum(p.numel() for p in self.backbone.parameters() if p.requires_grad)
            total = sum(p.numel() for p in self.backbone.parameters())
            log.info("%s: %d of %d parameters train (%.2f%%)", type(self.backbone).__name__, trainable, total,
                     100 * trainable / max(total, 1))

    def setup(self, stage: str) -> None:
        # Long-tail splits say which classes are many/medium/few-shot; the test metrics report them.
        split = getattr(self.trainer.datamodule, "split", None) if self.trainer is not None else None
        groups = getattr(split, "class_groups", None)
        if groups and groups != self._class_groups:
            self._class_groups = dict(groups)
            for part in ("val", "test"):
                metrics = classification_metrics(part, self.num_classes, self.class_names, groups)
                setattr(self, f"{part}_metrics", metrics.to(self.device))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        is_synthetic = batch["is_synthetic"].bool()
        images, targets = self.mixer(batch["image"], batch["label"], is_synthetic)
        logits = self(images)
        loss, parts = real_synthetic_loss(logits, targets, is_synthetic, self.real_weight, self.label_smoothing)
        size = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/loss_{name}", value, batch_size=size)
        self.log("train/synthetic_fraction", is_synthetic.float().mean(), batch_size=size)
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

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probabilities = self(batch["image"]).softmax(dim=-1)
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
        keep = self._checkpoint_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.configure_model()
        missing = sorted(self._checkpoint_keys() - set(checkpoint["state_dict"]))
        if missing:
            raise BobInputError(
                f"the checkpoint lacks {len(missing)} trained weight(s) of this model, e.g. {missing[:3]}; "
                "was it made with another backbone or fine-tuning mode?"
            )

    def _checkpoint_keys(self) -> set[str]:
        """Trained parameters plus persistent buffers (e.g. batch-norm statistics)."""
        parameters = dict(self.named_parameters())
        trained = {name for name, p in parameters.items() if p.requires_grad}
        return trained | (set(self.state_dict()) - set(parameters))
