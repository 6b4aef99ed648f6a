"""The toy prior: its pretraining stages run through the CLI, and the shipped folder is a normal pipeline."""

import json

import torch
from transformers import CLIPTokenizer

from bob.cli import main
from bob.toyworld.pipeline import default_configs, default_prior
from bob.toyworld.tokenizer import write_tokenizer_files


def test_pretraining_stages_export_a_loadable_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    configs = default_configs()
    vae_dir, prior_dir = tmp_path / "vae", tmp_path / "prior"
    # default_root_dir: with no logger, the saved config.yaml would land in the working directory.
    tiny_data = [
        "--data.init_args.pool_size=16", "--data.init_args.batch_size=4", "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    main([
        "fit", "-c", str(configs / "prior_vae.yaml"), "--trainer.max_steps=2", *tiny_data,
        f"--model.init_args.output_dir={vae_dir}", "--model.init_args.channels=[8,16,16]",
    ])
    assert json.loads((vae_dir / "training.json").read_text())["steps"] == 2
    main([
        "fit", "-c", str(configs / "prior.yaml"), "--trainer.max_steps=2", *tiny_data,
        "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        f"--model.init_args.vae={vae_dir}", f"--model.init_args.output_dir={prior_dir}",
        "--model.init_args.unet_channels=[32,32,32]", "--model.init_args.text_hidden_size=32",
        "--model.init_args.export_every_n_steps=1",
    ])
    card = (prior_dir / "README.md").read_text()
    assert "2 steps at batch 4" in card and "python -m bob.toyworld.pretrain" in card
    pipeline = StableDiffusionPipeline.from_pretrained(prior_dir, safety_checker=None)
    assert pipeline.unet.dtype == torch.float32  # stored in fp16, loaded as fp32 on a CPU
    image = pipeline("an aircraft photo of a jetliner", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3)


def test_shipped_prior_is_small_complete_and_uses_the_world_vocabulary(tmp_path):
    prior = default_prior()
    size = sum(f.stat().st_size for f in prior.rglob("*") if f.is_file())
    assert size < 21 * 2**20
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (prior / part).is_dir()
    card = (prior / "README.md").read_text()
    assert "Reproduce" in card and "wall time" in card
    facts = json.loads((prior / "training.json").read_text())
    assert facts["steps"] > 0 and facts["final_loss_ema"] is not None
    write_tokenizer_files(tmp_path)
    shipped = CLIPTokenizer.from_pretrained(prior / "tokenizer")
    assert shipped.get_vocab() == json.loads((tmp_path / "vocab.json").read_text())
