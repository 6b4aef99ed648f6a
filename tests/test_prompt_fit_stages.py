"""The 77-token guard in the stages: LoRA fine-tuning and generation shorten the context, never the class name."""

from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from bob.cli import main
from bob.data import ClassFolders, FewShotSplit
from bob.data.caption_bank import CaptionBank, CaptionRecord
from bob.data.prompt_fit import count_tokens
from bob.data.synthetic_set import read_manifest_lines, read_summary
from tests import t2i_fixtures
from tests.generation_world import generation_config

#: Long enough that class + context passes 77 tokens of the tiny (one token a character) tokenizer.
LONG_BACKGROUND = "grass, hangar, clear blue sky"
LONG_POSE = "taxiing on the runway, nose towards the camera"


def long_context_bank(world: dict[str, Path], folder: Path) -> Path:
    split = FewShotSplit.load(world["split_file"], ClassFolders(world["data"], descriptor="aircraft", name="toy"))
    records = [
        CaptionRecord(r.sample_id, r.class_name, {"background": f"{LONG_BACKGROUND} {i}", "pose": LONG_POSE})
        for i, r in enumerate(split.train)
    ]
    return CaptionBank(records, manifest={"source": "test"}).save(folder)


@pytest.fixture(scope="module")
def tokenizer(tiny_sd_path):
    return CLIPTokenizer.from_pretrained(tiny_sd_path, subfolder="tokenizer")


def test_lora_stage_fits_its_prompts_and_counts_them_in_the_manifest(tmp_path, tiny_sd_path, tokenizer):
    world = t2i_fixtures.make_world(tmp_path, with_bank=False)
    world["bank"] = long_context_bank(world, tmp_path / "bank")
    cli = main(["fit", "-c", str(t2i_fixtures.fit_config(tmp_path, world, tiny_sd_path))])
    fit = t2i_fixtures.manifest(tmp_path / "lora")["prompt_fit"]
    assert fit == {"max_tokens": 77, "num_prompts": 6, "num_shortened": 6, "shortened_attributes": fit["shortened_attributes"]}
    assert set(fit["shortened_attributes"]) <= {"background", "pose"} and fit["shortened_attributes"]
    model = cli.model
    batch = {"label": [0], "background": [f"{LONG_BACKGROUND} 0"], "pose": [LONG_POSE]}
    prompt = model.batch_prompts(batch)[0]
    full = model.template.format(model.prompt_names[0], {"background": batch["background"][0], "pose": LONG_POSE})
    assert count_tokens(tokenizer, full) > 77 >= count_tokens(tokenizer, prompt)
    assert model.prompt_names[0] in prompt and prompt.endswith("pose")  # the template's end survives
    assert not model._warned_truncation  # the encoder never had to cut a prompt


def test_generation_fits_each_prompt_and_records_it_per_image(tmp_path, tiny_sd_path, tokenizer):
    world = t2i_fixtures.make_world(tmp_path, with_bank=False)
    world["bank"] = long_context_bank(world, tmp_path / "bank")
    output = tmp_path / "synthetic"
    config = generation_config(tmp_path / "generate.yaml", world, tiny_sd_path, output, data={"images_per_class": 2})
    main(["predict", "-c", str(config)])
    lines = read_manifest_lines(output)
    assert len(lines) == 6 and read_summary(output)["num_shortened_prompts"] == 6
    for line in lines:
        assert count_tokens(tokenizer, line["prompt"]) <= 77 and line["class_name"] in line["prompt"]
        assert line["shortened"], line
        for attribute, planned in line["shortened"].items():
            used = line["context"][attribute]
            assert len(used) < len(planned) and planned.startswith(used) and used in line["prompt"]
