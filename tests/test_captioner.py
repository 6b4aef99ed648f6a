import json
import logging

import pytest
import torch

from bob.callbacks.caption_writer import FAILED_DIR, SAMPLES_DIR
from bob.cli import main
from bob.data import ClassFolders, FewShotSplit
from bob.data.caption_bank import CaptionBank, CaptionBankError
from bob.data.errors import BobInputError
from bob.datamodules import FewShotDataModule
from bob.modules import Captioner
from tests.caption_fixtures import save_never_silent_qwen2_5_vl, write_caption_config
from tests.fake_data import make_class_folders

CLASSES = ["alpha", "beta"]


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return save_never_silent_qwen2_5_vl(tmp_path_factory.mktemp("vlm"))


@pytest.fixture
def stage(tmp_path, vlm):
    """A fake dataset, a config for it, and where its bank goes: 2 classes x 3 shots."""
    root = make_class_folders(tmp_path / "data", CLASSES, train_per_class=4, test_per_class=1)
    config = write_caption_config(tmp_path / "captions.yaml", vlm, root, str(tmp_path / "bank" / "{dataset}_{sampling}"))
    return config, root, tmp_path / "bank" / "toy_3shot"


def run(config, *overrides):
    main(["predict", "-c", str(config), *overrides])


def split_of(config, root):
    return FewShotSplit.load(config.parent / "split_3shot_seed0.json", ClassFolders(root, "aircraft", "toy"))


@pytest.fixture
def captioned(monkeypatch):
    """Sample ids that reach the captioner's predict_step, in order."""
    seen = []
    original = Captioner.predict_step

    def spy(self, batch, batch_idx):
        seen.extend(batch["sample_id"])
        return original(self, batch, batch_idx)

    monkeypatch.setattr(Captioner, "predict_step", spy)
    return seen


def test_predict_writes_a_complete_bank_the_next_stage_reads(stage, captioned):
    config, root, bank_dir = stage
    run(config)
    bank = CaptionBank.load(bank_dir)
    split = split_of(config, root)
    bank.check_matches(split.train)
    assert sorted(captioned) == sorted(r.sample_id for r in split.train)
    assert bank.attributes == ["background", "pose"]
    assert all(text for r in bank.records.values() for text in r.attributes.values())
    manifest = json.loads((bank_dir / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["num_records"] == manifest["num_expected"] == 6
    assert "'an aircraft'" in manifest["captioner"]["questions"]["pose"]
    assert manifest["split"]["sha256"] and manifest["versions"]["transformers"]
    datamodule = FewShotDataModule(
        ClassFolders(root, "aircraft", "toy"), shots=3, val_per_class=1,
        split_file=str(config.parent / "split_{sampling}_seed{seed}.json"), caption_bank=str(bank_dir),
    )
    sample = datamodule.records_dataset(split.train, train=False)[0]
    assert sample["background"] == bank[sample["sample_id"]].attributes["background"]


def test_interrupted_run_resumes_with_what_is_left(stage, monkeypatch, captioned):
    config, root, bank_dir = stage
    original = Captioner.predict_step

    def crash_on_second_batch(self, batch, batch_idx):
        if batch_idx == 1:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(Captioner, "predict_step", crash_on_second_batch)
        with pytest.raises(RuntimeError, match="killed"):
            run(config)
    first = list(captioned)
    assert len(list((bank_dir / SAMPLES_DIR).glob("*.json"))) == 2
    assert not (bank_dir / "records.jsonl").exists()
    captioned.clear()
    run(config)
    assert len(captioned) == 4 and not set(captioned) & set(first[:2])
    bank = CaptionBank.load(bank_dir)
    bank.check_matches(split_of(config, root).train)
    captioned.clear()
    run(config)  # nothing left: no image reaches the model, the bank is rebuilt the same
    assert captioned == [] and CaptionBank.load(bank_dir).contexts() == bank.contexts()


def test_undecodable_image_is_named_and_retried_by_a_rerun(stage, captioned, caplog):
    config, root, bank_dir = stage
    bad = sorted(split_of_first_run(config, root).train, key=lambda r: r.sample_id)[1]
    good_bytes = bad.path.read_bytes()
    bad.path.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        run(config)
    manifest = json.loads((bank_dir / "manifest.json").read_text())
    assert manifest["complete"] is False
    assert list(manifest["failed"]) == [bad.sample_id] and "cannot decode" in manifest["failed"][bad.sample_id]
    assert manifest["num_records"] == 5
    assert "INCOMPLETE" in caplog.text and bad.sample_id in caplog.text
    with pytest.raises(CaptionBankError, match="cannot decode"):
        CaptionBank.load(bank_dir).check_matches(split_of(config, root).train)
    bad.path.write_bytes(good_bytes)
    captioned.clear()
    run(config)
    assert captioned == [bad.sample_id]
    assert json.loads((bank_dir / "manifest.json").read_text())["complete"] is True
    assert not list((bank_dir / FAILED_DIR).glob("*.json"))


def split_of_first_run(config, root):
    # The split file is written by the first run; draw it now without captioning anything.
    cli = main(["-c", str(config)], run=False)
    return cli.datamodule.split


def test_rerun_with_other_settings_or_split_is_refused(stage):
    config, root, bank_dir = stage
    run(config)
    with pytest.raises(CaptionBankError, match="max_new_tokens"):
        run(config, "--model.init_args.max_new_tokens=3")
    with pytest.raises(CaptionBankError, match="another split"):
        run(config, "--data.init_args.seed=1")  # same output_dir: it has no {seed}


def fake_batch(sample_ids, labels, errors=None):
    return {
        "image": [torch.rand(3, 20, 30) for _ in sample_ids],
        "label": torch.tensor(labels),
        "sample_id": sample_ids,
        "error": errors or [None] * len(sample_ids),
    }


def scripted_captioner(monkeypatch, answers, **settings):
    """A captioner whose model answers from ``answers[(question attribute, sampled)]`` in turn."""
    captioner = Captioner(descriptor="bird", class_names=["Laysan_Albatross", "Sooty_Albatross"], **settings)
    calls = []

    def generate(self, images, prompt, sample=False):
        attribute = next(a for a, p in self.prompts.items() if p == prompt)
        calls.append((attribute, sample, len(images)))
        return [answers[(attribute, sample)].pop(0) for _ in images]

    monkeypatch.setattr(Captioner, "_generate", generate)
    return captioner, calls


def test_answers_are_kept_as_given_by_default(monkeypatch):
    captioner, _ = scripted_captioner(monkeypatch, {("background", False): ["A Laysan albatross colony."], ("pose", False): ["Soaring."]})
    out = captioner.predict_step(fake_batch(["b.jpg"], [0]), 0)
    assert out[0]["attributes"] == {"background": "A Laysan albatross colony", "pose": "Soaring"} and out[0]["notes"] == []


def test_leaks_are_redacted_and_raw_answers_kept(monkeypatch):
    captioner, _ = scripted_captioner(
        monkeypatch,
        {("background", False): ["Ocean waves.", "A Laysan albatross colony."], ("pose", False): ["Soaring.", "Albatross sitting."]},
        redact_leaks=True,
    )
    out = captioner.predict_step(fake_batch(["a.jpg", "b.jpg"], [1, 0]), 0)
    assert out[0]["attributes"] == {"background": "Ocean waves", "pose": "Soaring"} and out[0]["notes"] == []
    assert out[1]["attributes"] == {"background": "A bird colony", "pose": "Bird sitting"}
    assert out[1]["notes"] == ["redacted:background", "redacted:pose"]
    assert out[1]["raw"]["background"] == "A Laysan albatross colony."
    assert out[1]["class_name"] == "Laysan_Albatross"


def test_empty_answer_is_retried_once_then_reported(monkeypatch):
    captioner, calls = scripted_captioner(
        monkeypatch,
        {
            ("background", False): ["Sky.", " ", "  "],
            ("background", True): ["Grass field.", ""],
            ("pose", False): ["Flying.", "Standing.", "Perched."],
        },
    )
    batch = fake_batch(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], [0, 0, 1, 0], errors=[None, None, None, "cannot decode d.jpg"])
    out = captioner.predict_step(batch, 0)
    assert out[0]["notes"] == [] and out[0]["attributes"]["background"] == "Sky"
    assert out[1]["attributes"]["background"] == "Grass field" and out[1]["notes"] == ["retried:background"]
    assert out[2] == {"sample_id": "c.jpg", "class_name": "Sooty_Albatross",
                      "error": "empty answer to the background question(s), also after one retry"}
    assert out[3]["error"] == "cannot decode d.jpg"
    assert calls.count(("background", True, 1)) == 2  # one retry per empty answer, no more


def test_questions_with_unknown_placeholders_fail_at_once():
    with pytest.raises(BobInputError, match="class_name"):
        Captioner(questions={"pose": "What pose is the {class_name} in?"})
