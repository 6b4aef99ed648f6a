"""What a module or callback may ask of its DataModule: small protocols and one checked accessor."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from bob.data.caption_bank import CaptionBank
from bob.data.datasets.base import DatasetReader
from bob.data.errors import BobInputError
from bob.data.generation_plan import GenerationPlan, PlanItem
from bob.data.records import ImageRecord
from bob.data.splits import FewShotSplit
from bob.data.synthetic_set import SyntheticSetFolder

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

Data = TypeVar("Data")
_ABSENT = object()

#: Values that must agree between data and model: the CLI links them from the data into the
#: model (a model without such an argument does not receive them).
LINKED_VALUES = ("class_names", "prompt_names", "descriptor", "num_classes", "image_size")


@runtime_checkable
class StageData(Protocol):
    """Few-shot real data and the run paths made from it; every bob DataModule (`FewShotDataModule`) has it."""

    dataset: DatasetReader
    seed: int
    batch_size: int
    train_transform: Callable | None
    caption_bank_path: str | None

    @property
    def class_names(self) -> list[str]: ...

    @property
    def descriptor(self) -> str: ...

    @property
    def sampling(self) -> str: ...

    @property
    def split(self) -> FewShotSplit: ...

    @property
    def split_file(self) -> Path: ...

    @property
    def caption_bank(self) -> CaptionBank | None: ...

    def path_values(self) -> dict[str, Any]: ...

    def format_path(self, template: str, setting: str = "path") -> Path: ...


@runtime_checkable
class CaptionData(StageData, Protocol):
    """The images a caption bank must describe, served without those already captioned (`CaptionDataModule`)."""

    @property
    def caption_targets(self) -> list[ImageRecord]: ...

    def exclude_from_predict(self, sample_ids: Collection[str]) -> None: ...


@runtime_checkable
class GenerationData(StageData, Protocol):
    """A synthetic set's prompt plan and output folder (`GenerationDataModule`)."""

    output_dir: Path
    folder: SyntheticSetFolder
    num_pending: int

    @property
    def plan(self) -> GenerationPlan: ...

    def pending_items(self) -> list[PlanItem]: ...

    def identity(self) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class TrainingPoolData(StageData, Protocol):
    """Real shots pooled with a synthetic set for the classifier (`RealSyntheticDataModule`)."""

    @property
    def synthetic_folder(self) -> Path | None: ...

    def use_synthetic_folder(self, folder: Path) -> None: ...

    def pool_summary(self) -> dict[str, Any]: ...


def protocol_members(protocol: type) -> list[str]:
    """The public attributes and methods a protocol declares, its bases' included."""
    names: list[str] = []
    for base in reversed(protocol.__mro__):
        if not getattr(base, "_is_protocol", False) or base is Protocol:
            continue
        for name in (*base.__dict__.get("__annotations__", {}), *base.__dict__):
            if not name.startswith("_") and name not in names:
                names.append(name)
    return names


def offers(datamodule: object, need: type) -> bool:
    """Whether ``datamodule`` has every member of the protocol ``need`` (looked up, not run)."""
    return all(inspect.getattr_static(datamodule, name, _ABSENT) is not _ABSENT for name in protocol_members(need))


def as_stage_data(datamodule: object, user: str, need: type[Data]) -> Data:
    """``datamodule`` as ``need`` (a protocol above, or a DataModule class), or an error naming what is missing.

    Members are looked up without running them (``isinstance`` on a protocol would evaluate
    properties such as ``split``, which read files).
    """
    if datamodule is None:
        raise BobInputError(
            f"{user} takes its data from a DataModule ({need.__name__}), but the trainer has none; "
            "give a `data:` section in the config (or `datamodule=` to the trainer call)"
        )
    if getattr(need, "_is_protocol", False):
        missing = [name for name in protocol_members(need) if inspect.getattr_static(datamodule, name, _ABSENT) is _ABSENT]
        if missing:
            what = (inspect.getdoc(need) or "").splitlines()[0].rstrip(".")
            raise BobInputError(
                f"{user} needs a DataModule that offers {need.__name__} ({what[:1].lower() + what[1:]}); "
                f"{type(datamodule).__name__} lacks {', '.join(missing)}"
            )
    elif not isinstance(datamodule, need):
        raise BobInputError(
            f"{user} needs a {need.__name__}, got {type(datamodule).__name__}; "
            f"use `data: {{class_path: {need.__name__}, ...}}`"
        )
    return datamodule  # type: ignore[return-value]


def stage_data(trainer: Trainer | None, user: str, need: type[Data] = StageData) -> Data:  # type: ignore[assignment]
    """The trainer's DataModule as ``need``; ``user`` (the module or callback asking) names the error."""
    return as_stage_data(trainer.datamodule if trainer is not None else None, user, need)


def _called(method: Callable[[], Any]) -> Any:
    return method()


def link_data_to_model(parser: Any) -> None:
    """Link `LINKED_VALUES` and the data's run-path placeholder values into the model.

    A model that fills run-path templates itself (the generator's ``lora``) takes the data's
    `StageData.path_values` as its ``path_values`` argument.
    """
    for name in LINKED_VALUES:
        parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
    parser.link_arguments("data.path_values", "model.init_args.path_values", compute_fn=_called, apply_on="instantiate")
