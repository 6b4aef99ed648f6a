"""All four BOB stages on a tiny toy world with the shipped prior: artifacts and manifests, not accuracy."""

import json

import pytest

from bob.data.caption_bank import CaptionBank
from bob.toyworld.demo import measure_and_report
from bob.toyworld.pipeline import ARMS, PipelineSettings, ToyWorldPipeline, default_prior


@pytest.mark.slow
def test_toy_world_runs_every_stage_and_reports(tmp_path):
    assert (default_prior() / "model_index.json").is_file(), "the toy prior must ship inside the package"
    settings = PipelineSettings.tiny()
    pipeline = ToyWorldPipeline(tmp_path / "run", settings)
    summary = pipeline.run()
    out = pipeline.out

    data_manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert data_manifest["counts"] == {"train": 20, "val": 8, "test": 12}

    bank = CaptionBank.load(out / "captions")
    assert len(bank) == 20 and bank.complete
    assert bank.manifest["captioner"]["source"] == "ground_truth"

    for arm in ("datadream", "bob"):
        lora = out / "lora" / arm
        assert (lora / "pytorch_lora_weights.safetensors").stat().st_size > 0
        assert json.loads((lora / "manifest.json").read_text())["kind"] == "bob.lora"
        synthetic = json.loads((out / "synthetic" / arm / "manifest.json").read_text())
        assert synthetic["complete"] and synthetic["num_images"] == 8
        lines = (out / "synthetic" / arm / "manifest.jsonl").read_text().splitlines()
        prompts = [json.loads(line)["prompt"] for line in lines]
        assert len(prompts) == 8
        # BOB prompts carry a context; DataDream's name the class only.
        assert all(("background" in p) == (arm == "bob") for p in prompts)

    # Quality stage: both sets measured against the same real test images, BOB beside DataDream.
    reports = {arm: json.loads((out / "synthetic" / arm / "quality-timm.json").read_text()) for arm in ("datadream", "bob")}
    assert reports["datadream"]["real"] == reports["bob"]["real"] and reports["bob"]["real"]["part"] == "test"
    assert [row["num_synthetic"] for row in reports["bob"]["classes"]] == [2] * 4
    assert reports["bob"]["comparisons"]["datadream"]["fid_compared"] == 4
    assert reports["bob"]["context"]["detected_synthetic"]["num_images"] == 8
    assert summary["quality"]["bob"]["fid_lower_than_datadream"].endswith("/4")
    assert summary["quality"]["datadream"]["fid_mean"] > 0

    assert set(summary["classifier"]) == set(ARMS)
    for metrics in summary["classifier"].values():
        assert 0.0 <= metrics["test/acc"] <= 1.0
    assert json.loads((out / "results.json").read_text())["classifier"].keys() == set(ARMS)

    dependence = measure_and_report(pipeline, summary)
    assert dependence["real"]["home_rate"] == pytest.approx(0.8)
    report = (out / "report.md").read_text()
    assert "| real only |" in report and "| BOB" in report
    assert "## Synthetic sets against the real test images" in report
    for name in ("real", "datadream", "bob", "comparison"):
        assert (out / f"grid_{name}.png").stat().st_size > 0
        assert f"grid_{name}.png" in report
