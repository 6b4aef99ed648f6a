"""Measures a synthetic image set against real images: per-class FID, KID, diversity and context dependence."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from bob.data.errors import BobInputError
from bob.datamodules.surface import stage_data
from bob.datamodules.synthetic_quality import SyntheticQualityDataModule
from bob.metrics.distribution import DiversityDistance
from bob.metrics.extractors import FeatureExtractor
from bob.metrics.feature_cache import CachedFeatures, RealFeatureCache
from bob.metrics.gather import FeatureBank, gather_objects
from bob.metrics.quality_report import QualitySettings, context_dependence, measure_classes, summarise
from bob.metrics.report_files import check_comparable, comparison, load_report, write_report
from bob.versions import package_versions

log = logging.getLogger(__name__)

ContextReader = Callable[[Tensor], str]
#: overall numbers sent to the logger as metrics (the report files hold everything).
LOGGED_OVERALL = (
    "fid_mean", "fid_median", "fid_pooled", "kid_mean", "kid_pooled",
    "diversity_synthetic_mean", "diversity_real_mean", "num_classes_fid", "num_classes_kid",
)


def _reader_identity(reader: ContextReader | None) -> str | None:
    """Names the context reader for the cache key: a function by its import path, an instance
    by its class and, when the class defines one, its repr (which dataclasses fill with arguments)."""
    if reader is None:
        return None
    if inspect.isfunction(reader) or inspect.ismethod(reader):
        return f"{reader.__module__}.{reader.__qualname__}"
    kind = type(reader)
    name = f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}:{reader!r}" if kind.__repr__ is not object.__repr__ else name


class SyntheticQuality(LightningModule):
    """How close a synthetic set is to real images of the same classes; run with ``test``.

    Per class: FID and KID between the class's real and synthetic features, and the diversity
    (mean pairwise feature distance) of both; overall: the means over classes (the paper's
    per-class FID) and FID/KID of the pooled sets. With a ``context_reader``, the normalised
    mutual information between class and the context read from each image; from the synthetic
    manifest, the same for the class of the real image whose captions prompted each image.
    Results go to the logger and to ``<report_name>.json`` / ``.md`` in the synthetic folder.
    Real-image features are cached, so measuring several sets against one split reads the
    real images once.

    Args:
        extractor: the feature extractor (``InceptionFeatures``, ``CLIPImageFeatures``,
            ``DINOv2Features``).
        kid_subset_size: images per KID subset within a class; classes with fewer real or
            synthetic images get no KID (a warning says which).
        kid_subsets: KID subsets drawn per class.
        fid_min_images: fewest real and synthetic images a class needs for FID (at least 2).
        diversity_distance: ``cosine`` (1 - cosine similarity) or ``euclidean``.
        context_reader: a callable taking one image (float CHW tensor in [0, 1], on the CPU)
            and returning its context label, e.g. a background name; chosen by ``class_path``
            (a class whose instances are callable) or as an import path of a function.
        feature_cache: folder for cached real-image features; null recomputes them every run.
        report_name: file name (without suffix) of the report in the synthetic folder; null
            gives ``quality-<extractor>`` (``quality-inception``...).
        compare_with: other synthetic sets already measured with the same settings, as
            ``name: folder`` (placeholders as in ``data.synthetic``); the report puts their
            numbers beside this set's and counts the classes where this set is better.
        seed: seed of the KID subsets.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        kid_subset_size: int = 10,
        kid_subsets: int = 100,
        fid_min_images: int = 2,
        diversity_distance: DiversityDistance = "cosine",
        context_reader: ContextReader | None = None,
        feature_cache: str | None = "runs/quality_cache",
        report_name: str | None = None,
        compare_with: dict[str, str] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if kid_subset_size < 1 or kid_subsets < 1:
            raise BobInputError(f"kid_subset_size and kid_subsets must be at least 1, got {kid_subset_size} and {kid_subsets}")
        if fid_min_images < 2:
            raise BobInputError(f"fid_min_images must be at least 2 (a covariance needs two images), got {fid_min_images}")
        self.extractor = extractor
        self.settings = QualitySettings(kid_subset_size, kid_subsets, fid_min_images, diversity_distance, seed)
        self.context_reader = context_reader
        self.feature_cache = RealFeatureCache(feature_cache) if feature_cache else None
        self.report_name = report_name or f"quality-{extractor.short_name}"
        self.compare_with = dict(compare_with or {})
        self.bank = FeatureBank()
        self._cached: CachedFeatures | None = None
        self._contexts: list[tuple[int, str]] = []

    def _data(self) -> SyntheticQualityDataModule:
        return stage_data(self.trainer, "SyntheticQuality", SyntheticQualityDataModule)

    def cache_identity(self) -> dict[str, Any]:
        data = self._data()
        return {
            "real": data.real_fingerprint(),
            "extractor": self.extractor.identity(),
            "context_reader": _reader_identity(self.context_reader),
        }

    def report_identity(self, data: SyntheticQualityDataModule) -> dict[str, Any]:
        """What the numbers depend on besides the synthetic set: compared before two reports are."""
        return {
            "extractor": self.extractor.identity(),
            "real": {
                "dataset": data.dataset.name,
                "part": data.real_part,
                "split_file": str(data.split_file),
                "fingerprint": data.real_fingerprint(),
            },
            "settings": self.settings.to_dict(),
        }

    def setup(self, stage: str) -> None:
        if stage != "test":
            raise BobInputError(f"SyntheticQuality runs with `python main.py test ...`, not {stage!r}")
        data = self._data()
        for template in self.compare_with.values():
            # Fail now, not after the feature pass.
            folder = data.format_path(template)
            check_comparable(self.report_identity(data), load_report(folder, self.report_name), folder)
        self._cached = None
        if self.feature_cache is not None:
            labels = torch.tensor([r.label for r in data.real_records], dtype=torch.long)
            identity = self.cache_identity()
            found = self.feature_cache.load(identity, labels) if self.trainer.is_global_zero else None
            # Every rank must agree, or their dataloaders would differ in length.
            if self.trainer.strategy.broadcast(found is not None):
                found = found or self.feature_cache.load(identity, labels)
                if found is None:
                    raise BobInputError(
                        f"rank {self.global_rank} cannot read the real-feature cache that rank 0 found in "
                        f"{self.feature_cache.folder}; put feature_cache on a filesystem every node shares"
                    )
                self._cached = found
                log.info("real features of %d images read from %s", len(found.features), self.feature_cache.path(identity))
        data.include_real = self._cached is None

    def configure_model(self) -> None:
        if not self.extractor.loaded:
            self.extractor.load()

    def on_test_epoch_start(self) -> None:
        self.bank.reset()
        self._contexts = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        features = self.extractor(batch["image"])
        self.bank.update(features, batch["label"], batch["index"], torch.as_tensor(batch["is_synthetic"]))
        if self.context_reader is not None:
            images = batch["image"].float().cpu()
            self._contexts += [(int(i), str(self.context_reader(image))) for i, image in zip(batch["index"].tolist(), images, strict=True)]

    def on_test_epoch_end(self) -> None:
        data = self._data()
        gathered = {k: v.cpu() for k, v in self.bank.compute().items()}
        contexts: dict[int, str] = {}
        for part in gather_objects(self._contexts):
            contexts.update(part)
        num_real = len(data.real_records)
        synthetic = gathered["synthetic"]
        if self._cached is None:
            real = CachedFeatures(
                gathered["features"][~synthetic],
                gathered["labels"][~synthetic],
                [contexts[i] for i in range(num_real)] if self.context_reader is not None else None,
            )
            if len(real.features) != num_real:
                raise RuntimeError(f"gathered {len(real.features)} real features for {num_real} real images; every image must be read once (no limit_test_batches)")
            if self.feature_cache is not None and self.trainer.is_global_zero:
                path = self.feature_cache.save(self.cache_identity(), real)
                log.info("real features of %d images cached in %s", num_real, path)
        else:
            real = self._cached
        fake_features, fake_labels = gathered["features"][synthetic], gathered["labels"][synthetic]
        if len(fake_features) != len(data.synthetic_records):
            raise RuntimeError(f"gathered {len(fake_features)} synthetic features for {len(data.synthetic_records)} images; every image must be read once (no limit_test_batches)")
        fake_contexts = [contexts[num_real + j] for j in range(len(fake_features))] if self.context_reader else None
        report = self.build_report(data, real, fake_features, fake_labels, fake_contexts)
        self.log_report(report)
        if self.trainer.is_global_zero:
            json_path, markdown_path = write_report(data.synthetic_folder, self.report_name, report)
            log.info("quality report written to %s and %s", json_path, markdown_path)

    def build_report(
        self,
        data: SyntheticQualityDataModule,
        real: CachedFeatures,
        fake: Tensor,
        fake_labels: Tensor,
        fake_contexts: list[str] | None,
    ) -> dict[str, Any]:
        rows = measure_classes(data.class_names, real.features, real.labels, fake, fake_labels, self.settings, self.trainer.is_global_zero)
        report: dict[str, Any] = {
            "name": data.synthetic_folder.name,
            **self.report_identity(data),
            "synthetic": {
                "folder": str(data.synthetic_folder),
                "identity": data.synthetic_summary().get("identity"),
                "max_images_per_class": data.max_images_per_class,
            },
            "versions": package_versions(),
            "overall": summarise(rows, real.features, real.labels, fake, fake_labels, self.settings),
            "context": self.context_section(data, real, fake_labels, fake_contexts),
            "classes": rows,
        }
        report["comparisons"] = {}
        for name, template in self.compare_with.items():
            folder = data.format_path(template)
            report["comparisons"][name] = comparison(report, load_report(folder, self.report_name), str(folder))
        return report

    def context_section(
        self, data: SyntheticQualityDataModule, real: CachedFeatures, fake_labels: Tensor, fake_contexts: list[str] | None
    ) -> dict[str, Any]:
        names = data.class_names
        section: dict[str, Any] = {"detected_synthetic": None, "detected_real": None, "prompted": None, "notes": []}
        if fake_contexts is not None and real.contexts is not None:
            section["detected_synthetic"] = context_dependence([names[i] for i in fake_labels.tolist()], fake_contexts)
            section["detected_real"] = context_dependence([names[i] for i in real.labels.tolist()], real.contexts)
        else:
            section["notes"].append("no context_reader: the context shown in the images was not measured")
        source_class = {r.sample_id: r.class_name for r in data.split.train}
        pairs = [
            (r.class_name, source_class[e["context_source"]])
            for r, e in zip(data.synthetic_records, data.synthetic_entries, strict=True)
            if e.get("context_source") in source_class
        ]
        if pairs:
            section["prompted"] = context_dependence([p[0] for p in pairs], [p[1] for p in pairs])
            if len(pairs) < len(data.synthetic_records):
                section["notes"].append(f"{len(data.synthetic_records) - len(pairs)} synthetic images have no captioned real source")
        else:
            section["notes"].append("the synthetic manifest names no captioned real image as context source (class-only prompts or invented contexts)")
        return section

    def log_report(self, report: dict[str, Any]) -> None:
        """Overall numbers as metrics (every rank has the same ones); on W&B also the per-class
        table and a histogram of per-class FID (the paper's Figure 5), from rank 0."""
        scalars = {f"quality/{k}": float(report["overall"][k]) for k in LOGGED_OVERALL if report["overall"][k] is not None}
        for key in ("detected_synthetic", "detected_real", "prompted"):
            if report["context"][key] is not None:
                scalars[f"quality/context_nmi_{key}"] = report["context"][key]["nmi"]
                scalars[f"quality/context_cramers_v_{key}"] = report["context"][key]["cramers_v"]
        self.log_dict(scalars, sync_dist=True)
        if not self.trainer.is_global_zero:
            return
        fid = [row["fid"] for row in report["classes"] if row["fid"] is not None]
        columns = ["class", "real", "synthetic", "fid", "kid", "diversity_synthetic", "diversity_real"]
        table = [
            [row["class_name"], row["num_real"], row["num_synthetic"], row["fid"], row["kid"], row["diversity_synthetic"], row["diversity_real"]]
            for row in report["classes"]
        ]
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.log_table("quality/per_class", columns=columns, data=table)
                if fid:
                    logger.experiment.log({"quality/fid_per_class": wandb.Histogram(fid)})
