"""The toy prior: its pretraining stages run through the CLI, and the shipped folder is a normal pipeline."""

import json
import math

import numpy as np
import pytest
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
        f"--trainer.default_root_dir={tmp_path}", f"--data.init_args.cache_dir={tmp_path / 'pool'}",
    ]
    main([
        "fit", "-c", str(configs / "prior_vae.yaml"), "--trainer.max_steps=2", *tiny_data,
        f"--model.init_args.output_dir={vae_dir}", "--model.init_args.channels=[8,16]",
        "--model.init_args.latent_channels=4", "--model.init_args.object_weight=5",
    ])
    facts = json.loads((vae_dir / "training.json").read_text())
    assert facts["steps"] == 2 and facts["finished"] and facts["object_weight"] == 5
    main([
        "fit", "-c", str(configs / "prior.yaml"), "--trainer.max_steps=2", *tiny_data,
        "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        f"--model.init_args.vae={vae_dir}", f"--model.init_args.output_dir={prior_dir}",
        "--model.init_args.unet_channels=[32,32,32,32]", "--model.init_args.plain_levels=2",
        "--model.init_args.text_hidden_size=32", "--model.init_args.object_weight=5",
        "--model.init_args.export_every_n_steps=1",
    ])
    card = (prior_dir / "README.md").read_text()
    assert json.loads((prior_dir / "training.json").read_text())["hyperparameters"]["object_weight"] == 5
    assert "2 steps at batch 4" in card and "python -m bob.toyworld.pretrain" in card
    assert "velocity MSE" in card and "zero terminal SNR, v-prediction" in card  # the shipped config's recipe
    assert "Trained with the UNet." in card and "(UNet and text encoder; VAE above)" in card
    pipeline = StableDiffusionPipeline.from_pretrained(prior_dir, safety_checker=None)
    assert pipeline.unet.dtype == torch.float32  # stored in fp16, loaded as fp32 on a CPU
    assert pipeline.scheduler.config.timestep_spacing == "trailing"
    assert pipeline.unet.config.sample_size == 32 and pipeline.unet.config.in_channels == 4
    assert pipeline.unet.config.down_block_types == ["DownBlock2D"] * 2 + ["CrossAttnDownBlock2D"] * 2
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
    # The card's attention line is what the exporter writes for the shipped UNet's own config.
    unet_config = json.loads((prior / "unet" / "config.json").read_text())
    assert unet_config["attention_head_dim"] == 32 and "8x8 and 4x4 (32 heads of 4 channels)" in card
    facts = json.loads((prior / "training.json").read_text())
    assert facts["steps"] > 0 and facts["final_loss_ema"] is not None
    write_tokenizer_files(tmp_path)
    shipped = CLIPTokenizer.from_pretrained(prior / "tokenizer")
    assert shipped.get_vocab() == json.loads((tmp_path / "vocab.json").read_text())


def test_pretraining_command_skips_finished_vae_rounds_and_continues_stage_b(tmp_path, monkeypatch, capsys):
    from bob.toyworld import pretrain
    from bob.toyworld.model_card import write_training_facts

    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(pretrain, "cli_main", calls.append)
    write_training_facts("runs/toyworld/prior_vae/round1", {"steps": 10, "finished": True})
    pretrain.main(["--output", "out"])
    assert len(calls) == 1 and "prior.yaml" in calls[0][2]  # stage A was complete
    assert not any(a.startswith("--ckpt_path") for a in calls[0])

    write_training_facts("runs/toyworld/prior_vae/round1", {"steps": 4, "finished": False})
    (tmp_path / "runs/toyworld/prior_checkpoints").mkdir(parents=True)
    (tmp_path / "runs/toyworld/prior_checkpoints/last.ckpt").write_bytes(b"")
    calls.clear()
    pretrain.main(["--output", "out"])
    assert "prior_vae.yaml" in calls[0][2] and "prior.yaml" in calls[1][2]  # unfinished round runs again
    assert "--ckpt_path=runs/toyworld/prior_checkpoints/last.ckpt" in calls[1]
    calls.clear()
    (tmp_path / "runs/toyworld/prior_vae/round1/config.json").write_text("{}")  # the round's VAE
    pretrain.main(["--output", "out", "--skip-vae", "--steps", "5000"])  # continue further than the config says
    assert calls[0][-2:] == ["--ckpt_path=runs/toyworld/prior_checkpoints/last.ckpt", "--trainer.max_steps=5000"]
    calls.clear()
    pretrain.main(["--output", "out", "--skip-vae", "--restart"])
    assert len(calls) == 1 and not any(a.startswith("--ckpt_path") for a in calls[0])
    calls.clear()
    pretrain.main(["--output", "out", "--skip-vae", "--restart", "--accelerator", "gpu", "--max-minutes", "90.5"])
    assert calls[0][-2:] == ["--trainer.accelerator=gpu", "--trainer.max_time=00:01:30:30"]
    with pytest.raises(SystemExit):
        pretrain.main(["--output", "out", "--max-minutes", "0"])
    # A lever run keeps its own checkpoints (continued from there) and passes its overrides on.
    (tmp_path / "lever").mkdir()
    (tmp_path / "lever/last.ckpt").write_bytes(b"")
    calls.clear()
    pretrain.main(["--output", "out", "--skip-vae", "--checkpoints", "lever", "--set=--model.init_args.train_text_encoder=false"])
    assert calls[0][-3:] == [
        "--trainer.callbacks.init_args.dirpath=lever", "--model.init_args.train_text_encoder=false", "--ckpt_path=lever/last.ckpt",
    ]
    # Skipping stage A needs its VAE, or another one named.
    (tmp_path / "runs/toyworld/prior_vae/round1/config.json").unlink()
    with pytest.raises(SystemExit):
        pretrain.main(["--output", "out", "--skip-vae"])
    assert "holds no VAE" in capsys.readouterr().err
    calls.clear()
    pretrain.main(["--output", "out", "--skip-vae", "--set=--model.init_args.vae=shipped/vae"])
    assert "--model.init_args.vae=shipped/vae" in calls[0]


def test_a_checkpoint_folder_override_reaches_the_prior_configs_checkpoint_callback():
    from pathlib import Path

    cli = main(["-c", str(default_configs() / "prior.yaml"), "--trainer.callbacks.init_args.dirpath=elsewhere",
                "--trainer.logger=false"], run=False)
    assert Path(cli.trainer.checkpoint_callback.dirpath).name == "elsewhere"


def test_round_trip_ceiling_is_the_oracle_accuracy_through_the_autoencoder():
    import numpy as np

    from bob.toyworld.oracle import ClassOracle
    from bob.toyworld.render import render
    from bob.toyworld.round_trip import oracle_round_trip_accuracy, random_scenes
    from bob.toyworld.variants import FEWSHOT_VARIANTS

    class Lossless:
        """Encodes to the image itself: the ceiling is then the oracle's accuracy on renders."""

        def encode(self, x):
            return type("Encoded", (), {"latent_dist": type("Posterior", (), {"mean": x})()})()

        def decode(self, z):
            return type("Decoded", (), {"sample": z})()

    class Blank(Lossless):
        def decode(self, z):
            return super().decode(torch.zeros_like(z))

    oracle = ClassOracle(renders_per_class=6, steps=40)
    labels = np.repeat(np.arange(len(FEWSHOT_VARIANTS)), 3)
    scenes = random_scenes([FEWSHOT_VARIANTS[c] for c in labels], 4242)
    direct = float(np.mean(oracle.predict([render(s) for s in scenes]) == labels))
    assert oracle_round_trip_accuracy(Lossless(), oracle, per_class=3) == direct
    # A decoder that erases the image leaves one prediction for every image: chance.
    assert oracle_round_trip_accuracy(Blank(), oracle, per_class=3) == 1 / len(FEWSHOT_VARIANTS)


def test_vae_eval_reports_the_ceiling_of_each_autoencoder(tmp_path, capsys):
    from bob.toyworld.pretrain_vae import build_vae
    from bob.toyworld.vae_eval import main as vae_eval

    build_vae((8, 16), latent_channels=4).save_pretrained(tmp_path / "vae")
    results = vae_eval([str(tmp_path / "vae"), "--per-class", "2", "--oracle-steps", "20", "--oracle-renders", "4"])
    row = results[str(tmp_path / "vae")]
    assert 0.0 <= row["oracle_after_round_trip"] <= 1.0
    assert row["share_of_render_accuracy"] == row["oracle_after_round_trip"] / results["oracle_on_renders"]
    assert row["posterior_std"] > 0 and row["mean_std"] > 0
    assert json.loads(capsys.readouterr().out) == results


def test_posterior_spread_compares_the_posterior_width_with_the_spread_of_its_means():
    from types import SimpleNamespace

    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from bob.toyworld.round_trip import posterior_spread, random_scenes
    from bob.toyworld.variants import FEWSHOT_VARIANTS

    class Encoder:  # the mean is each image's average pixel, the standard deviation 0.5 everywhere
        def encode(self, pixels):
            mean = pixels.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 4, 8, 8)
            self.means = torch.cat([self.means, mean]) if hasattr(self, "means") else mean
            return SimpleNamespace(latent_dist=DiagonalGaussianDistribution(torch.cat([mean, torch.full_like(mean, 2 * math.log(0.5))], 1)))

    encoder = Encoder()
    spread = posterior_spread(encoder, random_scenes(FEWSHOT_VARIANTS[:6], seed=0), batch_size=4)  # two batches
    assert spread["posterior_std"] == pytest.approx(0.5)
    assert spread["mean_std"] == pytest.approx(float(encoder.means.std())) and spread["mean_std"] > 0


def test_v_prediction_prior_is_trained_to_and_sampled_from_pure_noise():
    from bob.toyworld.pretrain_prior import ToyPriorPretraining
    from bob.toyworld.prior_parts import build_sampling_scheduler, build_training_scheduler

    training = build_training_scheduler("v_prediction", zero_terminal_snr=True)
    assert float(training.alphas_cumprod[-1]) == 0.0  # the last training step is pure noise
    sampling = build_sampling_scheduler(training)
    sampling.set_timesteps(20)
    assert sampling.config.prediction_type == "v_prediction" and int(sampling.timesteps[0]) == 999
    epsilon = build_sampling_scheduler(build_training_scheduler())
    epsilon.set_timesteps(20)
    assert int(epsilon.timesteps[0]) < 960  # an epsilon model cannot start at zero signal
    with pytest.raises(ValueError, match="v_prediction"):
        build_training_scheduler("epsilon", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="v_prediction"):
        ToyPriorPretraining(zero_terminal_snr=True)
    with pytest.raises(ValueError, match="'epsilon' or 'v_prediction'"):
        ToyPriorPretraining(prediction_type="sample")
    # An epsilon run's checkpoint (it has no prediction_type) is not continued as a v-prediction run.
    module = ToyPriorPretraining(prediction_type="v_prediction", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="prediction_type='epsilon'.*--restart"):
        module.on_load_checkpoint({"hyper_parameters": {"min_snr_gamma": 5.0}})
    module.on_load_checkpoint({"hyper_parameters": {"prediction_type": "v_prediction", "zero_terminal_snr": True}})


def test_name_conditioning_compares_true_and_other_names_on_the_same_noise():
    from bob.toyworld.prior_eval import name_conditioning

    torch.set_num_threads(1)
    result = name_conditioning(str(default_prior()), images=6, timesteps=(300, 900))
    assert result["name_conditioning_images"] == 6 and set(result["name_conditioning_loss"]) == {"300", "900"}
    for row in result["name_conditioning_loss"].values():
        assert row["true_name"] > 0 and row["other_name"] > 0
        assert any(abs(row["true_name_lower_share"] - i / 6) < 1e-6 for i in range(7))  # a share of 6 images


def test_broad_pool_is_rendered_once_and_read_back_from_its_cache(tmp_path, monkeypatch):
    import bob.toyworld.broad_world as broad_world

    first = broad_world.BroadWorldDataModule(pool_size=6, seed=3, cache_dir=str(tmp_path))
    first.setup("fit")
    files = list(tmp_path.glob("broad_pool_6_*.npz"))
    assert len(files) == 1

    def no_rendering(scene):
        raise AssertionError("the cached pool was rendered again")

    monkeypatch.setattr(broad_world, "render_with_mask", no_rendering)
    second = broad_world.BroadWorldDataModule(pool_size=6, seed=3, cache_dir=str(tmp_path))
    second.setup("fit")
    assert torch.equal(second._dataset.images, first._dataset.images)
    assert torch.equal(second._dataset.masks, first._dataset.masks)
    # Another pool is another file, rendered (here: refused) rather than read from this one.
    other = broad_world.BroadWorldDataModule(pool_size=6, seed=4, cache_dir=str(tmp_path))
    with pytest.raises(AssertionError, match="rendered again"):
        other.setup("fit")


def test_frozen_text_encoder_stays_at_its_initialisation_while_the_unet_trains():
    from bob.toyworld.pretrain_prior import ToyPriorPretraining

    torch.manual_seed(0)
    module = ToyPriorPretraining(
        vae=str(default_prior() / "vae"), unet_channels=(32, 32, 32, 32), plain_levels=2, text_hidden_size=32,
        train_text_encoder=False, prediction_type="v_prediction", zero_terminal_snr=True, warmup_steps=0,
        optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-2}},
    )
    module.configure_model()
    text_before = {k: v.clone() for k, v in module.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in module.unet.state_dict().items()}
    optimizer = module.configure_optimizers()["optimizer"]
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in module.unet.parameters()}  # the text encoder is not optimised
    batch = {"image": torch.rand(2, 3, 64, 64), "index": torch.tensor([0, 1]),
             "caption": ["an aircraft photo of a jetliner", "an aircraft photo of a glider"]}
    for _ in range(2):
        optimizer.zero_grad()
        module.training_step(batch, 0).backward()
        optimizer.step()
        module._update_ema()
    assert all(torch.equal(v, module.text_encoder.state_dict()[k]) for k, v in text_before.items())
    assert module.ema_text_encoder is module.text_encoder  # what is exported is the frozen encoder
    assert any(not torch.equal(v, module.unet.state_dict()[k]) for k, v in unet_before.items())
    # A run with a trained text encoder is not continued as one with a frozen encoder.
    with pytest.raises(ValueError, match="train_text_encoder=True"):
        module.on_load_checkpoint({"hyper_parameters": {"prediction_type": "v_prediction", "zero_terminal_snr": True}})


def test_pooled_text_reaches_the_unet_without_cross_attention_and_loads_in_the_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    from bob.modules.diffusion.components import load_stable_diffusion
    from bob.toyworld.model_card import model_card
    from bob.toyworld.prior_parts import build_unet

    shipped = StableDiffusionPipeline.from_pretrained(str(default_prior()), safety_checker=None, dtype=torch.float32)
    torch.manual_seed(1)
    text = torch.randn(2, shipped.tokenizer.model_max_length, 128)  # two prompts' encodings
    latents, t = torch.randn(1, 4, 32, 32).repeat(2, 1, 1, 1), torch.tensor([500, 500])
    outputs = {}
    for pooled in (False, True):
        torch.manual_seed(0)
        unet = build_unet((32, 32, 32, 32), 128, 32, 4, plain_levels=2, pooled_text=pooled)
        assert (unet.config.addition_embed_type == "text") is pooled
        # With cross-attention silenced, only the pooled path can carry the prompt.
        for name, parameter in unet.named_parameters():
            if "attn2.to_out" in name:
                torch.nn.init.zeros_(parameter)
        with torch.no_grad():
            outputs[pooled] = unet(latents, t, text).sample
    assert torch.allclose(outputs[False][0], outputs[False][1])
    assert (outputs[True][0] - outputs[True][1]).abs().max() > 1e-4
    assert "added to the timestep embedding" in model_card({}, {}, {**shipped.components, "unet": unet}, "x")
    # The real pipeline runs such a UNet unchanged.
    folder = tmp_path / "prior"
    shipped.save_pretrained(folder)
    unet.save_pretrained(folder / "unet")
    assert load_stable_diffusion(str(folder)).unet.config.addition_embed_type == "text"  # as the stages load it
    reloaded = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, dtype=torch.float32)
    image = reloaded("an aircraft photo of a glider", num_inference_steps=2, height=64, width=64, output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_prior_eval_reports_name_distinctness_for_families_broad_and_fewshot_names():
    from bob.toyworld.prior_eval import name_distinctness_by_kind

    rows = name_distinctness_by_kind(str(default_prior()))["name_distinctness"]
    assert set(rows) == {"families", "broad_names", "fewshot_names"}
    assert all(0.0 < value < 2.0 for value in rows.values())


def test_the_diffusion_classifier_reads_the_background_the_shipped_prior_follows():
    # The shipped prior draws the prompted background (docs/toyworld.md), so the same measurement
    # that finds its names ignored must find its background words used: well above 1/8 here.
    from bob.toyworld.prior_eval import background_reading

    torch.set_num_threads(1)
    result = background_reading(str(default_prior()), images_per_background=2, timesteps=(900,))
    reading = result["background_reading_by_diffusion_classifier"]
    assert reading["images"] == 16 and reading["chance"] == pytest.approx(1 / 8)
    assert reading["all_timesteps"] >= 0.5


def test_attention_head_width_sets_the_heads_of_every_attention_level_and_the_model_card_says_so():
    from diffusers import StableDiffusionPipeline

    from bob.toyworld.model_card import model_card
    from bob.toyworld.pretrain_prior import ToyPriorPretraining
    from bob.toyworld.prior_parts import build_unet

    def widths(unet) -> set[tuple[int, int]]:
        attentions = [m for name, m in unet.named_modules() if name.endswith(("attn1", "attn2"))]
        assert attentions
        return {(m.heads, m.inner_dim // m.heads) for m in attentions}

    # The default width keeps the shipped layout: 32 heads of 4 channels at 128 channels.
    assert widths(build_unet((32, 64, 128, 128), 128, 32, 4, plain_levels=2)) == {(32, 4)}
    wide = build_unet((32, 64, 128, 128), 128, 32, 4, plain_levels=2, attention_head_width=32)
    assert widths(wide) == {(4, 32)}
    with pytest.raises(ValueError, match="attention_head_width=48 must divide"):
        build_unet((32, 64, 128, 128), 128, 32, 4, plain_levels=2, attention_head_width=48)
    shipped = StableDiffusionPipeline.from_pretrained(str(default_prior()), safety_checker=None, dtype=torch.float32)
    card = model_card({}, {}, {**shipped.components, "unet": wide}, "x")
    assert "cross-attention at 8x8 and 4x4 (4 heads of 32 channels)" in card
    # The pretraining module passes its setting to the UNet it builds.
    module = ToyPriorPretraining(
        vae=str(default_prior() / "vae"), unet_channels=(32, 32, 32, 32), plain_levels=2, text_hidden_size=32,
        attention_head_width=16,
    )
    module.configure_model()
    assert widths(module.unet) == {(2, 16)}


def test_part_agreement_counts_each_part_against_its_chance_over_the_classes():
    from bob.toyworld.prior_eval import part_agreement
    from bob.toyworld.variants import PART_NAMES, Variant

    a = Variant("Aaaaa", "swept", 2, "red", "none", "white", "body")
    b = Variant("Bbbbb", "swept", 4, "blue", "none", "white", "black")
    c = Variant("Ccccc", "delta", 0, "red", "yellow", "tan", "body")
    d = Variant("Ddddd", "glider", 0, "green", "none", "white", "red")
    # Named a, a, b, c; the classifier picked b, a, b, d.
    rows = part_agreement([b, a, b, d], [a, a, b, c], [a, b, c, d])
    assert list(rows) == list(PART_NAMES)
    assert rows["wing"]["share"] == pytest.approx(3 / 4)  # swept, swept, swept agree; glider is not delta
    assert rows["engines"]["share"] == pytest.approx(3 / 4)  # 4 is not 2; the glider and the delta both have 0
    assert rows["tail"]["share"] == pytest.approx(2 / 4)
    assert rows["wingtip"]["share"] == pytest.approx(3 / 4)
    assert rows["body"]["share"] == pytest.approx(3 / 4)
    assert rows["nose"]["share"] == pytest.approx(2 / 4)
    # Chance: two of the four classes drawn uniformly share the value (wing: 2 swept, 1 delta, 1 glider).
    assert rows["wing"]["chance"] == pytest.approx((2 / 4) ** 2 + 2 * (1 / 4) ** 2)
    assert rows["body"]["chance"] == pytest.approx((3 / 4) ** 2 + (1 / 4) ** 2)
    # Every pick has a white body, so the body share is just how many named variants are white.
    assert rows["body"]["most_drawn"] == 1.0 and rows["wing"]["most_drawn"] == pytest.approx(3 / 4)
