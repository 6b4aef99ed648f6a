"""Training steps that never make the host wait for the GPU (docs/finetuning.md, "What a training step costs").

On a GPU, every ``.item()``, ``int(t)``, ``float(t)``, ``bool(t)``, ``.tolist()``, ``.cpu()`` or
``.numpy()`` of a device tensor, and every boolean-mask index (its size is a device value), blocks
the host until the kernels queued before it have run: the next micro-batch cannot be queued
while the GPU works. A CPU run cannot feel that, so these tests count the calls: during each
training micro-batch of a real `Trainer` run (Lightning's ``epoch_loop.advance``; fetching the
batch from the DataLoader is host work and not counted), every such call is recorded with the line
that made it. Reads that stay on the host on a GPU too are allowed by where they come from
(`HOST_SIDE`): the optimizer's step counters and torchvision's CutMix/MixUp parameter draws are
CPU tensors by construction.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch import Callback
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import dataloader as torch_dataloader
from torchvision.transforms import v2

from bob.cli import main
from bob.data import ClassFolders
from bob.datamodules import FewShotDataModule
from bob.datamodules.real_images import HOST_FIELDS, RecordDataset, collate_samples, scale_images
from bob.modules import Classifier, LoRAFineTuner
from bob.modules.classifier.mixing import real_synthetic_loss
from tests.classifier_fixtures import clip_backbone, timm_backbone, write_classifier_config
from tests.fake_data import make_class_folders
from tests.t2i_fixtures import fit_config, make_world, one_torch_thread  # noqa: F401

#: Tensor methods that copy a value to the host (a device sync on a GPU).
READ_METHODS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__", "cpu", "numpy")
#: Code whose tensor reads are of CPU tensors on a GPU run too.
HOST_SIDE = (
    # torch.optim keeps `state["step"]` on the CPU (unless capturable/fused) and reads it each step.
    os.path.join("torch", "optim", ""),
    # CutMix/MixUp/RandomChoice draw lambda, the box and the choice from CPU generators.
    os.path.join("torchvision", "transforms", "v2", ""),
)
#: Frames between a read and the code that asked for it.
_PLUMBING = (
    os.path.join("torch", "_tensor.py"),
    os.path.join("torch", "overrides.py"),
    os.path.join("torch", "_ops.py"),
    os.path.join("torch", "utils", "_python_dispatch.py"),
    os.path.join("torch", "_dynamo", "eval_frame.py"),
)
_aten = torch.ops.aten
_MASK_INDEXING = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default, _aten._index_put_impl_.default}
_DATA_DEPENDENT = {_aten.nonzero.default, _aten.masked_select.default}


def _site() -> str:
    """``path:line`` of the innermost frame outside this file and torch's tensor plumbing."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename == __file__ or frame.f_code.co_filename.endswith(_PLUMBING)):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = frame.f_code.co_filename
    path = path.split("site-packages" + os.sep, 1)[-1].removeprefix(str(Path.cwd()) + os.sep)
    return f"{path}:{frame.f_lineno}"


class HostReads:
    """Host reads per training micro-batch, ``steps[i] = {"reads": [...], "logged": bool}``."""

    current: HostReads | None = None

    def __init__(self):
        self.active = False
        self.steps: list[dict[str, Any]] = []
        self.bar: dict[str, Any] = {}  # the progress bar's values at the end of training

    def record(self, kind: str) -> None:
        if not self.active:
            return
        site = _site()
        if not any(part in site.replace("/", os.sep) for part in HOST_SIDE):
            self.steps[-1]["reads"].append(f"{kind} at {site}")

    @property
    def reads(self) -> list[str]:
        return [read for step in self.steps for read in step["reads"]]


class CountMicroBatches(Callback):
    """Opens the count around each training micro-batch; marks those where metrics went to the logger."""

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        HostReads.current.bar = dict(trainer.progress_bar_metrics)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        counter = HostReads.current
        loop, connector = trainer.fit_loop.epoch_loop, trainer._logger_connector
        advance, log_metrics = loop.advance, connector.log_metrics

        def counted_advance(data_fetcher: Any) -> None:
            counter.steps.append({"reads": [], "logged": False})
            counter.active = True
            try:
                advance(data_fetcher)
            finally:
                counter.active = False

        def noted_log_metrics(metrics: Any, step: Any = None) -> None:
            if counter.active and metrics and trainer.loggers:
                counter.steps[-1]["logged"] = True
            log_metrics(metrics, step)

        loop.advance, connector.log_metrics = counted_advance, noted_log_metrics


class _MaskIndexing(TorchDispatchMode):
    """Records data-dependent ops: boolean-mask indexing, ``nonzero``, ``masked_select``."""

    def __init__(self, counter: HostReads):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.counter.active and (
            func in _DATA_DEPENDENT
            or func in _MASK_INDEXING
            and any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] if i is not None)
        ):
            self.counter.record(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def host_reads(monkeypatch):
    counter = HostReads()
    for name in READ_METHODS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counter.record(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    next_batch = torch_dataloader._BaseDataLoaderIter.__next__

    def fetch(self):  # loading and collating a batch is host work
        active, counter.active = counter.active, False
        try:
            return next_batch(self)
        finally:
            counter.active = active

    monkeypatch.setattr(torch_dataloader._BaseDataLoaderIter, "__next__", fetch)
    monkeypatch.setattr(HostReads, "current", counter)
    with _MaskIndexing(counter):
        yield counter


COUNT = {"class_path": f"{__name__}.CountMicroBatches"}


# ----------------------------------------------------------------- the LoRA fine-tuner
@pytest.mark.parametrize(
    "case",
    [
        # context prompts, trained text encoder, one cached latent per image (deterministic transform)
        {"world": {}, "model": {}, "epochs": 2},
        # class prompts, frozen text encoder (embedding cache), two cached views drawn from in epoch 3
        {"world": {"with_bank": False}, "model": {"prompt_mode": "class", "train_text_encoder": False,
                                                  "latent_cache_views": 2}, "epochs": 3},
    ],
    ids=["context", "class-frozen-text"],
)
def test_lora_micro_batches_read_no_device_values(tmp_path, tiny_sd_path, host_reads, case):
    world = make_world(tmp_path, **case["world"])
    trainer = {
        "max_steps": -1, "max_epochs": case["epochs"], "accumulate_grad_batches": 2, "log_every_n_steps": 1000,
        "enable_progress_bar": True,
    }
    config = fit_config(tmp_path, world, tiny_sd_path, model=case["model"], trainer=trainer, callbacks=[COUNT])
    cli = main(["fit", "-c", str(config)])
    assert len(host_reads.steps) == 3 * case["epochs"]  # 6 shots / batches of 2, per epoch
    assert cli.trainer.global_step == 2 * case["epochs"]
    assert host_reads.reads == []
    # The bar still shows a loss: the mean of the last finished epoch.
    assert "epoch_loss" in host_reads.bar


def test_lora_logging_reads_values_only_on_logged_steps(tmp_path, tiny_sd_path, host_reads):
    world = make_world(tmp_path)
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "logs")}}
    trainer = {"max_steps": 6, "accumulate_grad_batches": 2, "log_every_n_steps": 2, "logger": logger,
               "enable_progress_bar": True}
    main(["fit", "-c", str(fit_config(tmp_path, world, tiny_sd_path, trainer=trainer, callbacks=[COUNT]))])
    logged = [step for step in host_reads.steps if step["logged"]]
    quiet = [step for step in host_reads.steps if not step["logged"]]
    assert len(host_reads.steps) == 9 and len(logged) == 3  # optimizer steps 2, 4, 6 of 3 epochs
    assert all(step["reads"] == [] for step in quiet), quiet
    # At a logged step Lightning converts what is logged there (train/loss_step, train/lr) to numbers.
    assert all(len(step["reads"]) <= 2 for step in logged), logged


# ----------------------------------------------------------------- the classifier
def classifier_config(tmp_path: Path, backbone: dict[str, Any], model_args: dict[str, Any], **trainer: Any) -> Path:
    path = write_classifier_config(tmp_path, backbone, model_args=model_args, data_args={"real_repeats": 2})
    config = yaml.safe_load(path.read_text())
    config["trainer"].update(trainer)
    config["trainer"]["callbacks"].append(COUNT)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize(("backbone", "mix_prob"), [("timm", 0.0), ("timm", 1.0), ("clip", 1.0)])
def test_classifier_micro_batches_read_no_device_values(tmp_path, tiny_clip_path, host_reads, backbone, mix_prob):
    # 6 shots x 2 repeats + 12 synthetic images, batches of 8: both parts in (nearly) every batch.
    spec = timm_backbone() if backbone == "timm" else clip_backbone(tiny_clip_path, lora_rank=4)
    config = classifier_config(
        tmp_path, spec, {"mix_prob": mix_prob, "real_weight": 0.8}, max_epochs=2, log_every_n_steps=1000,
        enable_progress_bar=True,
    )
    main(["fit", "-c", str(config)])
    assert len(host_reads.steps) == 6
    assert host_reads.reads == []
    assert set(host_reads.bar) == {"epoch_loss"}


# ----------------------------------------------------------------- pieces
def test_classifier_orders_hand_made_batches_real_first():
    """A batch that did not come through `collate_samples` gives the same loss as before."""
    torch.manual_seed(0)
    model = Classifier(timm_backbone_module(), num_classes=3, image_size=32, mix_prob=0.0)
    model.configure_model(pretrained_weights=False)
    model.eval()  # batch norm: the same statistics whatever the order
    batch = {
        "image": torch.rand(5, 3, 32, 32),
        "label": torch.tensor([0, 1, 2, 2, 1]),
        "is_synthetic": torch.tensor([True, False, True, False, False]),
    }
    loss = model.training_step(batch, 0)
    real_first = torch.tensor([1, 3, 4, 0, 2])
    with torch.no_grad():
        expected, _ = real_synthetic_loss(
            model(batch["image"][real_first]), torch.nn.functional.one_hot(batch["label"][real_first], 3).float(), 3, 0.8
        )
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-6, atol=1e-7)


def timm_backbone_module():
    from bob.modules.classifier.timm_backbone import TimmBackbone

    return TimmBackbone(model_name="test_resnet", pretrained=False)


@pytest.fixture
def root(tmp_path):
    return make_class_folders(tmp_path / "data", ["alpha", "beta", "gamma"], train_per_class=6, test_per_class=2)


def fewshot(root: Path, tmp_path: Path, **kwargs: Any) -> FewShotDataModule:
    options = {"shots": 2, "val_per_class": 2, "image_size": 16, "batch_size": 4, "num_workers": 0,
               "split_file": str(tmp_path / "split.json"), **kwargs}
    datamodule = FewShotDataModule(ClassFolders(root, descriptor="bird", name="toy"), **options)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_batches_carry_host_labels_with_real_images_first():
    samples = [
        {"image": torch.zeros(3, 2, 2), "label": 2, "sample_id": "s/0", "is_synthetic": True},
        {"image": torch.ones(3, 2, 2), "label": 0, "sample_id": "r/0", "is_synthetic": False},
        {"image": torch.zeros(3, 2, 2), "label": 1, "sample_id": "s/1", "is_synthetic": True},
        {"image": torch.ones(3, 2, 2), "label": 1, "sample_id": "r/1", "is_synthetic": False},
    ]
    batch = collate_samples(samples)
    assert batch["sample_id"] == ["r/0", "r/1", "s/0", "s/1"]  # stable: each part keeps its order
    assert batch["label"].tolist() == [0, 1, 2, 1] and batch["is_synthetic"].tolist() == [False, False, True, True]
    assert batch[HOST_FIELDS] == {"label": [0, 1, 2, 1], "num_real": 2}
    assert batch["image"][:2].eq(1).all() and batch["image"][2:].eq(0).all()


def test_uint8_images_scale_on_the_device_exactly_as_before(root, tmp_path):
    """The classifier's augmentation, then /255 and the backbone's normalisation: the same numbers either way."""
    datamodule = fewshot(root, tmp_path)
    transform = v2.Compose([v2.RandomResizedCrop(16, scale=(0.25, 1.0), antialias=True), v2.ColorJitter(0.4, 0.4),
                            v2.RandomHorizontalFlip()])
    records = datamodule.split.train
    torch.manual_seed(3)
    before = collate_samples([RecordDataset(records, transform)[i] for i in range(len(records))])
    torch.manual_seed(3)
    raw = collate_samples([RecordDataset(records, transform, uint8_images=True)[i] for i in range(len(records))])
    assert raw["image"].dtype == torch.uint8 and before["image"].dtype == torch.float32
    after = scale_images(raw["image"])
    assert after.dtype == torch.float32
    torch.testing.assert_close(after, before["image"], rtol=0, atol=0)
    # The classifier's normalisation (in its backbone) of either batch: the same logits.
    model = Classifier(timm_backbone_module(), num_classes=3, image_size=16)
    model.configure_model(pretrained_weights=False)
    model.backbone.set_normalization([0.48, 0.46, 0.41], [0.27, 0.26, 0.28])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(raw["image"]), model(before["image"]), rtol=0, atol=1e-6)
    # A transform that already ends in float keeps its float images.
    floats = RecordDataset(records, v2.Compose([v2.ToDtype(torch.float32, scale=True)]), uint8_images=True)
    assert floats[0]["image"].dtype == torch.float32


def attach(datamodule: FewShotDataModule, accelerator: Any, module: Any) -> None:
    datamodule.trainer = SimpleNamespace(accelerator=accelerator, lightning_module=module, logger=None)


def test_dataloaders_pin_memory_on_cuda_and_serve_uint8_to_modules_that_scale(root, tmp_path):
    datamodule = fewshot(root, tmp_path)
    assert not datamodule.train_dataloader().pin_memory  # no trainer: as before
    assert datamodule.train_dataloader().dataset.uint8_images is False
    attach(datamodule, CUDAAccelerator(), LoRAFineTuner(prompt_names=["a", "b", "c"], prompt_mode="class"))
    assert datamodule.train_dataloader().pin_memory and datamodule.val_dataloader().pin_memory
    assert datamodule.train_dataloader().dataset.uint8_images is True
    attach(datamodule, CPUAccelerator(), torch.nn.Module())
    assert not datamodule.train_dataloader().pin_memory
    assert datamodule.train_dataloader().dataset.uint8_images is False  # a module that does not scale them
    assert not fewshot(root, tmp_path, pin_memory=False).train_dataloader().pin_memory


# ----------------------------------------------------------------- prompts
def test_prompts_come_from_host_labels_and_are_tokenised_once(tmp_path, tiny_sd_path):
    model = LoRAFineTuner(base_model=str(tiny_sd_path), prompt_names=["boeing", "cessna"], descriptor="aircraft",
                          unet_rank=4, text_encoder_rank=4)
    model.configure_model()
    batch = {"label": torch.tensor([1, 0, 1]), "background": ["sea", "sky", "sea"], "pose": ["landing"] * 3}
    expected = model.batch_prompts(batch)
    host = {**batch, HOST_FIELDS: {"label": [1, 0, 1], "num_real": 3}, "label": torch.tensor([9, 9, 9])}
    assert model.batch_prompts(host) == expected  # the host copy is what is read
    assert expected[0] == expected[2] == "an aircraft photo of a cessna in the sea background with the landing pose"

    calls = []
    tokenizer = model.parts.tokenizer
    original = type(tokenizer).__call__

    def counting(self, text, *args, **kwargs):
        calls.append(text)
        return original(self, text, *args, **kwargs)

    type(tokenizer).__call__ = counting
    try:
        (first,) = model.encode_prompts(expected)
        (again,) = model.encode_prompts(expected[::-1])
    finally:
        type(tokenizer).__call__ = original
    assert len(calls) == 2 * 2  # two distinct prompts, each tokenised once padded and once to count its length
    torch.testing.assert_close(again, first.flip(0))
    reference = tokenizer(expected, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                          return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(first, model.text_encoder(reference.input_ids)[0])


def test_clip_prompt_features_need_no_padding_mask(tiny_clip_path):
    """The text tower is causal: the end token's state, the prompt feature, is the same with and
    without the padding mask the backbone no longer passes."""
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(tiny_clip_path).eval()
    tokens = CLIPTokenizer.from_pretrained(tiny_clip_path)(
        ["a photo of a cat", "a photo of a much longer class name here"], padding=True, return_tensors="pt"
    )
    assert (tokens.attention_mask == 0).any()  # the short prompt is padded
    with torch.no_grad():
        masked = model.text_model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).pooler_output
        unmasked = model.text_model(input_ids=tokens.input_ids).pooler_output
    torch.testing.assert_close(unmasked, masked)
