"""Full-size proof on a CPU: every stage's real code path, once, on the paper's architectures.

The models are built from their configs with random weights (nothing is downloaded) and run
through bob's CLI in-process, as the stage configs run them: a caption from Qwen2.5-VL-3B
(`Captioner`), one LoRA step on Stable Diffusion 2.1-base at 512 px (`LoRAFineTuner`), one
512 px image at 2 sampler steps through that adapter (`SyntheticImageGenerator`), and one
training step of each classifier at 224 px (`Classifier` with the shipped CLIP ViT-B/16,
ResNet-50 and MAE ViT-B/16 backbone configs). Each part prints its wall time and peak memory
(``pytest -s``). The 7B captioner would need ~17 GB in bf16, so the 3B one stands in for it
(same code path and vision tower, a narrower and deeper-by-8 language model).

The stages compute in bf16 as the shipped configs do where the CPU has bf16 kernels
(AVX-512 or AMX). On an AVX2-only CPU PyTorch emulates bf16 convolutions some 400 times slower
than fp32 (47 s against 0.1 s for one 320-channel 3x3 convolution at 64x64), so there the
convolutional stages (the LoRA step, the image, the classifier steps) compute in fp32 and the
tests check fp32 dtypes instead; bf16-mixed itself is still covered by the tiny-model tests.
The captioner, almost all linear layers, stays in bf16 everywhere: in fp32 the 3B model would
need 15 GB.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.architectures import (
    PAPER,
    PAPER_3B_CAPTIONER,
    save_captioner,
    save_clip,
    save_stable_diffusion,
)
from benchmarks.memory import peak_rss_increase, status_kib
from benchmarks.world import write_dataset
from bob.cli import main, release_finished_runs
from bob.data.caption_bank import CaptionBank
from bob.data.fingerprints import file_sha256
from bob.data.synthetic_set import read_manifest_lines, read_summary
from bob.modules.precision import cpu_has_native_bf16
from tests.caption_fixtures import write_caption_config
from tests.classifier_fixtures import CLASSES as CLASSIFIER_CLASSES
from tests.classifier_fixtures import clip_backbone, timm_backbone, write_classifier_config
from tests.generation_world import CLASSES, generation_config, make_world
from tests.t2i_fixtures import adamw, fit_config, manifest
from tests.test_t2i_export import RecordRestoredWeights

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RECORDER = "tests.test_t2i_export.RecordRestoredWeights"
#: Published parameter counts (without LoRA adapters; timm bodies without their 1000-class head).
SD_PARAMETERS = {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840}
QWEN2_5_VL_3B_PARAMETERS = 3_754_622_976
CLIP_VIT_B16_PARAMETERS = 149_620_737
TIMM_BODY_PARAMETERS = {"resnet50": 25_557_032 - 2_049_000, "mae": 86_567_656 - 769_000}
#: Trained weights that one step leaves as they were: timm starts the last batch norm of every
#: ResNet block at zero (random init only), so no gradient reaches the layers before it yet.
STILL_AT_INIT = {"resnet50": re.compile(r"\.layer\d\.\d+\.(conv[123]|bn[12])\.")}

#: bf16 where the CPU computes it natively, fp32 where PyTorch would emulate it (see the module docstring).
NATIVE_BF16 = cpu_has_native_bf16()
PRECISION = "bf16-mixed" if NATIVE_BF16 else "32-true"
DTYPE = torch.bfloat16 if NATIVE_BF16 else torch.float32
DTYPE_NAME = str(DTYPE).removeprefix("torch.")  # as configs and `describe()` spell it

REPORT: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def all_cores():
    """Every core (the suite's default is one thread, best for tiny models), and a summary at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    yield
    torch.set_num_threads(before)
    print("\n[full size] summary:\n  " + "\n  ".join(REPORT))


def measured(part: str, function: Callable[[], Any]) -> Any:
    """``function()``, with its wall and CPU time and peak resident-set increase printed and kept for the summary.

    Functions return plain facts, not models, so each part's memory is freed when it ends.
    """
    release_memory()
    result: dict[str, Any] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        memory = peak_rss_increase(lambda: result.setdefault("value", function()))
    finally:
        release_finished_runs()
        release_memory()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    line = (
        f"{part}: {seconds:.0f} s ({cpu_seconds:.0f} s CPU), peak RSS +{memory['peak_rss_increase_mib'] / 1024:.1f} GiB over "
        f"{memory['baseline_rss_mib'] / 1024:.1f} GiB (after: {status_kib('VmRSS') / 2**20:.1f} GiB)"
    )
    print(f"\n[full size] {line}")
    REPORT.append(line)
    return result["value"]


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back (glibc keeps them), so each part starts from what is live."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def count(module: torch.nn.Module) -> int:
    """Parameters of the model itself, without LoRA adapters."""
    return sum(p.numel() for name, p in module.named_parameters() if "lora_" not in name)


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module, names: list[str]) -> list[str]:
    after = dict(module.named_parameters())
    return [name for name in names if not torch.equal(before[name], after[name].detach())]


def recorded_weights(trainer) -> dict[str, torch.Tensor]:
    return next(c for c in trainer.callbacks if isinstance(c, RecordRestoredWeights)).weights


# ---------------------------------------------------------------------------------- stage 1
@pytest.fixture
def qwen_3b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen2_5_vl_3b") / "model"
    measured("Qwen2.5-VL-3B: build random weights + save (bf16)", lambda: save_captioner(folder, PAPER_3B_CAPTIONER))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def caption_one_image(root: Path, model: Path) -> dict[str, Any]:
    # 224x168: 192 patches of 14 px, 48 tokens after the 2x2 merge; the same code path as a photo's
    # native size, at a quarter of 448x336's vision cost (minutes where bf16 is emulated).
    data = write_dataset(root / "data", ["alpha"], {"train": 2, "test": 1}, width=224, height=168)
    config = write_caption_config(root / "captions.yaml", model, data, str(root / "bank"), shots=1, batch_size=1)
    cli = main(["predict", "-c", str(config), "--model.init_args.dtype=bfloat16"])
    vlm = cli.model.vlm
    bank = CaptionBank.load(root / "bank")
    return {
        "parameters": count(vlm),
        "dtype": vlm.dtype,
        "vision_depth": vlm.config.vision_config.depth,
        "attributes": [record.attributes for record in bank.records.values()],
        "manifest": manifest(root / "bank"),
    }


def test_qwen2_5_vl_3b_captions_an_image_through_the_captioner(tmp_path, qwen_3b):
    facts = measured("Qwen2.5-VL-3B: one image captioned (2 questions x 4 tokens)", lambda: caption_one_image(tmp_path, qwen_3b))
    assert facts["parameters"] == QWEN2_5_VL_3B_PARAMETERS
    assert facts["dtype"] == torch.bfloat16 and facts["vision_depth"] == 32
    assert facts["manifest"]["complete"] and facts["manifest"]["num_records"] == 1
    [attributes] = facts["attributes"]
    assert set(attributes) == {"background", "pose"}
    assert all(isinstance(text, str) and text.strip() for text in attributes.values())


# ---------------------------------------------------------------------------------- stages 2 and 3
@pytest.fixture(scope="module")
def stable_diffusion(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd21_base") / "model"
    measured(
        "SD 2.1-base: build random weights + save (bf16)",
        lambda: save_stable_diffusion(folder, PAPER, dtype=torch.bfloat16),
    )
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def sd_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd_world")
    return {**make_world(root, image_size=PAPER.image_size), "root": root}


def lora_step(world: dict[str, Path], model: Path) -> dict[str, Any]:
    """One step of the paper's LoRA recipe (r 16 on UNet and text encoder, bf16-mixed where native), batch 1 at 512 px."""
    root = world["root"]
    lora = {"unet_rank": 16, "unet_alpha": 16.0, "text_encoder_rank": 16, "text_encoder_alpha": 16.0}
    config = fit_config(
        root, world, model, model={**lora, "optimizer": adamw(1e-4)},
        trainer={"max_steps": 1, "precision": PRECISION},
        # None: the data module's random-crop augmentation, so the VAE encodes as in the shipped recipe.
        data={"image_size": PAPER.image_size, "batch_size": 1, "train_transform": None},
        callbacks=[{"class_path": "LoRAExport", "init_args": {"dirpath": str(root / "lora")}}, {"class_path": RECORDER}],
    )
    cli = main(["fit", "-c", str(config)])
    module, trainer = cli.model, cli.trainer
    before = recorded_weights(trainer)
    lora_b = {part: [n for n in before if n.startswith(f"{part}.") and ".lora_B." in n] for part in ("unet", "text_encoder")}
    batch = next(iter(cli.datamodule.train_dataloader()))
    prompt = module.prompt(0, {"background": "a runway with hangars", "pose": "taxiing"})
    with torch.no_grad():
        # Training conditions on what the pipeline samples with: the last hidden state of the
        # 23-layer tower, i.e. OpenCLIP ViT-H's penultimate layer, after the final layer norm.
        (ours,) = module.encode_prompts([prompt])
        pipelines = module.pipeline().encode_prompt(prompt, module.device, 1, do_classifier_free_guidance=False)[0]
    return {
        "parameters": {part: count(getattr(module, part)) for part in SD_PARAMETERS},
        "text_encoder": (module.text_encoder.config.num_hidden_layers, module.text_encoder.config.hidden_size),
        "frozen_dtypes": {p.dtype for p in module.parameters() if not p.requires_grad},
        "lora_dtypes": {p.dtype for p in module.parameters() if p.requires_grad},
        "lora_b": lora_b,
        "changed": {part: changed(before, module, names) for part, names in lora_b.items()},
        "loss": float(trainer.callback_metrics["train/loss_step"]),
        "global_step": trainer.global_step,
        "batch": (tuple(batch["image"].shape), batch["image"].dtype),
        "embeddings": (tuple(ours.shape), torch.equal(ours, pipelines)),
        "exported": manifest(root / "lora"),
        "lora": root / "lora",
    }


@pytest.fixture(scope="module")
def lora_run(sd_world, stable_diffusion):
    return measured(f"SD 2.1-base: one LoRA step at 512 px, batch 1, {PRECISION}", lambda: lora_step(sd_world, stable_diffusion))


def test_sd21_base_lora_step_through_the_finetuner(lora_run):
    assert lora_run["parameters"] == SD_PARAMETERS
    assert lora_run["text_encoder"] == (23, 1024)
    assert lora_run["frozen_dtypes"] == {DTYPE} and lora_run["lora_dtypes"] == {torch.float32}
    assert lora_run["batch"] == ((1, 3, 512, 512), torch.uint8)  # crosses to the device as uint8, scaled there
    assert lora_run["embeddings"] == ((1, 77, 1024), True)
    assert lora_run["global_step"] == 1 and math.isfinite(lora_run["loss"]) and lora_run["loss"] > 0
    for part, names in lora_run["lora_b"].items():
        assert names, f"no LoRA on the {part}"
        assert lora_run["changed"][part] == names, f"{len(names) - len(lora_run['changed'][part])} {part} LoRA B not trained"
    exported = lora_run["exported"]
    assert exported["lora"]["unet"]["rank"] == 16 and exported["lora"]["text_encoder"]["rank"] == 16
    assert exported["training"]["global_step"] == 1


def generate_one_image(world: dict[str, Path], model: Path, lora: Path) -> dict[str, Any]:
    """The paper's generation settings (CFG 2, PNDM, native size) at 2 steps, in bf16 where native, one image."""
    output = world["root"] / "synthetic"
    config = generation_config(
        world["root"] / "generate.yaml", world, model, output, lora=lora,
        model={"num_inference_steps": 2, "dtype": DTYPE_NAME}, data={"images_per_class": {CLASSES[0]: 1}},
    )
    generator = main(["predict", "-c", str(config)]).model
    lines = read_manifest_lines(output)
    with Image.open(output / lines[0]["file"]) as image:
        pixels = np.asarray(image)
        mode = image.mode
    return {"describe": generator.describe(), "summary": read_summary(output), "lines": lines, "mode": mode, "pixels": pixels}


@pytest.mark.filterwarnings("error:invalid value encountered in cast:RuntimeWarning")  # a NaN image
def test_sd21_base_generates_a_512px_image_through_the_generator(sd_world, stable_diffusion, lora_run):
    facts = measured(
        f"SD 2.1-base: one 512 px image, 2 PNDM steps, CFG 2, {DTYPE_NAME}",
        lambda: generate_one_image(sd_world, stable_diffusion, lora_run["lora"]),
    )
    assert facts["summary"]["complete"] and len(facts["lines"]) == 1
    assert facts["mode"] == "RGB" and facts["pixels"].shape == (512, 512, 3) and facts["pixels"].dtype == np.uint8
    assert facts["pixels"].std() > 1  # not a blank image
    described = facts["describe"]
    assert described["dtype"] == DTYPE_NAME and described["scheduler_class"] == "PNDMScheduler"
    assert described["lora_sha256"] == file_sha256(lora_run["lora"] / "pytorch_lora_weights.safetensors")


# ---------------------------------------------------------------------------------- stage 4
@pytest.fixture(scope="module")
def clip_vit_b16(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_vit_b16") / "model"
    measured("CLIP ViT-B/16: build random weights + save (fp32)", lambda: save_clip(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def classifier_step(root: Path, name: str, backbone: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """One training step (batch 8, 224 px) and one validation batch with the shipped backbone config, in
    bf16-mixed like the shipped classifier config where native (the weights and the logits outside training stay fp32)."""
    config = write_classifier_config(root, backbone, image_size=224, model_args={"test_after_fit": False})
    cli = main([
        "fit", "-c", str(config), "-c", str(REPO / "configs" / "classifier" / "backbones" / f"{name}.yaml"), *overrides,
        f"--trainer.precision={PRECISION}", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        f"--trainer.callbacks+={RECORDER}",
    ])
    before = recorded_weights(cli.trainer)
    trained = list(before)
    network = cli.model.backbone.clip if name == "clip" else cli.model.backbone.net
    if name == "clip":  # LoRA: B starts at zero, so A gets no gradient on the first step; B must move
        trained = [n for n in trained if ".lora_B." in n]
    batch = next(iter(cli.datamodule.train_dataloader()))
    cli.model.eval()
    with torch.no_grad():
        logits = cli.model(batch["image"])
    return {
        "parameters": count(network) - (0 if name == "clip" else count(network.get_classifier())),
        "trained": trained,
        "changed": changed(before, cli.model, trained),
        "loss": float(cli.trainer.callback_metrics["train/loss"]),
        "validated": "val/acc" in cli.trainer.callback_metrics,
        "images": tuple(batch["image"].shape),
        "logits": (tuple(logits.shape), logits.dtype, bool(torch.isfinite(logits).all())),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [("clip", CLIP_VIT_B16_PARAMETERS), ("resnet50", TIMM_BODY_PARAMETERS["resnet50"]), ("mae", TIMM_BODY_PARAMETERS["mae"])],
)
def test_classifier_step_at_224px(tmp_path, request, name, expected):
    if name == "clip":
        backbone = clip_backbone(request.getfixturevalue("clip_vit_b16"))
        overrides = [f"--model.init_args.backbone.init_args.model={backbone['init_args']['model']}"]
    else:
        backbone, overrides = timm_backbone(), ["--model.init_args.backbone.init_args.pretrained=false"]
    facts = measured(
        f"classifier {name}: one training step + one validation batch at 224 px, batch 8, {PRECISION}",
        lambda: classifier_step(tmp_path, name, backbone, overrides),
    )
    assert facts["parameters"] == expected
    unchanged = [n for n in facts["trained"] if n not in facts["changed"]]
    assert facts["changed"] and all(name in STILL_AT_INIT and STILL_AT_INIT[name].search(n) for n in unchanged), unchanged
    assert math.isfinite(facts["loss"]) and facts["validated"]
    assert facts["images"] == (8, 3, 224, 224)
    assert facts["logits"] == ((8, len(CLASSIFIER_CLASSES)), torch.float32, True)
