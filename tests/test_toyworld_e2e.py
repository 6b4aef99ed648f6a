"""All four BOB stages on a tiny toy world with the shipped prior, all four arms in one run:
artifacts and manifests, not accuracy."""

import json

import pytest

from bob.data.caption_bank import CaptionBank
from bob.toyworld.demo import measure_and_report
from bob.toyworld.pipeline import ALL_ARMS, PipelineSettings, ToyWorldPipeline, default_prior

SYNTHETIC = ("datadream", "within_class", "bob")


@pytest.fixture(scope="module")
def four_arm_run(tmp_path_factory):
    """One tiny run of every arm, shared by the tests below (the pipeline runs once)."""
    assert (default_prior() / "model_index.json").is_file(), "the toy prior must ship inside the package"
    pipeline = ToyWorldPipeline(tmp_path_factory.mktemp("toyworld") / "run", PipelineSettings.tiny(arms=ALL_ARMS))
    return pipeline, pipeline.run()


def _manifest_lines(folder):
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_toy_world_runs_every_stage_and_reports(four_arm_run):
    pipeline, summary = four_arm_run
    out = pipeline.out

    data_manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert data_manifest["counts"] == {"train": 20, "val": 8, "test": 12}

    bank = CaptionBank.load(out / "captions")
    assert len(bank) == 20 and bank.complete
    assert bank.manifest["captioner"]["source"] == "ground_truth"

    # Two fine-tunings only: the within-class arm generates through BOB's LoRA.
    assert sorted(p.name for p in (out / "lora").iterdir()) == ["bob", "datadream"]
    for lora in ("datadream", "bob"):
        assert (out / "lora" / lora / "pytorch_lora_weights.safetensors").stat().st_size > 0
        assert json.loads((out / "lora" / lora / "manifest.json").read_text())["kind"] == "bob.lora"
    for arm in SYNTHETIC:
        synthetic = json.loads((out / "synthetic" / arm / "manifest.json").read_text())
        assert synthetic["complete"] and synthetic["num_images"] == 8
        prompts = [line["prompt"] for line in _manifest_lines(out / "synthetic" / arm)]
        assert len(prompts) == 8
        # Context prompts through BOB's LoRA; DataDream's name the class only.
        assert all(("background" in p) == (arm != "datadream") for p in prompts)

    # Quality stage: every set measured against the same real test images, each beside DataDream.
    reports = {arm: json.loads((out / "synthetic" / arm / "quality-timm.json").read_text()) for arm in SYNTHETIC}
    assert reports["datadream"]["real"] == reports["bob"]["real"] == reports["within_class"]["real"]
    assert reports["bob"]["real"]["part"] == "test"
    assert [row["num_synthetic"] for row in reports["bob"]["classes"]] == [2] * 4
    assert reports["datadream"]["comparisons"] == {}
    for arm in ("within_class", "bob"):
        assert reports[arm]["comparisons"]["datadream"]["fid_compared"] == 4
        assert summary["quality"][arm]["fid_lower_than_datadream"].endswith("/4")
    assert reports["bob"]["context"]["detected_synthetic"]["num_images"] == 8
    assert list(summary["quality"]) == list(SYNTHETIC)
    assert summary["quality"]["datadream"]["fid_mean"] > 0

    assert list(summary["classifier"]) == list(ALL_ARMS)
    for metrics in summary["classifier"].values():
        assert 0.0 <= metrics["test/acc"] <= 1.0
    assert list(json.loads((out / "results.json").read_text())["classifier"]) == list(ALL_ARMS)

    dependence = measure_and_report(pipeline, summary)
    assert dependence["real"]["home_rate"] == pytest.approx(0.8)
    assert set(SYNTHETIC) <= set(dependence)
    report = (out / "report.md").read_text()
    assert "| real only |" in report and "| BOB" in report and "| context LoRA + own-class contexts |" in report
    assert "## Synthetic sets against the real test images" in report
    for name in ("real", *SYNTHETIC, "comparison"):
        assert (out / f"grid_{name}.png").stat().st_size > 0
        assert f"grid_{name}.png" in report


@pytest.mark.slow
def test_within_class_arm_uses_bob_lora_and_own_class_contexts(four_arm_run):
    pipeline, _ = four_arm_run
    out = pipeline.out
    manifest = json.loads((out / "synthetic" / "within_class" / "manifest.json").read_text())
    bob = json.loads((out / "synthetic" / "bob" / "manifest.json").read_text())
    assert manifest["plan"]["strategy"] == "within_class" and bob["plan"]["strategy"] == "marginal"
    assert manifest["generator"]["lora"] == str(out / "lora" / "bob" / "pytorch_lora_weights.safetensors")
    assert manifest["generator"]["lora_sha256"] == bob["generator"]["lora_sha256"]
    assert manifest["inputs"]["caption_bank"] == str(out / "captions")

    bank = CaptionBank.load(out / "captions")
    lines = _manifest_lines(out / "synthetic" / "within_class")
    assert len(lines) == 8
    for line in lines:
        record = bank[line["context_source"]]
        assert record.class_name == line["class_name"]
        # The context is that caption's, as planned (before any shortening to the token limit).
        planned = {**line["context"], **line["shortened"]}
        assert planned == {attribute: record.attributes[attribute] for attribute in line["context"]}
    # Paired with BOB: image i of a class starts from the same noise, only the context pool differs.
    assert [line["seed"] for line in lines] == [line["seed"] for line in _manifest_lines(out / "synthetic" / "bob")]


@pytest.mark.slow
def test_a_rerun_into_the_same_folder_replaces_its_synthetic_sets(four_arm_run):
    """Run last: it fine-tunes the DataDream LoRA again, which the generation stage would refuse
    to mix into the earlier set; the pipeline starts that set over instead."""
    pipeline, _ = four_arm_run
    folder = pipeline.out / "synthetic" / "datadream"
    (folder / "left_by_the_earlier_run.txt").write_text("x")
    pipeline.settings.lora_steps += 1  # another LoRA: the earlier set was made with another recipe
    pipeline.lora("datadream")
    pipeline.generate("datadream")
    assert not (folder / "left_by_the_earlier_run.txt").exists()
    lines = _manifest_lines(folder)
    assert len(lines) == pipeline.settings.images_per_class * pipeline.settings.num_classes


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["tiny_sdxl_path", "tiny_sd3_path"])
def test_toy_world_runs_on_an_sdxl_or_sd3_prior(tmp_path, prior, request):
    """Nothing in the toy world's stages assumes SD 2.1: the same run on an SD-XL or SD3 prior."""
    path = request.getfixturevalue(prior)
    pipeline = ToyWorldPipeline(tmp_path / "run", PipelineSettings.tiny(arms=("real", "bob"), prior=str(path)))
    summary = pipeline.run()
    lora = json.loads((pipeline.out / "lora" / "bob" / "manifest.json").read_text())
    assert lora["base_model"] == str(path)
    assert ("transformer" in lora["lora"]) == (prior == "tiny_sd3_path") and "text_encoder_2" in lora["lora"]
    synthetic = json.loads((pipeline.out / "synthetic" / "bob" / "manifest.json").read_text())
    assert synthetic["complete"] and synthetic["num_images"] == 8
    assert set(summary["classifier"]) == {"real", "bob"}
