"""Stage 3's speed options (compile_unet, channels_last, vae_slicing), the automatic batch size,
and the generation benchmark's clock; CPU only, tiny random models."""

import contextlib
import logging
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bob.datamodules.generation import (
    DEFAULT_BATCH_SIZE,
    MAX_AUTO_BATCH_SIZE,
    GenerationDataModule,
    batch_size_for_memory,
)
from tests.generation_world import (  # noqa: F401
    CLASSES,
    SHOTS,
    generation_config,
    make_world,
    save_tiny_lora,
    single_thread,
)

pytestmark = pytest.mark.usefixtures("single_thread")

GIB = 2**30
PROMPTS = ["an aircraft photo of a beta in a field", "an aircraft photo of a gamma on a runway", "a photo"]
SEEDS = [3, 4, 5]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_sd_path):
    root = tmp_path_factory.mktemp("speed_world")
    return {**make_world(root), "sd": tiny_sd_path, "lora": save_tiny_lora(tiny_sd_path, root / "lora")}


def generator(world, **options):
    from bob.modules.generator import SyntheticImageGenerator

    module = SyntheticImageGenerator(str(world["sd"]), lora=str(world["lora"]), num_inference_steps=3, **options)
    module.load("cpu")
    return module


@pytest.fixture(scope="module")
def plain_images(world):
    """The images with every speed option off."""
    return generator(world, vae_slicing=False).generate(PROMPTS, SEEDS).astype(np.int16)


def assert_same_images(images: np.ndarray, reference: np.ndarray) -> None:
    # Other kernels (channels-last convolutions, one-image decodes) differ in the last float bits.
    assert images.shape == reference.shape
    assert np.abs(images.astype(np.int16) - reference).max() <= 1
    assert (images == reference).mean() > 0.99


def test_channels_last_gives_the_same_images(world, plain_images):
    module = generator(world, channels_last=True, vae_slicing=False)
    conv = next(m for m in module.unet.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert_same_images(module.generate(PROMPTS, SEEDS), plain_images)


def test_vae_slicing_is_on_by_default_and_gives_the_same_images(world, plain_images):
    module = generator(world)
    assert module.vae.use_slicing and not generator(world, vae_slicing=False).vae.use_slicing
    assert_same_images(module.generate(PROMPTS, SEEDS), plain_images)
    described = module.describe()
    assert {k: described[k] for k in ("compile_unet", "channels_last", "vae_slicing")} == {
        "compile_unet": False, "channels_last": False, "vae_slicing": True}
    # Speed options do not change the images, so a set can be resumed with others.
    assert not {"compile_unet", "channels_last", "vae_slicing"} & set(module.identity())


def test_compile_unet_compiles_the_fused_unet_in_place(world, plain_images, monkeypatch):
    # Compiling even the tiny UNet takes minutes on a CPU: record the call, run eagerly.
    calls = []

    def record(function, *args, **kwargs):
        calls.append((function, args, kwargs))
        return function

    monkeypatch.setattr(torch, "compile", record)
    module = generator(world, compile_unet=True, vae_slicing=False)
    assert len(calls) == 1
    function, args, kwargs = calls[0]
    unet = function.__self__  # nn.Module.compile compiles the module's bound _call_impl
    assert unet is module.unet is module.generation_pipeline.unet and args == () and kwargs == {}
    assert module.unet._compiled_call_impl is not None
    assert not any("lora" in name for name, _ in unet.named_modules())  # after the adapter is fused
    assert_same_images(module.generate(PROMPTS, SEEDS), plain_images)
    assert generator(world).unet._compiled_call_impl is None


def test_batch_size_for_memory():
    assert batch_size_for_memory(10 * GIB, GIB, cap=64) == 8  # 80% of 10 GiB
    assert batch_size_for_memory(10 * GIB, GIB, cap=64, fixed_bytes=2 * GIB) == 6
    assert batch_size_for_memory(10 * GIB, GIB, cap=64, margin=1.0) == 10
    assert batch_size_for_memory(80 * GIB, GIB // 4, cap=64) == 64  # capped
    assert batch_size_for_memory(80 * GIB, GIB // 4) == MAX_AUTO_BATCH_SIZE
    assert batch_size_for_memory(GIB, 4 * GIB, cap=64) == 1  # never 0: an oversized batch fails loudly
    assert batch_size_for_memory(GIB, 0, cap=16) == 16
    with pytest.raises(ValueError, match="cap"):
        batch_size_for_memory(GIB, GIB, cap=0)


class ScriptedMemory:
    """Peaks as a GPU would report them: after the sampler step, then after the decode."""

    def __init__(self, peaks: list[int]):
        self.peaks = list(peaks)
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def peak(self) -> int:
        return self.peaks.pop(0)


def test_measuring_image_memory_runs_one_step_probes(world):
    module = generator(world, scheduler="pndm")
    assert module.measure_image_memory() is None  # not a GPU
    # Sampling: 3 + 1 per image; decoding (sliced: one image at a time): 10 whatever the batch.
    memory = ScriptedMemory([4, 10, 5, 10])
    assert module.measure_image_memory(memory) == (10, 1)
    assert memory.peaks == [] and memory.resets == 3
    # Without slicing the decode grows with the batch: its line is the steeper one.
    assert module.measure_image_memory(ScriptedMemory([4, 10, 5, 16])) == (4, 6)


def datamodule(world, tmp_path, batch_size=None) -> GenerationDataModule:
    from bob.data import ClassFolders

    return GenerationDataModule(
        ClassFolders(str(world["data"]), descriptor="aircraft", name="toy"), output_dir=str(tmp_path / "out"),
        caption_bank=str(world["bank"]), split_file=str(world["split_file"]), shots=SHOTS, val_per_class=1,
        images_per_class=4, batch_size=batch_size,
    )


@contextlib.contextmanager
def bob_logs(caplog):
    """bob's INFO lines in ``caplog``, even after the CLI stopped the "bob" logger propagating."""
    logger = logging.getLogger("bob")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def fake_trainer(device: str, module=None, world_size: int = 1):
    strategy = SimpleNamespace(root_device=torch.device(device), broadcast=lambda value, src=0: value)
    return SimpleNamespace(strategy=strategy, world_size=world_size, lightning_module=module)


def test_automatic_batch_size_on_a_cpu_and_a_gpu(world, tmp_path, monkeypatch, caplog):
    data = datamodule(world, tmp_path)
    assert data.requested_batch_size is None and data.batch_size == DEFAULT_BATCH_SIZE
    data.trainer = fake_trainer("cpu", SimpleNamespace(measure_image_memory=lambda: pytest.fail("measured on a CPU")))
    with bob_logs(caplog):
        assert data.predict_dataloader().batch_size == DEFAULT_BATCH_SIZE
    assert f"batch size {DEFAULT_BATCH_SIZE} (automatic; not a GPU)" in caplog.text

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * GIB, 80 * GIB))
    gpu = fake_trainer("cuda", SimpleNamespace(measure_image_memory=lambda: (2 * GIB, GIB)))
    caplog.clear()
    with bob_logs(caplog):
        assert data.choose_batch_size(gpu) == 30  # (80% of 40 GiB - 2 GiB) / 1 GiB
    assert "batch size 30 (automatic: 40.0 GiB free" in caplog.text
    gpu.lightning_module = SimpleNamespace(measure_image_memory=lambda: (0, GIB // 100))
    assert data.choose_batch_size(gpu) == MAX_AUTO_BATCH_SIZE
    gpu.world_size = 2
    gpu.strategy.all_gather = lambda size: torch.stack([size, torch.tensor(12)])
    with monkeypatch.context() as patch:
        tensor = torch.tensor  # no CUDA here for the gathered size
        patch.setattr(torch, "tensor", lambda data, device=None, **kwargs: tensor(data, **kwargs))
        assert data.choose_batch_size(gpu) == 12  # the smallest over the ranks

    fixed = datamodule(world, tmp_path, batch_size=5)
    fixed.trainer = fake_trainer("cuda", SimpleNamespace(measure_image_memory=lambda: pytest.fail("batch size is set")))
    assert fixed.predict_dataloader().batch_size == 5
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        datamodule(world, tmp_path, batch_size=0)


def test_predict_with_an_automatic_batch_size_chooses_it_once_the_model_is_loaded(world, tmp_path, monkeypatch):
    from bob.cli import main
    from bob.data.synthetic_set import read_summary

    seen = []

    def choose(self, trainer):
        seen.append(trainer.lightning_module.generation_pipeline is not None)
        return 5

    monkeypatch.setattr(GenerationDataModule, "choose_batch_size", choose)
    output = tmp_path / "auto"
    config = generation_config(tmp_path / "auto.yaml", world, world["sd"], output, lora=world["lora"],
                               data={"batch_size": None}, model={"num_inference_steps": 2})
    cli = main(["predict", "-c", str(config)])
    assert seen == [True] and cli.datamodule.batch_size == 5
    assert read_summary(output)["complete"] and read_summary(output)["num_images"] == 4 * len(CLASSES)


def test_the_generation_clock_stops_after_the_last_image_is_written():
    from benchmarks.stage_generation import WrittenImagesClock
    from benchmarks.timing import Clock
    from bob.callbacks.synthetic_writer import BackgroundWrites, SyntheticSetWriter

    writer = SyntheticSetWriter()
    writer._writes = BackgroundWrites(threads=1)
    written = []
    writer._writes.submit(lambda: (time.sleep(0.3), written.append(time.perf_counter())))
    clock = WrittenImagesClock()
    clock.clock = Clock("cpu")
    clock.on_predict_end(SimpleNamespace(callbacks=[writer, clock]), None)
    assert written and clock.clock.marks[-1][0] >= written[0]
    writer._writes.close()
