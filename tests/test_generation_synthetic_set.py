"""The synthetic folder format: atomic writes, resume bookkeeping, identity refusal, the reader."""

import json

import numpy as np
import pytest
from PIL import Image

from bob.data.generation_plan import Context, GenerationPlan
from bob.data.prompts import CONTEXT_TEMPLATE, PromptTemplate
from bob.data.synthetic_set import (
    MANIFEST_LINES,
    MANIFEST_SUMMARY,
    SyntheticSetError,
    SyntheticSetFolder,
    load_synthetic_records,
    read_manifest_lines,
    read_summary,
)

CLASSES = ["F/A-18", "A380"]
IDENTITY = {"generator": {"base_model": "sd", "lora_sha256": "abc", "guidance_scale": 2.0}, "data": {"plan": "p1"}}


@pytest.fixture
def plan():
    contexts = [Context({"background": "sky", "pose": "flying"}, "train/x.jpg", "A380")]
    return GenerationPlan(CLASSES, CLASSES, [2, 3], PromptTemplate(CONTEXT_TEMPLATE, "aircraft"), "marginal", contexts)


def image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def test_written_set_reads_back_in_plan_order_with_labels(tmp_path, plan):
    folder = SyntheticSetFolder(tmp_path / "set")
    folder.check_identity(IDENTITY)
    folder.start(IDENTITY, {"class_names": CLASSES})
    for n, item in enumerate(reversed(plan.items)):  # ranks finish in any order
        folder.write(item, image(n), {"base_model": "sd"})
    summary = folder.finish([i.key for i in plan.items], {"class_names": CLASSES})
    assert summary["complete"] and summary["num_images"] == summary["num_planned"] == 5
    lines = read_manifest_lines(tmp_path / "set")
    assert [line["key"] for line in lines] == [i.key for i in plan.items]
    assert lines[0]["class_name"] == "F/A-18" and lines[0]["file"] == "images/0000/00000.png"
    assert lines[0]["context_source"] == "train/x.jpg" and lines[0]["base_model"] == "sd"
    assert [p.name for p in (tmp_path / "set").rglob("*.json")] == [MANIFEST_SUMMARY]  # sidecars folded in
    records = load_synthetic_records(tmp_path / "set", ["A380", "F/A-18", "other"])
    assert sorted(r.label for r in records) == [0, 0, 0, 1, 1]
    assert np.asarray(Image.open(tmp_path / "set" / "images/0001/00002.png"))[0, 0, 0] == 0


def test_resume_counts_only_finished_images_and_clears_temp_files(tmp_path, plan):
    folder = SyntheticSetFolder(tmp_path)
    folder.start(IDENTITY, {})
    first, second = plan.items[:2]
    folder.write(first, image(1), {})
    # A kill between the image and its sidecar leaves an image that does not count.
    Image.fromarray(image(2)).save(tmp_path / folder.image_file(second.key))
    stale = tmp_path / "images/0000/.00003.png.abc.tmp"
    stale.write_bytes(b"half an image")
    assert folder.done_keys() == {first.key}
    folder.start(IDENTITY, {})
    assert not stale.exists()
    summary = folder.finish([i.key for i in plan.items], {})
    assert not summary["complete"] and summary["num_images"] == 1
    with pytest.raises(SyntheticSetError, match="incomplete \\(1 of 5 images"):
        load_synthetic_records(tmp_path, CLASSES)
    assert SyntheticSetFolder(tmp_path).done_keys() == {first.key}  # read back from manifest.jsonl


def test_a_different_recipe_is_refused_naming_what_changed(tmp_path, plan):
    folder = SyntheticSetFolder(tmp_path)
    folder.start(IDENTITY, {})
    changed = json.loads(json.dumps(IDENTITY))
    changed["generator"]["lora_sha256"] = "def"
    # Before the first image there is nothing to mix: the new recipe takes the folder over.
    folder.check_identity(changed)
    folder.start(changed, {})
    assert read_summary(tmp_path)["identity"] == changed
    folder.write(plan.items[0], image(0), {})
    with pytest.raises(SyntheticSetError, match="generator.lora_sha256: 'def' -> 'abc'.*refusing to mix"):
        folder.check_identity(IDENTITY)
    folder.check_identity(changed)


def test_unknown_images_folder_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(SyntheticSetError, match="no manifest.json"):
        SyntheticSetFolder(tmp_path).check_identity(IDENTITY)


def test_reader_refuses_other_classes_duplicates_and_missing_files(tmp_path, plan):
    folder = SyntheticSetFolder(tmp_path)
    folder.start(IDENTITY, {})
    for item in plan.items:
        folder.write(item, image(0), {})
    folder.finish([i.key for i in plan.items], {"class_names": CLASSES})
    with pytest.raises(SyntheticSetError, match="classes the dataset does not"):
        load_synthetic_records(tmp_path, ["A380"])
    lines = (tmp_path / MANIFEST_LINES).read_text().splitlines()
    (tmp_path / MANIFEST_LINES).write_text("\n".join(lines + lines[:1]) + "\n")
    with pytest.raises(SyntheticSetError, match="twice"):
        load_synthetic_records(tmp_path, CLASSES)
    (tmp_path / MANIFEST_LINES).write_text("\n".join(lines) + "\n")
    (tmp_path / "images/0001/00001.png").unlink()
    with pytest.raises(SyntheticSetError, match="missing"):
        load_synthetic_records(tmp_path, CLASSES)
    assert read_summary(tmp_path)["num_planned"] == 5


def test_jpeg_format_and_bad_format(tmp_path, plan):
    folder = SyntheticSetFolder(tmp_path, image_format="jpg", quality=80)
    path = folder.write(plan.items[0], image(100), {})
    assert path.suffix == ".jpg" and Image.open(path).format == "JPEG"
    with pytest.raises(SyntheticSetError, match="image_format"):
        SyntheticSetFolder(tmp_path, image_format="gif")


def test_recheck_deletes_what_no_longer_matches_its_hash(tmp_path, plan):
    folder = SyntheticSetFolder(tmp_path / "set")
    folder.start(IDENTITY, {"class_names": CLASSES})
    for n, item in enumerate(plan.items):
        folder.write(item, image(n), {})
    folder.finish([i.key for i in plan.items], {})
    fresh = SyntheticSetFolder(tmp_path / "set")  # another run: nothing verified yet
    damaged = tmp_path / "set" / fresh.image_file(plan.items[1].key)
    damaged.write_bytes(damaged.read_bytes()[:-4])
    # A line from before hashes were recorded is kept unchecked.
    lines = read_manifest_lines(tmp_path / "set")
    del lines[2]["sha256"], lines[2]["bytes"]
    (tmp_path / "set" / MANIFEST_LINES).write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert fresh.recheck() == [plan.items[1].key]
    assert not damaged.exists() and fresh.done_keys() == {i.key for i in plan.items} - {plan.items[1].key}
    assert fresh.recheck() == []
