"""SD-XL and SD 3.5 through the same stages as SD 2.1: LoRA fine-tuning, export, resume, generation, DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline
from lightning.pytorch import Callback
from safetensors import safe_open

from bob.cli import main
from bob.data.errors import BobInputError
from bob.modules import LoRAFineTuner, SyntheticImageGenerator
from bob.modules.diffusion.lora import LORA_WEIGHTS_FILE
from tests.generation_world import generation_config, planned_lines
from tests.generation_world import make_world as make_generation_world
from tests.t2i_fixtures import adamw, fit_config, make_world, manifest, one_torch_thread  # noqa: F401
from tests.test_t2i_export import RecordRestoredWeights, generate

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
#: family -> (fixture of its tiny model, pipeline class, denoiser key, LoRA targets of the overfit test)
FAMILIES = {
    # The tiny SD-XL UNet has attention at one level only: LoRA also on its convolutions.
    "sdxl": ("tiny_sdxl_path", StableDiffusionXLPipeline, "unet", ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]),
    # SD3's joint attention (the paper's targets exist in both of its streams), and for the tiny
    # model's sake its feed-forward and output layers.
    "sd3": ("tiny_sd3_path", StableDiffusion3Pipeline, "transformer",
            ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj", "add_q_proj", "to_add_out", "net.2",
             "proj_out"]),
}


@pytest.fixture(params=list(FAMILIES))
def family(request):
    fixture, pipeline_class, denoiser, targets = FAMILIES[request.param]
    return {"name": request.param, "path": request.getfixturevalue(fixture), "pipeline": pipeline_class,
            "denoiser": denoiser, "targets": targets}


def fixed_noise_loss(module: LoRAFineTuner, batch: dict, draws: int = 8) -> float:
    with torch.no_grad():
        return sum(float(module.denoising_loss(batch, torch.Generator().manual_seed(s))) for s in range(draws)) / draws


def test_fit_trains_both_clip_encoders_and_the_export_reproduces_it(tmp_path, family):
    world = make_world(tmp_path, shots=1)
    config = fit_config(
        tmp_path, world, family["path"],
        model={"optimizer": adamw(1e-2), "unet_rank": 8, "unet_alpha": 8.0, "unet_targets": family["targets"]},
        trainer={"max_steps": 60},
        data={"shots": 1, "batch_size": 3},
    )
    trained = main(["fit", "-c", str(config)]).model
    assert trained.parts.family == family["name"] and trained.text_encoder_2 is not None

    # Training conditions the denoiser as the model's pipeline does: the same prompt embeddings
    # (both CLIP encoders' penultimate layers side by side; SD3: then T5's) and pooled embedding.
    prompts = [trained.prompt(0, {"background": "sea", "pose": "landing"}), trained.prompt(2, {"background": "grass", "pose": "parked"})]
    trained.eval()
    with torch.no_grad():
        hidden, pooled = trained.encode_prompts(prompts)
        # SD3 asks for the prompts of its second and third encoders (None: the same prompt).
        more = {"prompt_2": None, "prompt_3": None} if family["name"] == "sd3" else {}
        theirs = trained.pipeline().encode_prompt(prompts, device=trained.device, do_classifier_free_guidance=False, **more)
        torch.testing.assert_close(hidden, theirs[0])
        torch.testing.assert_close(pooled, theirs[2])
        in_training = generate(trained.pipeline(), prompts)

    # The loss on the shots went down against the base model (LoRA B starts at zero).
    data = trained.trainer.datamodule
    batch = next(iter(data.records_dataloader(data.split.train, train=False, shuffle=False)))
    base = LoRAFineTuner(**trained.init_arguments())
    base.configure_model()
    before, after = fixed_noise_loss(base, batch), fixed_noise_loss(trained, batch)
    assert after < 0.8 * before, (before, after)

    exported = manifest(tmp_path / "lora")
    assert exported["lora"]["text_encoder_2"]["targets"] == exported["lora"]["text_encoder"]["targets"]
    assert exported["lora"][family["denoiser"]]["targets"] == family["targets"]
    with safe_open(str(tmp_path / "lora" / LORA_WEIGHTS_FILE), framework="pt") as weights:
        prefixes = {key.split(".")[0] for key in weights.keys()}
    assert prefixes == {family["denoiser"], "text_encoder", "text_encoder_2"}

    # A fresh pipeline with the adapter loaded by the generation stage draws the same images.
    fresh = DiffusionPipeline.from_pretrained(family["path"], use_safetensors=True)
    base_images = generate(fresh, prompts)
    generator = SyntheticImageGenerator(str(family["path"]), lora=str(tmp_path / "lora"), dtype="float32")
    pipeline = generator.load("cpu")
    assert isinstance(pipeline, family["pipeline"])
    reloaded = generate(pipeline, prompts)
    assert (reloaded - base_images).abs().max() > 1e-3
    torch.testing.assert_close(reloaded, in_training, atol=1e-4, rtol=1e-4)


def test_checkpoint_resumes_with_both_clip_encoders(tmp_path, family):
    world = make_world(tmp_path)
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}
    config = fit_config(tmp_path, world, family["path"], model={"optimizer": adamw(1e-2)},
                        trainer={"max_steps": 2, "enable_checkpointing": True}, callbacks=[checkpoint])
    main(["fit", "-c", str(config)])
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    keys = list(saved["state_dict"])
    assert all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert {k.split(".")[0] for k in keys} == {family["denoiser"], "text_encoder", "text_encoder_2"}

    recorder = {"class_path": "tests.test_t2i_export.RecordRestoredWeights"}
    resume = fit_config(tmp_path, world, family["path"], model={"optimizer": adamw(1e-2)},
                        trainer={"max_steps": 3, "enable_checkpointing": True}, callbacks=[checkpoint, recorder])
    cli = main(["fit", "-c", str(resume), f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}"])
    restored = next(c for c in cli.trainer.callbacks if isinstance(c, RecordRestoredWeights))
    assert restored.step == 2 and cli.trainer.global_step == 3
    for name, value in saved["state_dict"].items():
        torch.testing.assert_close(restored.weights[name], value)


@pytest.mark.slow
def test_ddp_fit_and_generation_match_one_process(tmp_path, family):
    """Two DDP processes: fine-tuning keeps the effective batch, and generation with the adapter
    makes the set one process makes (each image from its own seed)."""
    export = {"class_path": "LoRAExport", "init_args": {"dirpath": str(tmp_path / "lora")}}
    config = fit_config(
        tmp_path, make_world(tmp_path), family["path"], model={"effective_batch_size": 6}, data={"batch_size": 1},
        trainer={"max_epochs": 1, "max_steps": -1, "strategy": "ddp", "devices": 2}, callbacks=[export],
    )
    result = subprocess.run([sys.executable, "main.py", "fit", "-c", str(config)], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    training = manifest(tmp_path / "lora")["training"]
    assert training["world_size"] == 2 and training["accumulate_grad_batches"] == 3 and training["global_step"] == 1

    world = make_generation_world(tmp_path / "gen")
    sets = {}
    for devices in (1, 2):
        output = tmp_path / f"set_{devices}"
        trainer = {"devices": devices, **({"strategy": "ddp"} if devices == 2 else {})}
        generate_config = generation_config(tmp_path / f"gen_{devices}.yaml", world, family["path"], output,
                                            lora=tmp_path / "lora", data={"batch_size": 2}, trainer=trainer)
        result = subprocess.run([sys.executable, "-m", "bob", "predict", "-c", str(generate_config)], cwd=tmp_path,
                                env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        sets[devices] = output
    assert planned_lines(sets[1]) == planned_lines(sets[2]) and len(planned_lines(sets[1])) == 12
    from PIL import Image

    for line in planned_lines(sets[1]):
        one, two = (np.asarray(Image.open(sets[d] / line["file"]), dtype=np.int16) for d in (1, 2))
        assert one.shape == (64, 64, 3) and np.abs(one - two).max() <= 1, line["key"]


def test_sd3_prompts_must_fit_t5s_256_tokens_not_clips_77(tiny_sd3_path, tiny_sdxl_path):
    """SD3's T5 carries the whole prompt, so a context too long for CLIP is kept whole (the CLIP
    encoders see its first 77 tokens, as in the pipeline); on SD-XL it is shortened to fit."""
    context = {"background": "a grass strip beside a long runway with hangars", "pose": "taxiing slowly to the gate"}
    shortened = {}
    for name, path in (("sd3", tiny_sd3_path), ("sdxl", tiny_sdxl_path)):
        module = LoRAFineTuner(str(path), prompt_names=["boeing"], descriptor="aircraft")
        module.configure_model()
        prompt = module.template.format("boeing", context)
        # The tiny tokenizers split into characters: this prompt is over CLIP's limit, within T5's.
        assert 77 < len(module.parts.tokenizer(prompt).input_ids)
        shortened[name] = module.fit_context(0, context)[1]
        if name == "sd3":
            assert len(module.parts.tokenizer_3(prompt).input_ids) < 256 and module.prompt_limit[1] == 256
            assert len(module.encode_prompts([prompt])[0][0]) == 77 + 256  # CLIP's tokens, then T5's
    assert shortened["sd3"] == [] and shortened["sdxl"]

    generator = SyntheticImageGenerator(str(tiny_sd3_path), scheduler="dpm_solver")
    with pytest.raises(BobInputError, match="flow-matching"):
        generator.load("cpu")


def test_crop_corner_rides_through_the_transform():
    """The reported corner is where the crop really starts in the resized image."""
    from torchvision.transforms import v2

    from bob.datamodules.real_images import transform_with_crop_corner

    image = torch.randint(0, 256, (3, 60, 100), dtype=torch.uint8)
    resized = v2.Resize(48)(image)  # 48 x 80
    for seed in range(5):
        torch.manual_seed(seed)
        out, (top, left) = transform_with_crop_corner(v2.Compose([v2.Resize(48), v2.RandomCrop(32)]), image)
        torch.testing.assert_close(out, resized[:, top : top + 32, left : left + 32])
    assert transform_with_crop_corner(v2.Compose([v2.Resize(48), v2.CenterCrop(32)]), image)[1] == (8, 24)


class RecordTimeIds(torch.nn.Module):
    """Wraps a UNet's forward to keep the ``time_ids`` of every training call."""

    def __init__(self, unet):
        super().__init__()
        self.seen = []
        self.forward_of = unet.forward

        def forward(*args, **kwargs):
            if torch.is_grad_enabled():
                self.seen.append(kwargs["added_cond_kwargs"]["time_ids"].detach().cpu())
            return self.forward_of(*args, **kwargs)

        unet.forward = forward


class TimeIdsCallback(Callback):
    def on_train_start(self, trainer, pl_module):
        self.recorder = RecordTimeIds(pl_module.unet)


@pytest.mark.parametrize("mode", ["batch", "latent_crops"])
def test_sdxl_conditions_each_image_on_its_size_and_crop(tmp_path, tiny_sdxl_path, mode):
    """SD-XL's time ids are (original size, crop corner, target size) per image, as diffusers'
    SD-XL training computes them: from the batch when images are served, from the encoding before
    training plus each step's window with latent crops."""
    from tests.test_latent_crops import RESIZE_THEN_CROP  # Resize to 72 x 90, RandomCrop 64

    world = make_world(tmp_path, shots=2)
    model = {"latent_crops": True} if mode == "latent_crops" else {"latent_cache_views": 0}
    config = fit_config(tmp_path, world, tiny_sdxl_path, model=model, trainer={"max_steps": 4},
                        data={"train_transform": RESIZE_THEN_CROP},
                        callbacks=[{"class_path": "tests.test_t2i_families.TimeIdsCallback"}])
    cli = main(["fit", "-c", str(config)])
    recorder = next(c for c in cli.trainer.callbacks if isinstance(c, TimeIdsCallback)).recorder
    rows = torch.cat(recorder.seen)
    assert len(rows) == 4 * 2
    assert (rows[:, :2] == 32).all()  # the fake photos are 32 x 32 files
    assert (rows[:, 4:] == 64).all()  # the training size
    tops, lefts = rows[:, 2], rows[:, 3]
    assert (tops >= 0).all() and (tops <= 72 - 64).all() and (lefts >= 0).all() and (lefts <= 90 - 64).all()
    assert len(set(map(tuple, rows[:, 2:4].tolist()))) > 1  # random crops, not one fixed corner
    if mode == "latent_crops":
        # Windows on the 8 px grid of the resized image trimmed to 72 x 88 (one column off each side).
        assert ((tops % 8) == 0).all() and ((lefts % 8) == 1).all()


@pytest.mark.slow
@pytest.mark.parametrize("overlay, fixture", [("sdxl", "tiny_sdxl_path"), ("sd35", "tiny_sd3_path")])
def test_shipped_overlays_fine_tune_and_generate(tmp_path, monkeypatch, overlay, fixture, request):
    """`fit -c t2i.yaml -c datasets/aircraft.yaml -c t2i/datadream.yaml -c t2i/<model>.yaml`, then the
    matching generation command, on the tiny model with size overrides only."""
    import yaml

    from bob.data import FGVCAircraft
    from tests.fake_data import make_fgvc_aircraft
    from tests.test_paper_path import CONFIGS, SMALL

    monkeypatch.chdir(tmp_path)  # the configs' run folders are relative: runs/...
    model = request.getfixturevalue(fixture)
    root = make_fgvc_aircraft(tmp_path / "data" / "aircraft", train_per_class=6)
    # A seeded split instead of the paper's Diff-II folders (test_paper_path runs those).
    common = [f"--data.init_args.dataset.init_args.root={root}", "--data.init_args.split_source=null",
              f"--model.init_args.base_model={model}"]

    def run(subcommand: str, stage: str) -> Any:
        small = tmp_path / f"small_{stage}.yaml"
        small.write_text(yaml.safe_dump(SMALL[stage]))
        files = [f"{stage}.yaml", "datasets/aircraft.yaml", f"{stage}/datadream.yaml", f"{stage}/{overlay}.yaml"]
        return main([subcommand, *(a for f in files for a in ("-c", str(CONFIGS / f))), "-c", str(small), *common])

    cli = run("fit", "t2i")
    assert cli.model.parts.family == ("sd3" if overlay == "sd35" else "sdxl") and cli.model.hparams.gradient_checkpointing
    lora = Path(f"runs/aircraft/lora/datadream-{overlay}_5shot_seed0")
    assert json.loads((lora / "manifest.json").read_text())["prompt_mode"] == "class"
    run("predict", "generate")
    synthetic = Path(f"runs/aircraft/synthetic/datadream-{overlay}_5shot_seed0")
    summary = json.loads((synthetic / "manifest.json").read_text())
    assert summary["complete"] and summary["num_images"] == 3 * len(FGVCAircraft(str(root)).class_names)
