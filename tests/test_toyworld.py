"""The toy world: renderer, variants, tokenizer, context meter, dependence measure, dataset writer."""

import json
import random

import numpy as np
import pytest

from bob.data.caption_bank import CaptionBank
from bob.data.datasets.folders import ClassFolders
from bob.data.errors import BobInputError
from bob.data.splits import FewShotSplit
from bob.metrics.dependence import class_background_dependence
from bob.toyworld.captions import broad_caption
from bob.toyworld.contexts import BACKGROUNDS, POSES
from bob.toyworld.dataset import home_background, read_world, write_dataset
from bob.toyworld.meter import ContextMeter
from bob.toyworld.render import Scene, render, render_with_mask
from bob.toyworld.tokenizer import build_tokenizer, caption_words
from bob.toyworld.variants import FEWSHOT_VARIANTS, broad_variants


def test_world_has_the_promised_size():
    assert len(FEWSHOT_VARIANTS) >= 16
    assert len({v.name for v in FEWSHOT_VARIANTS}) == len(FEWSHOT_VARIANTS)
    assert len({v.parts for v in FEWSHOT_VARIANTS}) == len(FEWSHOT_VARIANTS)
    assert len(BACKGROUNDS) >= 8 and len(POSES) >= 6
    assert all(len(c.phrasings) >= 3 for c in (*BACKGROUNDS, *POSES))
    broad = broad_variants()
    assert len(broad) > 10 * len(FEWSHOT_VARIANTS)
    assert not {v.parts for v in broad} & {v.parts for v in FEWSHOT_VARIANTS}


def test_render_is_deterministic_and_seed_dependent():
    variant = FEWSHOT_VARIANTS[0]
    first = np.asarray(render(Scene(variant, 2, 1, seed=7)))
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, np.asarray(render(Scene(variant, 2, 1, seed=7))))
    assert not np.array_equal(first, np.asarray(render(Scene(variant, 2, 1, seed=8))))


def test_fewshot_classes_differ_in_pixels_under_the_same_context():
    # Same background texture and jitter (same seed): only the aircraft's parts differ.
    images = [np.asarray(render(Scene(v, 0, 0, seed=3)), np.float32) for v in FEWSHOT_VARIANTS]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).max() > 60, (FEWSHOT_VARIANTS[i].name, FEWSHOT_VARIANTS[j].name)


def test_broad_captions_never_name_a_fewshot_class():
    rng = random.Random(0)
    broad = broad_variants()
    names = [v.name.lower() for v in FEWSHOT_VARIANTS]
    captions = [broad_caption(Scene(rng.choice(broad), 0, 0, 0), rng) for _ in range(2000)]
    assert not [c for c in captions if any(n in c.lower() for n in names)]
    assert 0.03 < sum(c == "" for c in captions) / len(captions) < 0.15


def test_tokenizer_keeps_caption_words_and_model_names_whole_and_splits_new_names(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    for word in caption_words():
        if word.isalpha():
            assert len(tokenizer.tokenize(word)) == 1, word
    # Every model name, broad or few-shot, is one token: the prior can bind a name to a look.
    for variant in (*broad_variants(), *FEWSHOT_VARIANTS):
        assert len(tokenizer.tokenize(variant.name)) == 1, variant.name
    # A name the world never had still encodes, in known pieces.
    pieces = tokenizer.tokenize("Quixotron")
    assert len(pieces) >= 2 and tokenizer.unk_token not in pieces
    assert (tmp_path / "vocab.json").is_file() and (tmp_path / "merges.txt").is_file()


def test_render_mask_covers_the_aircraft_and_leaves_the_render_unchanged():
    variant = FEWSHOT_VARIANTS[0]
    small, large = (Scene(variant, 0, pose, seed=5) for pose in _poses_by_scale())
    image, mask = render_with_mask(small)
    assert np.array_equal(np.asarray(image), np.asarray(render(small)))
    assert mask.shape == (64, 64) and mask.dtype == np.float32 and 0.0 <= mask.min() and mask.max() == 1.0
    assert 0.02 < mask.mean() < 0.5
    assert render_with_mask(large)[1].sum() > 1.3 * mask.sum()
    # Pixels under the mask differ between classes; pixels outside it are the same background.
    other = np.asarray(render(Scene(FEWSHOT_VARIANTS[-1], 0, small.pose, seed=5)), np.float32)
    difference = np.abs(np.asarray(image, np.float32) - other).max(axis=2)
    outside = (mask == 0) & (render_with_mask(Scene(FEWSHOT_VARIANTS[-1], 0, small.pose, seed=5))[1] == 0)
    assert difference[outside].max() == 0 and difference.max() > 60


def _poses_by_scale() -> tuple[int, int]:
    by_scale = sorted(range(len(POSES)), key=lambda p: POSES[p].scale)
    return by_scale[0], by_scale[-1]


def test_context_meter_reads_backgrounds_of_fresh_renders():
    meter = ContextMeter(renders_per_background=25, seed=1)
    rng = random.Random(99)
    scenes = [
        Scene(rng.choice(FEWSHOT_VARIANTS), b, rng.randrange(len(POSES)), rng.randrange(2**31))
        for b in range(len(BACKGROUNDS)) for _ in range(12)
    ]
    predicted = meter.predict([render(s) for s in scenes])
    accuracy = float(np.mean(predicted == np.array([s.background for s in scenes])))
    assert accuracy >= 0.95


def test_dependence_separates_independent_from_class_bound_backgrounds():
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(16), 100)
    home = [c % 8 for c in range(16)]
    independent = class_background_dependence(classes, rng.integers(0, 8, classes.size), 16, 8, home)
    bound = class_background_dependence(classes, np.array([home[c] for c in classes]), 16, 8, home)
    assert independent["nmi"] < 0.05 and independent["p_value"] > 0.001
    assert abs(independent["home_rate"] - 1 / 8) < 0.04
    assert bound["nmi"] == pytest.approx(1.0) and bound["home_rate"] == 1.0
    assert bound["cramers_v"] > 0.9 > independent["cramers_v"] + 0.5
    # The permutation null matches an independent sample, and is far below a class-bound one.
    assert independent["nmi"] == pytest.approx(independent["nmi_null"], abs=0.01)
    assert bound["nmi_null"] < 0.05


def test_written_dataset_has_biased_shots_uniform_test_and_ground_truth_captions(tmp_path):
    root = write_dataset(tmp_path / "world", num_classes=8, shots=5, val_per_class=2, test_per_class=24, seed=3)
    reader = ClassFolders(str(root), descriptor="aircraft", name="toyworld")
    assert reader.class_names == sorted(v.name for v in FEWSHOT_VARIANTS[:8])
    split = FewShotSplit.load(root / "split.json", reader)
    assert [len(split.train), len(split.val), len(split.test)] == [40, 16, 192]
    world = read_world(root)
    label_of = {n: i for i, n in enumerate(reader.class_names)}
    train_home = np.mean([world[r.sample_id].background == home_background(label_of[r.class_name]) for r in split.train])
    test_home = np.mean([world[r.sample_id].background == home_background(label_of[r.class_name]) for r in split.test])
    assert train_home == pytest.approx(0.8)
    assert test_home < 0.3
    bank = CaptionBank.load(root / "captions")
    bank.check_matches(split.train)
    assert bank.manifest["source"] == "ground_truth"
    record = bank[split.train[0].sample_id]
    truth = world[split.train[0].sample_id]
    assert record.attributes["background"] in BACKGROUNDS[truth.background].phrasings
    assert record.attributes["pose"] in POSES[truth.pose].phrasings
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["settings"]["bias"] == 0.8 and manifest["counts"]["train"] == 40
    before = (root / split.train[0].sample_id).stat().st_mtime_ns
    write_dataset(tmp_path / "world", num_classes=8, shots=5, val_per_class=2, test_per_class=24, seed=3)
    assert (root / split.train[0].sample_id).stat().st_mtime_ns == before
    with pytest.raises(BobInputError, match="other settings"):
        write_dataset(tmp_path / "world", num_classes=8, shots=5, val_per_class=2, test_per_class=24, seed=4)


def test_rewriting_after_a_killed_write_clears_its_temporary_files(tmp_path):
    # A run killed outright while rendering leaves an empty hidden temporary file beside the
    # images; the dataset must be readable after the next write_dataset, whether that write
    # renders it (no manifest yet) or finds it complete (a rewrite already finished it).
    root = tmp_path / "world"
    stale = root / "test" / FEWSHOT_VARIANTS[0].name / f".{FEWSHOT_VARIANTS[0].name}_000.png.k1ll3d.tmp"
    for _ in ("rendered", "complete"):
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"")
        write_dataset(root, num_classes=2, shots=1, val_per_class=0, test_per_class=2, seed=0)
        assert not stale.exists()
        reader = ClassFolders(str(root), descriptor="aircraft", name="toyworld")
        assert len(FewShotSplit.load(root / "split.json", reader).test) == 4


def test_bias_knob_zero_gives_no_home_preference(tmp_path):
    root = write_dataset(tmp_path / "world", num_classes=8, shots=5, val_per_class=0, test_per_class=1, bias=0.0, seed=0)
    world = read_world(root)
    label_of = {v.name: i for i, v in enumerate(FEWSHOT_VARIANTS)}
    train = [w for w in world.values() if w.part == "train"]
    assert len(train) == 40
    assert not [w for w in train if w.background == home_background(label_of[w.class_name])]


def test_broad_dataset_is_reused_only_for_the_same_world(tmp_path):
    from bob.toyworld.backbone import write_broad_dataset

    root = write_broad_dataset(tmp_path / "broad", per_class=1, test_per_class=1)
    names = sorted(p.name for p in (root / "train").iterdir())
    assert names == sorted(v.name for v in broad_variants())
    marker = (root / "done").stat().st_mtime_ns
    assert write_broad_dataset(root, per_class=1, test_per_class=1) == root
    assert (root / "done").stat().st_mtime_ns == marker  # reused, not rendered again
    # A folder from another version of the world (other model names) is rendered again.
    (root / "train" / "Oldname").mkdir()
    (root / "done").write_text("Oldname\n", encoding="utf-8")
    write_broad_dataset(root, per_class=1, test_per_class=1)
    assert not (root / "train" / "Oldname").exists()
    assert sorted(p.name for p in (root / "train").iterdir()) == names
