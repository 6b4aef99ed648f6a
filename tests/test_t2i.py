import shutil
import time

import pytest
import torch
from torchvision.transforms import v2

from bob.cli import main
from bob.data.errors import BobInputError
from bob.modules import LoRAFineTuner
from bob.modules.diffusion.caching import LatentCache, TextEmbeddingCache, is_deterministic
from bob.modules.diffusion.finetuner import accumulation_steps
from bob.modules.diffusion.lora import LoRATargetError
from tests.t2i_fixtures import CLASSES, adamw, fit_config, make_world, manifest, one_torch_thread  # noqa: F401


def fixed_noise_loss(module: LoRAFineTuner, batch: dict, draws: int = 8) -> float:
    """Mean denoising loss over fixed (latent, noise, timestep) draws."""
    module.latent_cache = None
    with torch.no_grad():
        return sum(float(module.denoising_loss(batch, torch.Generator().manual_seed(s))) for s in range(draws)) / draws


def test_context_fit_lowers_the_loss_on_a_tiny_overfit_task(tmp_path, tiny_sd_path):
    world = make_world(tmp_path, shots=1)
    config = fit_config(
        tmp_path, world, tiny_sd_path,
        model={"optimizer": adamw(1e-2), "unet_rank": 8, "unet_alpha": 8.0},
        trainer={"max_steps": 60},
        data={"shots": 1, "batch_size": 3},
    )
    cli = main(["fit", "-c", str(config)])
    assert cli.trainer.global_step == 60
    trained = cli.model
    assert trained.latent_cache is not None and len(trained.latent_cache) == 3  # deterministic transform: 1 view each
    # Every latent was encoded before training, so the training batches carry no images...
    assert "image" not in next(iter(cli.datamodule.train_dataloader()))
    # ...and the evaluation below takes the same shots, with images, from the unshuffled loader.
    data = cli.datamodule
    batch = next(iter(data.records_dataloader(data.split.train, train=False, shuffle=False)))
    assert sorted(trained.batch_prompts(batch))[0].startswith("an aircraft photo of a boeing in the ")

    base = LoRAFineTuner(**trained.init_arguments())
    base.configure_model()  # LoRA B starts at zero: this is the base model
    before, after = fixed_noise_loss(base, batch), fixed_noise_loss(trained, batch)
    assert after < 0.8 * before, (before, after)

    exported = manifest(tmp_path / "lora")
    assert exported["prompt_mode"] == "context"
    assert exported["lora"]["unet"]["targets"] == ["to_q", "to_k", "to_v", "to_out.0"]  # add_*_proj: not in SD 1/2
    assert exported["data"]["caption_bank_sha256"] and exported["data"]["num_train_images"] == 3
    assert exported["training"]["global_step"] == 60


def test_class_mode_needs_no_caption_bank_and_logs_sample_grids(tmp_path, tiny_sd_path):
    world = make_world(tmp_path, with_bank=False)
    grid = {
        "class_path": "SampleGrid",
        "init_args": {"every_n_steps": 2, "num_classes": 2, "num_contexts": 3, "num_inference_steps": 2},
    }
    config = fit_config(
        tmp_path, world, tiny_sd_path,
        model={"prompt_mode": "class", "train_text_encoder": False},
        trainer={"max_steps": 3, "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                            "init_args": {"save_dir": str(tmp_path / "logs")}}},
        callbacks=[{"class_path": "LoRAExport", "init_args": {"dirpath": str(tmp_path / "lora")}}, grid],
    )
    cli = main(["fit", "-c", str(config)])
    module = cli.model
    assert module.prompt(1) == "an aircraft photo of a cessna"
    assert len(module.text_cache) == len(CLASSES)  # frozen text encoder: one cached embedding per prompt
    exported = manifest(tmp_path / "lora")
    assert exported["prompt_mode"] == "class" and exported["lora"]["text_encoder"] is None
    grids = sorted((tmp_path / "logs" / "lightning_logs" / "version_0" / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step_0000000.png", "step_0000002.png", "step_0000003.png"]
    from PIL import Image

    with Image.open(grids[-1]) as image:  # 2 rows x 3 columns of 64 px images, 2 px padding
        assert image.size == (3 * 66 + 2, 2 * 66 + 2)


def test_prompts_follow_the_templates_with_the_right_article():
    names = ["F/A-18", "707-320"]
    bob = LoRAFineTuner(prompt_names=names, descriptor="aircraft")
    context = {"background": "Grass, sky, hangar", "pose": "Taxiing on runway"}
    assert bob.prompt(1, context) == (
        "an aircraft photo of a 707-320 in the Grass, sky, hangar background with the Taxiing on runway pose"
    )
    batch = {"label": torch.tensor([0]), "background": ["sea"], "pose": ["landing"]}
    assert bob.batch_prompts(batch) == ["an aircraft photo of a F/A-18 in the sea background with the landing pose"]
    datadream = LoRAFineTuner(prompt_names=["Albatross"], descriptor="bird", prompt_mode="class")
    assert datadream.prompt(0) == "a bird photo of a Albatross"
    custom = LoRAFineTuner(prompt_names=names, descriptor="aircraft", template="{class_name}, {pose}")
    assert custom.prompt(0, context) == "F/A-18, Taxiing on runway"
    with pytest.raises(BobInputError, match="context placeholders"):
        LoRAFineTuner(prompt_mode="context", template="{a_descriptor} photo of a {class_name}")
    with pytest.raises(BobInputError, match="caption field"):
        bob.batch_prompts({"label": torch.tensor([0])})


def test_context_mode_without_caption_bank_fails_before_training(tmp_path, tiny_sd_path):
    config = fit_config(tmp_path, make_world(tmp_path, with_bank=False), tiny_sd_path)
    with pytest.raises(BobInputError, match="data.caption_bank"):
        main(["fit", "-c", str(config)])


def test_caption_bank_missing_images_are_listed(tmp_path, tiny_sd_path):
    world = make_world(tmp_path)
    records = world["bank"] / "records.jsonl"
    lines = records.read_text().splitlines()
    records.write_text("\n".join(lines[1:]) + "\n")
    missing = lines[0].split('"sample_id": "')[1].split('"')[0]
    with pytest.raises(BobInputError, match=missing):
        main(["fit", "-c", str(fit_config(tmp_path, world, tiny_sd_path))])


def test_unknown_lora_targets_list_the_available_layers(tmp_path, tiny_sd_path):
    config = fit_config(tmp_path, make_world(tmp_path), tiny_sd_path, model={"unet_targets": ["add_q_proj", "qkv"]})
    with pytest.raises(LoRATargetError, match=r"\['add_q_proj', 'qkv'\].*'to_out.0'.*'to_q'"):
        main(["fit", "-c", str(config)])


def test_uncached_model_id_fails_at_once_offline(tmp_path):
    module = LoRAFineTuner(base_model="nobody/no-such-diffusion-model", prompt_names=["a"])
    started = time.monotonic()
    with pytest.raises(BobInputError, match="not in the local Hugging Face cache"):
        module.configure_model()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("remove", "message"), [
    ("unet", r"has no unet/ subfolder"),
    ("vae/diffusion_pytorch_model.safetensors", r"has vae/ but no \*\.safetensors"),
])
def test_incomplete_local_model_names_the_missing_part(tmp_path, tiny_sd_path, remove, message):
    copy = tmp_path / "sd"
    shutil.copytree(tiny_sd_path, copy)
    target = copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(BobInputError, match=message):
        LoRAFineTuner(base_model=str(copy), prompt_names=["a"]).configure_model()


def test_effective_batch_sets_gradient_accumulation(tmp_path, tiny_sd_path):
    assert accumulation_steps(80, 8, 1) == 10
    assert accumulation_steps(80, 8, 10) == 1
    with pytest.raises(BobInputError, match="not a multiple"):
        accumulation_steps(80, 8, 3)
    config = fit_config(
        tmp_path, make_world(tmp_path), tiny_sd_path,
        model={"effective_batch_size": 6, "gradient_checkpointing": True}, trainer={"max_epochs": 2, "max_steps": -1},
    )
    cli = main(["fit", "-c", str(config)])
    assert cli.model.unet.is_gradient_checkpointing
    # 6 images, 2 per batch: 3 micro-batches = 1 optimizer step per epoch.
    assert cli.trainer.accumulate_grad_batches == 3
    assert cli.trainer.global_step == 2
    assert manifest(tmp_path / "lora")["training"]["accumulate_grad_batches"] == 3


def test_latent_cache_is_automatic_only_for_deterministic_transforms():
    assert is_deterministic(v2.Compose([v2.Resize(64), v2.CenterCrop(64)]))
    assert not is_deterministic(v2.Compose([v2.Resize(64), v2.RandomCrop(64)]))
    assert not is_deterministic(lambda image: image)  # unknown callables may be random

    encoded = []

    def encode(images):
        encoded.append(len(images))
        return torch.randn(len(images), 8, 2, 2)

    cache = LatentCache(views=2)
    images = torch.zeros(2, 3, 16, 16)
    for _ in range(4):
        posterior = cache.posterior(["a", "b"], images, encode)
    assert encoded == [2, 2] and len(cache) == 4  # two views each, then reuse
    assert posterior.mean.shape == (2, 4, 2, 2)

    texts = TextEmbeddingCache()
    calls = []
    rows = {"x": 1.0, "y": 2.0}

    def encode(prompts):
        calls.append(prompts)
        hidden = torch.tensor([[rows[p]] * 3 for p in prompts])
        return hidden, -hidden[:, :2]  # SD-XL shape: hidden states and a pooled embedding

    hidden, pooled = texts.embeddings(["x", "y", "x"], encode)
    again = texts.embeddings(["y"], encode)
    assert calls == [["x", "y"]]
    assert hidden[:, 0].tolist() == [1.0, 2.0, 1.0] and pooled[:, 0].tolist() == [-1.0, -2.0, -1.0]
    assert again[0].tolist() == [[2.0] * 3] and len(again) == 2


def test_bf16_mixed_keeps_lora_in_float32_over_a_bf16_base(tmp_path, tiny_sd_path):
    config = fit_config(tmp_path, make_world(tmp_path), tiny_sd_path, trainer={"precision": "bf16-mixed"})
    cli = main(["fit", "-c", str(config)])
    module = cli.model
    lora = {p.dtype for p in module.trainable_parameters()}
    frozen = {p.dtype for p in module.parameters() if not p.requires_grad}
    assert lora == {torch.float32} and frozen == {torch.bfloat16}
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss_step"])
    assert manifest(tmp_path / "lora")["training"]["precision"] == "bf16-mixed"
    with pytest.raises(BobInputError, match="bf16-mixed"):
        main(["fit", "-c", str(config), "--trainer.precision=bf16-true"])
