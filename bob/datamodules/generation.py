"""The generation DataModule: the prompt plan of a synthetic set, serving the images not yet made."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from bob.data.caption_bank import RECORDS_FILE
from bob.data.datasets.base import DatasetReader
from bob.data.errors import BobInputError
from bob.data.fingerprints import file_sha256
from bob.data.generation_plan import (
    Context,
    ContextStrategy,
    GenerationPlan,
    GenerationPlanError,
    PlanItem,
    SeedScope,
    images_per_class,
    load_context_file,
)
from bob.data.prompts import CLASS_TEMPLATE, CONTEXT_TEMPLATE, PromptTemplate
from bob.data.synthetic_set import ImageFormat, SyntheticSetFolder
from bob.datamodules.fewshot import FewShotDataModule

log = logging.getLogger(__name__)

#: Images per batch when ``batch_size`` is automatic and the device is not a GPU (or the model
#: cannot measure its memory).
DEFAULT_BATCH_SIZE = 8
#: Most images per batch the automatic batch size picks: beyond it a GPU is already full of work.
MAX_AUTO_BATCH_SIZE = 64
#: Share of the free GPU memory the automatic batch size plans to use (the rest: fragmentation,
#: kernel workspaces, the estimate's error).
MEMORY_MARGIN = 0.8


def batch_size_for_memory(
    free_bytes: int, bytes_per_image: int, cap: int = MAX_AUTO_BATCH_SIZE, fixed_bytes: int = 0,
    margin: float = MEMORY_MARGIN,
) -> int:
    """Images per batch that fit in ``margin`` of ``free_bytes`` when a batch of n images needs
    ``fixed_bytes + n * bytes_per_image``; at least 1 (a batch that does not fit fails loudly
    rather than silently), at most ``cap``."""
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    if bytes_per_image <= 0:
        return cap
    fitting = int((free_bytes * margin - fixed_bytes) // bytes_per_image)
    return max(1, min(cap, fitting))


class PlanDataset(Dataset):
    """Plan items as dict samples: ``sample_id`` (the item key), ``label``, ``seed``, ``prompt``.

    ``padding`` empty samples (``sample_id`` ""), which the generator skips, follow the items.
    """

    def __init__(self, items: list[PlanItem], padding: int = 0):
        self.items = items
        self.padding = padding

    def __len__(self) -> int:
        return len(self.items) + self.padding

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index >= len(self.items):
            return {"sample_id": "", "label": -1, "seed": 0, "prompt": ""}
        item = self.items[index]
        return {"sample_id": item.key, "label": item.label, "seed": item.seed, "prompt": item.prompt}


class GenerationDataModule(FewShotDataModule):
    """What to generate and where: a prompt plan over the few-shot split, and the output folder.

    The plan has one item per synthetic image (class, index, context, seed, prompt; see
    `GenerationPlan`). ``predict`` serves only the items whose image is not in ``output_dir``
    yet, so a killed run resumes where it stopped; under DDP Lightning gives each rank a
    disjoint share.

    Args:
        dataset: the dataset reader (``class_path: FGVCAircraft``, ``ClassFolders``...).
        output_dir: the synthetic set's folder (created; resumed when it holds a partial set
            made by the same recipe, refused when made by another). ``{dataset}``,
            ``{sampling}`` (``5shot``, ``lt100``...), ``{arm}`` and the other placeholders of
            ``split_file`` are filled in.
        strategy: where each prompt's context comes from: ``marginal`` (BOB: uniform over the
            whole bank, background and pose kept together), ``within_class`` (only the class's
            own captions), ``none`` (class-only prompts, DataDream), ``fixed`` (``context_file``).
        images_per_class: images per class, or class name -> count.
        top_up_to: the long-tail rule, used for long-tail splits (``imbalance_factor``) in place
            of ``images_per_class``: class c gets ``max(0, top_up_to - real_repeats * n_real(c))``
            images, so tail classes get the most (the paper: 200).
        context_file: contexts for the ``fixed`` strategy: JSON lines or a TSV with a header
            of attribute names (``background``, ``pose``).
        prompt_template: ``str.format`` template; None takes the fine-tuning stage's templates
            (class + context, or class only for ``none``).
        generation_seed: global seed every image's noise and context draw derive from.
        seed_scope: ``image``: each image its own seed from (generation_seed, class, index), so
            no two images share noise or a context draw. ``index``: image i of every class
            shares them, as in the authors' script, which reseeded before each class
            (docs/parity.md).
        image_format: ``png`` (lossless), ``jpg`` or ``webp``.
        image_quality: JPEG / WebP quality.
        batch_size: images generated per batch on each device. None (automatic): on a GPU, as
            many as fit in 80% of its free memory once the model is loaded (measured with two
            one-step probe batches, see `SyntheticImageGenerator.measure_image_memory`), at most
            64, the smallest over the ranks; elsewhere 8. The choice is logged. Images do not
            depend on the batch (within one grey level), nor on this choice.
        num_workers: dataloader workers (the plan is in memory; 0 is right).
        **kwargs: the split arguments of `FewShotDataModule` (shots, seed, split_file,
            imbalance_factor, real_repeats, arm...) and ``caption_bank``, the bank the
            ``marginal`` and ``within_class`` strategies draw contexts from.
    """

    def __init__(
        self,
        dataset: DatasetReader,
        output_dir: str,
        strategy: ContextStrategy = "marginal",
        images_per_class: int | dict[str, int] = 100,
        top_up_to: int | None = None,
        context_file: str | None = None,
        prompt_template: str | None = None,
        generation_seed: int = 0,
        seed_scope: SeedScope = "image",
        image_format: ImageFormat = "png",
        image_quality: int = 95,
        batch_size: int | None = None,
        num_workers: int = 0,
        **kwargs: Any,
    ):
        if batch_size is not None and batch_size < 1:
            raise BobInputError(f"batch_size must be at least 1 (or null: automatic), got {batch_size}")
        # Until `predict_dataloader` measures the device, an automatic size reads as the CPU default.
        super().__init__(
            dataset, batch_size=batch_size or DEFAULT_BATCH_SIZE, num_workers=num_workers, verify_shots=False, **kwargs
        )
        #: the configured batch size; None: chosen from the device's memory (`choose_batch_size`)
        self.requested_batch_size = batch_size
        self.output_dir = self.format_path(output_dir, "output_dir")
        self.strategy = strategy
        self.images_per_class = images_per_class
        self.top_up_to = top_up_to
        self.context_file = context_file
        self.prompt_template = prompt_template
        self.generation_seed = generation_seed
        self.seed_scope = seed_scope
        self.folder = SyntheticSetFolder(self.output_dir, image_format, image_quality)
        self._plan: GenerationPlan | None = None
        #: images this predict run was asked to make, over all ranks (set by `predict_dataloader`)
        self.num_pending = 0

    @property
    def plan(self) -> GenerationPlan:
        """The full plan, built on first use from the split and the contexts (cheap: no images)."""
        if self._plan is None:
            self._plan = self._build_plan()
        return self._plan

    def _contexts(self) -> list[Context]:
        if self.strategy == "none":
            return []
        if self.strategy == "fixed":
            if self.context_file is None:
                raise GenerationPlanError("strategy 'fixed' needs context_file (JSON lines or TSV of contexts)")
            return load_context_file(self.context_file)
        bank = self.caption_bank
        if bank is None:
            raise GenerationPlanError(
                f"strategy {self.strategy!r} draws contexts from the caption bank: set caption_bank to the "
                "caption stage's output folder (or use strategy 'none' for class-only prompts)"
            )
        return [Context(dict(r.attributes), r.sample_id, r.class_name) for r in bank.records.values()]

    def _build_plan(self) -> GenerationPlan:
        template = self.prompt_template or (CLASS_TEMPLATE if self.strategy == "none" else CONTEXT_TEMPLATE)
        top_up_to = self.top_up_to if self.imbalance_factor is not None else None
        counts = images_per_class(
            self.class_names, self.split.train_counts(), self.images_per_class, top_up_to,
            self.real_repeats if top_up_to is not None else 1,
        )
        plan = GenerationPlan(
            self.class_names, self.prompt_names, counts, PromptTemplate(template, self.descriptor),
            self.strategy, self._contexts(), self.generation_seed, self.seed_scope,
        )
        log.info("generation plan: %d images over %d classes, strategy %s", len(plan), len(counts), self.strategy)
        return plan

    def identity(self) -> dict[str, Any]:
        """Everything about the plan and the files that a resumed run must share."""
        return {
            "plan_fingerprint": self.plan.fingerprint,
            "class_names": self.class_names,
            "image_format": self.folder.image_format,
            "image_quality": self.folder.quality if self.folder.image_format != "png" else None,
        }

    def describe(self) -> dict[str, Any]:
        """What made the plan, with input fingerprints, for ``manifest.json``."""
        bank = Path(self.caption_bank_path) / RECORDS_FILE if self.caption_bank_path and self.strategy in (
            "marginal", "within_class") else None
        return {
            "class_names": self.class_names,
            "plan": self.plan.describe(),
            "inputs": {
                "dataset": self.dataset.name,
                "split_file": str(self.split_file),
                "split_sha256": file_sha256(self.split_file) if self.split_file.is_file() else None,
                "shots": self.shots,
                "caption_bank": str(self.caption_bank_path) if bank else None,
                "caption_bank_sha256": file_sha256(bank) if bank else None,
                "context_file": self.context_file if self.strategy == "fixed" else None,
            },
        }

    def prepare_data(self) -> None:
        super().prepare_data()
        _ = self.plan

    def setup(self, stage: str) -> None:
        super().setup(stage)
        _ = self.plan

    def pending_items(self) -> list[PlanItem]:
        """Planned items whose image is not finished in the output folder."""
        done = self.folder.done_keys()
        return [item for item in self.plan.items if item.key not in done]

    def predict_dataloader(self) -> DataLoader:
        pending = self.pending_items()
        trainer = self.trainer
        if trainer is not None:
            # Every rank must split the same list; rank 0's view of the folder decides.
            pending = trainer.strategy.broadcast(pending, src=0)
        self.num_pending = len(pending)
        log.info("%d of %d planned images to generate", len(pending), len(self.plan))
        # Lightning's predict sampler fails on a rank with no sample (fewer images than ranks).
        world = trainer.world_size if trainer is not None else 1
        padding = world - len(pending) if 0 < len(pending) < world else 0
        if self.requested_batch_size is None and pending and trainer is not None:
            self.batch_size = self.choose_batch_size(trainer)
        return self.make_dataloader(PlanDataset(pending, padding), shuffle=False)

    def choose_batch_size(self, trainer: Any) -> int:
        """The automatic batch size on ``trainer``'s device, the model loaded (every rank calls it).

        On CUDA: from the free memory and the model's measured cost per image
        (``measure_image_memory``), the smallest over the ranks. Elsewhere, or for a model
        that cannot measure itself: ``DEFAULT_BATCH_SIZE``.
        """
        device = trainer.strategy.root_device
        measure = getattr(trainer.lightning_module, "measure_image_memory", None)
        cost = measure() if device.type == "cuda" and measure is not None else None
        if cost is None:
            log.info("batch size %d (automatic; %s)", DEFAULT_BATCH_SIZE,
                     "not a GPU" if device.type != "cuda" else "the model cannot measure its memory")
            return DEFAULT_BATCH_SIZE
        fixed, per_image = cost
        free, _ = torch.cuda.mem_get_info(device)
        size = batch_size_for_memory(free, per_image, fixed_bytes=fixed)
        if trainer.world_size > 1:
            size = int(trainer.strategy.all_gather(torch.tensor(size, device=device)).min())
        gib = 2**30
        log.info(
            "batch size %d (automatic: %.1f GiB free on %s, %.2f GiB per image + %.2f GiB per batch, %.0f%% of it "
            "planned, at most %d, smallest over %d rank(s))",
            size, free / gib, device, per_image / gib, fixed / gib, 100 * MEMORY_MARGIN, MAX_AUTO_BATCH_SIZE,
            trainer.world_size,
        )
        return size
