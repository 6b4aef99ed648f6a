"""The generation plan: counts, seeds, context strategies and bad input (pure Python, no models)."""

import json
from collections import Counter

import pytest

from bob.data.generation_plan import (
    Context,
    GenerationPlan,
    GenerationPlanError,
    image_seed,
    images_per_class,
    item_key,
    load_context_file,
)
from bob.data.prompts import CLASS_TEMPLATE, CONTEXT_TEMPLATE, PromptTemplate

CLASSES = ["707-320", "F/A-18", "A380"]
CONTEXT = PromptTemplate(CONTEXT_TEMPLATE, "aircraft")
CLASS_ONLY = PromptTemplate(CLASS_TEMPLATE, "aircraft")


def bank(per_class: int = 5) -> list[Context]:
    return [
        Context({"background": f"{name} sky {i}", "pose": f"{name} pose {i}"}, f"train/{name}/{i}.jpg", name)
        for name in CLASSES for i in range(per_class)
    ]


def plan(strategy="marginal", counts=(40, 40, 40), contexts=None, template=CONTEXT, seed=0) -> GenerationPlan:
    pool = bank() if contexts is None else contexts
    return GenerationPlan(CLASSES, CLASSES, list(counts), template, strategy, pool, seed)


def test_counts_per_class_and_long_tail_rule():
    assert images_per_class(CLASSES, [5, 5, 5], 100) == [100, 100, 100]
    assert images_per_class(CLASSES, [5, 5, 5], {"F/A-18": 7}) == [0, 7, 0]
    # The paper: max(0, 200 - n_real(c) * m), so tail classes get the most images.
    assert images_per_class(CLASSES, [40, 10, 1], top_up_to=200, real_repeats=6) == [0, 140, 194]


@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_count_is_refused(bad):
    with pytest.raises(GenerationPlanError, match="images_per_class must be >= 1"):
        images_per_class(CLASSES, [5, 5, 5], bad)
    with pytest.raises(GenerationPlanError, match="top_up_to must be >= 1"):
        images_per_class(CLASSES, [5, 5, 5], top_up_to=bad)


def test_class_the_dataset_lacks_is_refused():
    with pytest.raises(GenerationPlanError, match="does not have.*Boeing 999"):
        images_per_class(CLASSES, [5, 5, 5], {"Boeing 999": 10, "A380": 3})


def test_plan_has_exact_counts_unique_keys_and_files_safe_for_slashes():
    made = plan(counts=(3, 0, 2))
    assert [(i.class_name, i.index) for i in made.items] == [
        ("707-320", 0), ("707-320", 1), ("707-320", 2), ("A380", 0), ("A380", 1)
    ]
    assert len(made.by_key) == len(made) == 5
    assert all("/" not in part for i in made.items for part in i.key.split("/")[:1])
    assert made.items[3].key == item_key(2, 0) == "0002/00000"
    assert "a F/A-18" in plan(counts=(0, 1, 0)).items[0].prompt  # the raw name stays in the prompt


def test_seeds_are_stable_distinct_and_independent_of_other_classes():
    seeds = [image_seed(0, c, i) for c in CLASSES for i in range(50)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert image_seed(0, "A380", 3) == image_seed(0, "A380", 3) != image_seed(1, "A380", 3)
    assert image_seed(0, "A380", 3, round=1) != image_seed(0, "A380", 3)
    full, alone = plan(counts=(4, 4, 4)), plan(counts=(0, 0, 4))
    assert [i.to_dict() for i in full.items if i.class_name == "A380"] == [i.to_dict() for i in alone.items]
    # Fixed values: a change of the derivation would silently change every synthetic set.
    assert image_seed(0, "A380", 0) == 5323745743869202571


def test_marginal_contexts_are_independent_of_the_class():
    made = plan("marginal", counts=(300, 300, 300))
    by_source = {c.source: c for c in bank()}
    for item in made.items:  # the (background, pose) pair stays together
        assert item.context == by_source[item.context_source].attributes
        assert item.prompt == CONTEXT.format(item.class_name, item.context)
    for target in CLASSES:
        sources = Counter(by_source[i.context_source].class_name for i in made.items if i.class_name == target)
        # Uniform over the bank: each source class ~1/3 of 300 (binomial sd ~8).
        assert all(70 <= sources[c] <= 130 for c in CLASSES), (target, sources)
    used = Counter(i.context_source for i in made.items)
    assert len(used) == 15 and max(used.values()) < 2.5 * min(used.values())


def test_within_class_contexts_come_from_the_same_class():
    made = plan("within_class", counts=(50, 50, 50))
    by_source = {c.source: c for c in bank()}
    assert all(by_source[i.context_source].class_name == i.class_name for i in made.items)
    assert len({i.context_source for i in made.items if i.class_name == "A380"}) == 5


def test_within_class_needs_captions_of_every_class():
    partial = [c for c in bank() if c.class_name != "A380"]
    with pytest.raises(GenerationPlanError, match="A380"):
        plan("within_class", contexts=partial)


def test_none_makes_class_only_prompts_and_keeps_the_noise():
    made = plan("none", counts=(2, 2, 2), template=CLASS_ONLY)
    assert [i.prompt for i in made.items[:2]] == ["an aircraft photo of a 707-320"] * 2
    assert all(i.context == {} and i.context_source is None for i in made.items)
    # Same seed, same noise per image whatever the strategy: the arms compare image by image.
    assert [i.seed for i in made.items] == [i.seed for i in plan(counts=(2, 2, 2)).items]
    with pytest.raises(GenerationPlanError, match="class-only"):
        plan("none", template=CONTEXT)


def test_fixed_contexts_come_from_the_file(tmp_path):
    jsonl = tmp_path / "invented.jsonl"
    jsonl.write_text("\n".join(json.dumps({"background": f"moon base {i}", "pose": "hovering"}) for i in range(4)))
    tsv = tmp_path / "invented.tsv"
    tsv.write_text("background\tpose\ndesert\tbanking\nsea\tclimbing\n")
    for path, expected in ((jsonl, 4), (tsv, 2)):
        contexts = load_context_file(path)
        made = plan("fixed", counts=(30, 30, 30), contexts=contexts)
        assert {i.context_source for i in made.items} == {c.source for c in contexts}
        assert len(contexts) == expected
    assert load_context_file(tsv)[1].attributes == {"background": "sea", "pose": "climbing"}


def test_bad_context_inputs_are_refused(tmp_path):
    with pytest.raises(GenerationPlanError, match="caption bank has no records"):
        plan("marginal", contexts=[])
    ragged = tmp_path / "ragged.jsonl"
    ragged.write_text('{"background": "a", "pose": "b"}\n{"background": "c"}\n')
    with pytest.raises(GenerationPlanError, match="ragged.jsonl:2"):
        load_context_file(ragged)
    with pytest.raises(GenerationPlanError, match="does not exist"):
        load_context_file(tmp_path / "missing.jsonl")
    with pytest.raises(Exception, match="pose"):
        plan("fixed", contexts=[Context({"background": "only"}, "f:1")])


def test_fingerprint_follows_what_would_change_the_images():
    base = plan(counts=(3, 3, 3)).fingerprint
    assert plan(counts=(3, 3, 3)).fingerprint == base
    assert plan(counts=(3, 3, 4)).fingerprint != base
    assert plan(counts=(3, 3, 3), seed=1).fingerprint != base
    assert plan("within_class", counts=(3, 3, 3)).fingerprint != base


def test_refresh_selects_a_fraction_with_fresh_seeds_and_contexts():
    made = plan(counts=(20, 20, 20))
    first = made.select_for_refresh(0.25, round=1)
    assert len(first) == 15
    assert [i.key for i in first] == [i.key for i in made.select_for_refresh(0.25, round=1)]
    assert {i.key for i in first} != {i.key for i in made.select_for_refresh(0.25, round=2)}
    for item in first:
        original = made.by_key[item.key]
        assert item.round == 1 and item.seed != original.seed and item.class_name == original.class_name
    assert sum(i.context_source != made.by_key[i.key].context_source for i in first) >= 10
    with pytest.raises(GenerationPlanError):
        made.select_for_refresh(0.0, round=1)


def test_index_seed_scope_shares_noise_and_contexts_across_classes_as_the_release_did():
    shared = GenerationPlan(CLASSES, CLASSES, [6, 6, 6], CONTEXT, "marginal", bank(), 42, seed_scope="index")
    by_class = {c: [i for i in shared.items if i.class_name == c] for c in CLASSES}
    for a, b in zip(by_class["707-320"], by_class["A380"], strict=True):
        assert a.seed == b.seed and a.context_source == b.context_source and a.prompt != b.prompt
    assert len({i.seed for i in by_class["A380"]}) == 6  # distinct within a class
    own = plan(counts=(6, 6, 6), seed=42)
    assert own.fingerprint != shared.fingerprint and shared.describe()["seed_scope"] == "index"
    with pytest.raises(GenerationPlanError, match="seed_scope"):
        GenerationPlan(CLASSES, CLASSES, [1, 1, 1], CONTEXT, "marginal", bank(), 0, seed_scope="class")
