"""Stage 3 end to end on a tiny random pipeline: counts, manifests, resume, refusal, DDP equivalence."""

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bob.cli import main
from bob.data.fingerprints import file_sha256
from bob.data.synthetic_set import (
    SyntheticSetError,
    load_synthetic_records,
    read_manifest_lines,
    read_summary,
)
from tests.generation_world import (  # noqa: F401
    CLASSES,
    generation_config,
    make_world,
    planned_lines,
    save_tiny_lora,
    single_thread,
)

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_sd_path):
    root = tmp_path_factory.mktemp("generation")
    return {**make_world(root), "root": root, "sd": tiny_sd_path, "lora": save_tiny_lora(tiny_sd_path, root / "lora")}


@pytest.fixture(scope="module")
def bob_set(world):
    """The BOB arm generated once, in one process with batch 3 (4 images x 3 classes)."""
    output = world["root"] / "bob_set"
    config = generation_config(world["root"] / "bob.yaml", world, world["sd"], output, lora=world["lora"])
    main(["predict", "-c", str(config)])
    return output


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {e["key"]: np.asarray(Image.open(folder / e["file"]), dtype=np.int16) for e in read_manifest_lines(folder)}


def test_planned_set_is_written_exactly(bob_set, world):
    summary = read_summary(bob_set)
    lines = read_manifest_lines(bob_set)
    assert summary["complete"] and summary["num_images"] == summary["num_planned"] == 12
    assert Counter(line["class_name"] for line in lines) == {name: 4 for name in CLASSES}
    assert len({line["file"] for line in lines}) == 12
    assert sorted(p.relative_to(bob_set).as_posix() for p in (bob_set / "images").rglob("*")
                  if p.is_file()) == sorted(line["file"] for line in lines)
    assert not list(bob_set.rglob("*.tmp"))
    lora_sha = file_sha256(world["lora"] / "pytorch_lora_weights.safetensors")
    assert {line["lora_sha256"] for line in lines} == {lora_sha} == {summary["identity"]["generator"]["lora_sha256"]}
    assert {line["base_model"] for line in lines} == {str(world["sd"])}
    bank_sources = {json.loads(r)["sample_id"] for r in (world["bank"] / "records.jsonl").read_text().splitlines()}
    assert all(line["context_source"] in bank_sources for line in lines)
    assert all(line["context"]["background"] in line["prompt"] for line in lines)
    assert summary["plan"]["strategy"] == "marginal" and summary["generator"]["dtype"] == "float32"
    assert len({line["seed"] for line in lines}) == 12
    records = load_synthetic_records(bob_set, CLASSES)
    assert len(records) == 12 and Image.open(records[0].path).size == (64, 64)
    assert Image.open(bob_set / "preview.jpg").size == (8 * 128, 3 * 128)


def test_an_image_does_not_depend_on_its_batch(bob_set, world):
    from bob.modules.generator import SyntheticImageGenerator

    generator = SyntheticImageGenerator(str(world["sd"]), lora=str(world["lora"]), num_inference_steps=3)
    generator.load("cpu")
    line = read_manifest_lines(bob_set)[4]
    alone = generator.generate([line["prompt"]], [line["seed"]])[0].astype(np.int16)
    in_batch = pixels(bob_set)[line["key"]]
    # Batched BLAS kernels differ in the last float bits: at most one grey level, rarely.
    assert np.abs(alone - in_batch).max() <= 1 and (alone == in_batch).mean() > 0.99

    base = SyntheticImageGenerator(str(world["sd"]), num_inference_steps=3)
    base.load("cpu")
    assert np.abs(base.generate([line["prompt"]], [line["seed"]])[0].astype(np.int16) - alone).max() > 10


def test_two_ddp_processes_with_batch_2_make_the_same_set(bob_set, world, tmp_path):
    output = tmp_path / "ddp_set"
    config = generation_config(
        tmp_path / "ddp.yaml", world, world["sd"], output, lora=world["lora"],
        data={"batch_size": 2}, trainer={"devices": 2, "strategy": "ddp"},
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}

    def run_ddp() -> None:
        result = subprocess.run(
            [sys.executable, "-m", "bob", "predict", "-c", str(config)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]

    run_ddp()
    assert planned_lines(output) == planned_lines(bob_set)
    assert read_summary(output) == read_summary(bob_set)
    ddp, single = pixels(output), pixels(bob_set)
    for key, image in single.items():
        assert np.abs(ddp[key] - image).max() <= 1, key
    assert np.mean([(ddp[k] == single[k]).mean() for k in single]) > 0.99

    # One missing image: rank 1's share is empty, so Lightning skips its predict loop; the
    # run must still finish (no rank left waiting) with the image made again.
    (output / read_manifest_lines(output)[5]["file"]).unlink()
    run_ddp()
    assert read_summary(output)["complete"] and planned_lines(output) == planned_lines(bob_set)


def test_a_finished_image_damaged_later_is_made_again_on_rerun(bob_set, world, tmp_path, caplog):
    output = tmp_path / "checked"
    config = generation_config(tmp_path / "gen.yaml", world, world["sd"], output, lora=world["lora"])
    main(["predict", "-c", str(config)])
    lines = read_manifest_lines(output)
    for line in lines:
        path = output / line["file"]
        assert line["sha256"] == file_sha256(path) and line["bytes"] == path.stat().st_size
    truncated, flipped = output / lines[4]["file"], output / lines[7]["file"]
    originals = {path: np.asarray(Image.open(path), dtype=np.int16) for path in (truncated, flipped)}
    untouched = {p: p.read_bytes() for p in (output / "images").rglob("*.png") if p not in originals}
    truncated.write_bytes(truncated.read_bytes()[:500])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    flipped.write_bytes(bytes(data))

    logger = logging.getLogger("bob")
    logger.addHandler(caplog.handler)
    try:
        main(["predict", "-c", str(config)])
    finally:
        logger.removeHandler(caplog.handler)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "sha256" in r.getMessage()]
    assert len(warned) == 1 and lines[4]["file"] in warned[0] and lines[7]["file"] in warned[0]
    assert read_summary(output)["complete"] and planned_lines(output) == planned_lines(bob_set)
    for path, pixels_before in originals.items():
        assert np.abs(np.asarray(Image.open(path), dtype=np.int16) - pixels_before).max() <= 1  # made again
    after = {line["file"]: line for line in read_manifest_lines(output)}
    assert all(after[p.relative_to(output).as_posix()]["sha256"] == file_sha256(p) for p in originals)
    assert all(p.read_bytes() == data for p, data in untouched.items())


def test_killed_run_resumes_to_exactly_the_plan(world, tmp_path):
    output = tmp_path / "resumed"
    config = generation_config(tmp_path / "gen.yaml", world, world["sd"], output, lora=world["lora"])
    crash = {"class_path": "tests.generation_world.CrashAfterBatches", "init_args": {"batches": 2}}
    writer = {"class_path": "SyntheticSetWriter"}
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["predict", "-c", str(config), f"--trainer.callbacks={json.dumps([writer, crash])}"])
    summary = read_summary(output)
    first_run = {p: p.read_bytes() for p in (output / "images").rglob("*.png")}
    assert not summary["complete"] and len(first_run) == 6  # both batches were written before the crash
    with pytest.raises(SyntheticSetError, match="incomplete"):
        load_synthetic_records(output, CLASSES)
    # A hard kill can also leave a temp file and an image whose sidecar never got written.
    (output / "images/0002").mkdir(parents=True, exist_ok=True)
    (output / "images/0002/.00003.png.x1.tmp").write_bytes(b"partial")
    Image.new("RGB", (64, 64)).save(output / "images/0002/00003.png")

    main(["predict", "-c", str(config)])
    lines = read_manifest_lines(output)
    assert read_summary(output)["complete"] and len(lines) == 12
    assert len({line["key"] for line in lines}) == 12
    assert not list(output.rglob("*.tmp"))
    assert all(p.read_bytes() == data for p, data in first_run.items())  # finished images untouched
    assert np.asarray(Image.open(output / "images/0002/00003.png")).std() > 0  # the orphan was regenerated
    assert planned_lines(output) == planned_lines(world["root"] / "bob_set")

    # Every image made, but the run died before assembling: a rerun with nothing to generate
    # (Lightning then skips the predict loop) still writes the manifests.
    summary = read_summary(output)
    (output / "manifest.json").write_text(json.dumps({**summary, "complete": False}))
    (output / "manifest.jsonl").unlink()
    main(["predict", "-c", str(config)])
    assert read_summary(output)["complete"] and len(read_manifest_lines(output)) == 12


@pytest.mark.parametrize(
    ("override", "changed"),
    [
        ({"model": {"guidance_scale": 3.0}}, "guidance_scale"),
        ({"model": {"lora": None}}, "lora_sha256"),
        ({"data": {"generation_seed": 7}}, "plan_fingerprint"),
    ],
)
def test_resuming_with_another_recipe_is_refused(bob_set, world, tmp_path, override, changed):
    config = generation_config(
        tmp_path / "other.yaml", world, world["sd"], bob_set, lora=world["lora"],
        model=override.get("model"), data=override.get("data"),
    )
    if override.get("model", {}).get("lora", "kept") is None:
        text = config.read_text().replace(f"lora: {world['lora']}", "lora: null")
        config.write_text(text)
    before = (bob_set / "manifest.jsonl").read_text()
    with pytest.raises(SyntheticSetError, match=f"{changed}.*refusing to mix"):
        main(["predict", "-c", str(config)])
    assert (bob_set / "manifest.jsonl").read_text() == before


def test_datadream_arm_uses_class_only_prompts_and_logs_a_preview(world, tmp_path):
    output = tmp_path / "datadream"
    logger = {"class_path": "bob.loggers.WandbLogger", "init_args": {"project": "bob-test", "save_dir": str(tmp_path)}}
    config = generation_config(
        tmp_path / "dd.yaml", world, world["sd"], output, lora=world["lora"],
        data={"strategy": "none", "caption_bank": None, "images_per_class": {"beta": 2}}, trainer={"logger": logger},
    )
    run = main(["predict", "-c", str(config)]).trainer.logger.experiment
    run.finish()  # an unfinished W&B run would be reused by the next test's logger
    lines = read_manifest_lines(output)
    assert [line["prompt"] for line in lines] == ["an aircraft photo of a beta"] * 2
    assert all(line["context_source"] is None for line in lines)
    logged = list(Path(run.dir).glob("media/images/generate/preview_*.png"))
    assert len(logged) == 1 and Image.open(logged[0]).size == (8 * 128, 128)  # one class, first images


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ({}, {"images_per_class": 0}, "images_per_class must be >= 1"),
        ({}, {"images_per_class": {"delta": 3}}, "does not have.*delta"),
        ({}, {"caption_bank": "nowhere"}, "no caption bank at nowhere"),
        ({"lora": "no_such_lora"}, {}, "no LoRA adapter at no_such_lora"),
        ({"base_model": "someone/uncached-model"}, {}, "not in the local Hugging Face cache"),
    ],
)
def test_bad_input_fails_before_anything_is_written(world, tmp_path, model, data, message):
    config = generation_config(
        tmp_path / "bad.yaml", world, world["sd"], tmp_path / "out", lora=world["lora"], model=model, data=data
    )
    with pytest.raises(Exception, match=message):
        main(["predict", "-c", str(config)])
    assert not (tmp_path / "out").exists()


def test_fixed_contexts_and_top_up_counts_from_the_split(world, tmp_path):
    from bob.data import ClassFolders
    from bob.datamodules import GenerationDataModule

    contexts = tmp_path / "invented.tsv"
    contexts.write_text("background\tpose\nlunar base\thovering\n")
    datamodule = GenerationDataModule(
        ClassFolders(str(world["data"]), descriptor="aircraft", name="toy"), output_dir=str(tmp_path / "out"),
        strategy="fixed", context_file=str(contexts), top_up_to=40, real_repeats=3,
        shots=None, imbalance_factor=2, val_per_class=1, split_file=str(tmp_path / "lt_split.json"),
    )
    items = datamodule.plan.items
    real = dict(zip(CLASSES, datamodule.split.train_counts(), strict=True))
    assert len(set(real.values())) > 1  # a long-tail split: the top-up differs between classes
    assert Counter(i.class_name for i in items) == {name: 40 - n * 3 for name, n in real.items() if 40 - n * 3 > 0}
    tail = items[-1].class_name
    assert {i.prompt for i in items if i.class_name == tail} == {
        f"an aircraft photo of a {tail} in the lunar base background with the hovering pose"
    }


def test_sampler_size_and_negative_prompt_options(world):
    from bob.modules.generator import SyntheticImageGenerator

    generator = SyntheticImageGenerator(
        str(world["sd"]), scheduler="dpm_solver", num_inference_steps=2, height=32, width=48,
        negative_prompt="blurry", lora=str(world["lora"]), lora_scale=0.5,
    )
    generator.load("cpu")
    images = generator.generate(["an aircraft photo of a beta"] * 2, [1, 2])
    assert images.shape == (2, 32, 48, 3) and images.dtype == np.uint8
    assert not np.array_equal(images[0], images[1])
    assert generator.describe()["scheduler_class"] == "DPMSolverMultistepScheduler"


def test_lora_placeholders_come_from_the_linked_data_and_a_writer_is_required(world, tmp_path):
    from types import SimpleNamespace

    from bob.data.errors import BobInputError
    from bob.modules.generator import SyntheticImageGenerator

    generator = SyntheticImageGenerator(str(world["sd"]), lora=str(world["lora"].parent / "{dataset}"),
                                        path_values={"dataset": world["lora"].name})
    assert generator.lora_weights().parent == world["lora"]
    with pytest.raises(BobInputError, match=r"unknown placeholder 'arm'; the data fills \{dataset\}"):
        SyntheticImageGenerator(lora="runs/{arm}", path_values={"dataset": "toy"}).lora_weights()
    generator.trainer = SimpleNamespace(callbacks=[])
    with pytest.raises(BobInputError, match="SyntheticSetWriter"):
        generator.setup("predict")
