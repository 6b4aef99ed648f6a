"""The paper's path on a fake Aircraft laid out as the authors had it: Diff-II split folders and a
published-format caption bank run import -> LoRA -> generation -> classifier through the shipped
configs, with path and size overrides only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bob.cli import main
from bob.data import FGVCAircraft
from bob.data.caption_bank import CaptionBank
from bob.data.caption_tsv import main as caption_tsv
from tests.fake_data import make_diffii_folder, make_fgvc_aircraft

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: The authors' TSV keys: paths on their disk, relative to their fine-tuning script.
RELEASE_KEY = "../dataset/datasets/aircraft/5shot/train/{folder}/{index}.jpg"
#: Answers as the captioner wrote them, including a class name the bank must keep unchanged.
ANSWERS = [("Grass, sky, hangar.", "The aircraft is stationary on grass."), ("Clear blue sky.", "A F/A-18 banks left.")]

SMALL = {  # sizes only: the tiny models and the tiny fake dataset need no more
    "t2i": {
        "trainer": {"max_epochs": 2, "precision": "32-true"},
        "model": {"init_args": {"effective_batch_size": 8, "warmup_steps": 1}},
        "data": {"init_args": {"image_size": 64, "num_workers": 0, "train_transform": {
            "class_path": "torchvision.transforms.v2.Compose", "init_args": {"transforms": [
                {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": 64, "antialias": True}},
                {"class_path": "torchvision.transforms.v2.RandomCrop", "init_args": {"size": 64}},
            ]}}}},
    },
    "generate": {
        "model": {"init_args": {"num_inference_steps": 2, "height": 64, "width": 64, "dtype": "float32"}},
        "data": {"init_args": {"images_per_class": 3, "batch_size": 4}},
    },
    "classifier": {
        "trainer": {"max_epochs": 1, "precision": "32-true"},
        "data": {"init_args": {"image_size": 32, "batch_size": 8, "num_workers": 0}},
    },
}


def write_published_bank(folder: Path, reader: FGVCAircraft) -> dict[str, tuple[str, str]]:
    """``background.tsv`` + ``pose.tsv`` as released: header, authors' keys, no trailing newline."""
    rows = {
        RELEASE_KEY.format(folder=name, index=index): ANSWERS[index % 2]
        for name in reader.folder_names for index in range(5)
    }
    folder.mkdir(parents=True)
    for column, attribute in enumerate(("background", "pose")):
        lines = ["image\tresponse"] + [f"{key}\t{answers[column]}" for key, answers in rows.items()]
        (folder / f"{attribute}.tsv").write_text("\n".join(lines), encoding="utf-8")
    return rows


def run(subcommand: str, stage: str, paths: list[str], tmp_path: Path):
    small = tmp_path / f"small_{stage}.yaml"
    small.write_text(yaml.safe_dump(SMALL.get(stage, {})))
    configs = ["-c", str(CONFIGS / f"{stage}.yaml"), "-c", str(CONFIGS / "datasets" / "aircraft.yaml"), "-c", str(small)]
    return main([subcommand, *configs, *paths])


@pytest.mark.slow
def test_published_bank_and_diffii_split_run_every_stage(tmp_path, monkeypatch, tiny_sd_path, tiny_clip_path):
    monkeypatch.chdir(tmp_path)  # the configs' run folders are relative: runs/...
    root = make_fgvc_aircraft(tmp_path / "data" / "aircraft", train_per_class=12)
    reader = FGVCAircraft(str(root))
    diffii = make_diffii_folder(reader, tmp_path / "data" / "diff-ii" / "aircraft", 5)
    published = write_published_bank(tmp_path / "BOB" / "captions" / "aircraft_5shot", reader)
    data_paths = [f"--data.init_args.dataset.init_args.root={root}", f"--data.init_args.split_source={diffii}"]

    # 1. Import: the bank lands where the dataset config's placeholders put it.
    bank_dir = Path("runs/aircraft/captions/5shot-diffii_seed0")
    assert len(published) == 20
    caption_tsv(["import", str(tmp_path / "BOB/captions/aircraft_5shot"), str(bank_dir),
                 "--dataset", "FGVCAircraft", "--dataset.root", str(root)])
    bank = CaptionBank.load(bank_dir)
    assert len(bank) == 20 and bank["5shot/train/F_A-18/1.jpg"].attributes == {
        "background": "Clear blue sky", "pose": "A F/A-18 banks left"}  # the published text, unchanged

    # 2. Context-preserving LoRA on the Diff-II shots with their published captions.
    cli = run("fit", "t2i", [*data_paths, f"--model.init_args.base_model={tiny_sd_path}"], tmp_path)
    assert cli.datamodule.sampling == "5shot-diffii" and len(cli.datamodule.split.train) == 20
    assert cli.trainer.global_step == 2 * 3  # 20 images, batch 8, one optimizer step per batch
    prompts = cli.model.batch_prompts(next(iter(cli.datamodule.train_dataloader())))
    assert all(p.startswith("an aircraft photo of a ") and " background with the " in p for p in prompts)
    lora = Path("runs/aircraft/lora/bob_5shot-diffii_seed0")
    assert json.loads((lora / "manifest.json").read_text())["data"]["num_train_images"] == 20

    # 3. Context-marginalized generation from that adapter, prompts with the authors' class names.
    run("predict", "generate", [*data_paths, f"--model.init_args.base_model={tiny_sd_path}"], tmp_path)
    synthetic = Path("runs/aircraft/synthetic/bob_5shot-diffii_seed0")
    lines = [json.loads(line) for line in (synthetic / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 3 and {line["class_name"] for line in lines} == set(reader.class_names)
    assert any("photo of a F_A-18 in the " in line["prompt"] for line in lines)
    backgrounds = {line["prompt"].split(" in the ")[1].split(" background")[0] for line in lines}
    # From the bank; the tiny test tokenizer reads few words per token, so long contexts are shortened to fit.
    assert all(any(full.startswith(b) for full in ("Grass, sky, hangar", "Clear blue sky")) for b in backgrounds)

    # 4. The classifier on the real shots and the synthetic set, tested at its best epoch.
    backbone = f"--model.init_args.backbone.init_args.model={tiny_clip_path}"
    cli = run("fit", "classifier", [*data_paths, backbone], tmp_path)
    assert cli.datamodule.real_repeats == 20 and len(cli.datamodule.synthetic_records()) == 12
    assert "test/acc" in cli.trainer.callback_metrics
