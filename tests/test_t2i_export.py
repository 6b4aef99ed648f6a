import os
import stat

import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from lightning.pytorch import Callback
from safetensors import safe_open

from bob.cli import main
from bob.data.errors import BobInputError
from bob.modules import LoRAFineTuner, SyntheticImageGenerator
from bob.modules.diffusion.lora import LORA_WEIGHTS_FILE, attach_lora, save_lora_weights
from tests.t2i_fixtures import adamw, fit_config, make_world, manifest, one_torch_thread  # noqa: F401


def generate(pipeline: StableDiffusionPipeline, prompts: list[str]) -> torch.Tensor:
    pipeline.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    return pipeline(prompts, height=64, width=64, num_inference_steps=3, guidance_scale=2.0,
                    generator=generators, output_type="pt").images


def test_exported_adapter_reproduces_the_in_training_model(tmp_path, tiny_sd_path):
    config = fit_config(tmp_path, make_world(tmp_path), tiny_sd_path, model={"optimizer": adamw(5e-2)}, trainer={"max_steps": 3})
    module = main(["fit", "-c", str(config)]).model
    prompts = [module.prompt(0, {"background": "sea", "pose": "landing"}), module.prompt(2, {"background": "grass", "pose": "parked"})]
    module.eval()
    with torch.no_grad():
        in_training = generate(module.pipeline(), prompts)

    folder = tmp_path / "lora"
    with safe_open(str(folder / LORA_WEIGHTS_FILE), framework="pt") as weights:
        keys = list(weights.keys())
    assert any(k.startswith("unet.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)
    fresh = StableDiffusionPipeline.from_pretrained(tiny_sd_path, safety_checker=None, use_safetensors=True)
    base = generate(fresh, prompts)
    # The generation stage's own loading path: the adapter folder, checked, loaded and fused.
    generator = SyntheticImageGenerator(str(tiny_sd_path), lora=str(folder), dtype="float32")
    reloaded = generate(generator.load("cpu"), prompts)

    assert generator.lora_manifest["lora"]["unet"]["alpha"] == 8.0  # alpha != rank: the loader must read the metadata
    assert (reloaded - base).abs().max() > 1e-3  # the adapter changes the images ...
    torch.testing.assert_close(reloaded, in_training, atol=1e-4, rtol=1e-4)  # ... exactly as in training


def test_adapter_with_a_changed_weights_file_is_refused(tmp_path, tiny_sd_path):
    main(["fit", "-c", str(fit_config(tmp_path, make_world(tmp_path), tiny_sd_path, trainer={"max_steps": 1}))])
    weights = tmp_path / "lora" / LORA_WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b" ")
    with pytest.raises(BobInputError, match="sha256"):
        SyntheticImageGenerator(str(tiny_sd_path), lora=str(tmp_path / "lora")).load("cpu")


class RecordRestoredWeights(Callback):
    """Keeps the LoRA weights as they are when training (re)starts."""

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.weights = {n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad}


def test_checkpoints_hold_only_lora_weights_and_resume(tmp_path, tiny_sd_path):
    world = make_world(tmp_path)
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}
    config = fit_config(
        tmp_path, world, tiny_sd_path, model={"optimizer": adamw(1e-2)},
        trainer={"max_steps": 2, "enable_checkpointing": True}, callbacks=[checkpoint],
    )
    main(["fit", "-c", str(config)])
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    keys = list(saved["state_dict"])
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert any(k.startswith("text_encoder.") for k in keys)
    # The optimizer is saved as its spec, as the classifier's is.
    optimizer = saved["hyper_parameters"]["optimizer"]
    assert optimizer["class_path"].endswith(".AdamW") and optimizer["init_args"]["lr"] == 1e-2
    assert optimizer["init_args"]["weight_decay"] == 1e-2 and optimizer["init_args"]["betas"] == [0.9, 0.999]

    last = f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}"
    recorder = {"class_path": "tests.test_t2i_export.RecordRestoredWeights"}
    resume = fit_config(tmp_path, world, tiny_sd_path, model={"optimizer": adamw(1e-2)},
                        trainer={"max_steps": 4, "enable_checkpointing": True}, callbacks=[checkpoint, recorder])
    cli = main(["fit", "-c", str(resume), last])
    restored = next(c for c in cli.trainer.callbacks if isinstance(c, RecordRestoredWeights))
    assert restored.step == 2 and cli.trainer.global_step == 4
    assert cli.model.hparams.optimizer == optimizer and cli.trainer.optimizers[0].defaults["lr"] == 1e-2
    for name, value in saved["state_dict"].items():
        torch.testing.assert_close(restored.weights[name], value)

    # The CLI rebuilds the module from the checkpoint's hyperparameters; used directly, a module
    # with other LoRA settings is refused instead of half-loaded.
    other_rank = LoRAFineTuner(**{**cli.model.init_arguments(), "unet_rank": 2})
    other_rank.configure_model()
    with pytest.raises(BobInputError, match="other LoRA ranks"):
        other_rank.on_load_checkpoint(saved)


def test_checkpoint_with_the_flat_optimizer_arguments_resumes_with_its_values(tmp_path, tiny_sd_path):
    """Checkpoints made when the fine-tuner took learning_rate/betas/weight_decay/eps still resume."""
    world = make_world(tmp_path)
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}
    main(["fit", "-c", str(fit_config(tmp_path, world, tiny_sd_path, trainer={"max_steps": 1, "enable_checkpointing": True},
                                      callbacks=[checkpoint]))])
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    del saved["hyper_parameters"]["optimizer"]
    saved["hyper_parameters"].update(learning_rate=3e-3, betas=[0.8, 0.99], weight_decay=0.0, eps=1e-6)
    torch.save(saved, tmp_path / "old.ckpt")

    resume = fit_config(tmp_path, world, tiny_sd_path, trainer={"max_steps": 2, "enable_checkpointing": True}, callbacks=[])
    cli = main(["fit", "-c", str(resume), f"--ckpt_path={tmp_path / 'old.ckpt'}"])
    assert cli.trainer.global_step == 2
    optimizer = cli.trainer.optimizers[0]
    assert type(optimizer) is torch.optim.AdamW
    assert {k: optimizer.defaults[k] for k in ("lr", "weight_decay", "eps")} == {"lr": 3e-3, "weight_decay": 0.0, "eps": 1e-6}
    assert list(optimizer.defaults["betas"]) == [0.8, 0.99]
    assert cli.model.hparams.optimizer["init_args"]["lr"] == 3e-3 and "learning_rate" not in cli.model.hparams


def test_exported_adapter_file_gets_the_permissions_of_a_plain_open(tmp_path, tiny_sd_path):
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_path, subfolder="unet")
    attach_lora(unet, rank=2, alpha=2.0, targets=["to_q"], init="gaussian", component="UNet")
    previous = os.umask(0o022)
    try:
        weights = save_lora_weights(tmp_path / "lora", "sd", unet)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644  # readable by the team sharing runs/, not 0600
    assert [p.name for p in weights.parent.iterdir()] == [LORA_WEIGHTS_FILE]  # no temporary folder left


def test_an_adapter_on_convolutions_and_attention_reloads_whole(tmp_path, tiny_sd_path):
    """Every adapted layer comes back in a fresh pipeline, convolutions and linear layers alike."""
    from peft.tuners.lora import LoraLayer

    pipeline = StableDiffusionPipeline.from_pretrained(tiny_sd_path, safety_checker=None, use_safetensors=True)
    attach_lora(pipeline.unet, 4, 4.0, ["to_q", "to_out.0", "conv1"], "gaussian", "UNet")
    adapted = sorted(name for name, module in pipeline.unet.named_modules() if isinstance(module, LoraLayer))
    assert any("conv1" in name for name in adapted) and any("to_q" in name for name in adapted)
    save_lora_weights(tmp_path / "lora", "sd", pipeline.unet)
    fresh = StableDiffusionPipeline.from_pretrained(tiny_sd_path, safety_checker=None, use_safetensors=True)
    fresh.load_lora_weights(str(tmp_path / "lora"), weight_name=LORA_WEIGHTS_FILE)
    assert sorted(name for name, module in fresh.unet.named_modules() if isinstance(module, LoraLayer)) == adapted
