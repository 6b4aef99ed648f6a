"""Captions of the broad pretraining world: coarse family, background and pose, never a few-shot name."""

from __future__ import annotations

import random

from bob.data.class_names import with_article
from bob.data.prompts import CLASS_TEMPLATE, CONTEXT_TEMPLATE
from bob.toyworld.contexts import BACKGROUNDS, POSES, phrase
from bob.toyworld.render import Scene

DESCRIPTOR = "aircraft"
#: the prompt forms of the later stages, so the prior already reads them.
_BACKGROUND_ONLY = "{a_descriptor} photo of a {class_name} in the {background} background"
_POSE_ONLY = "{a_descriptor} photo of a {class_name} with the {pose} pose"
_FORMS = ((CONTEXT_TEMPLATE, 0.55), (CLASS_TEMPLATE, 0.2), (_BACKGROUND_ONLY, 0.15), (_POSE_ONLY, 0.1))


def class_words(scene: Scene, rng: random.Random) -> str:
    """How a broad caption names the aircraft: its family, its model name, or both.

    Model names of broad variants teach the prior that a name stands for a look. Most captions
    carry the name: each of the 256 names has to be seen often enough to be bound to its parts.
    """
    variant = scene.variant
    return rng.choices(
        (variant.family, variant.name, f"{variant.name} {variant.family}"), weights=(0.2, 0.5, 0.3)
    )[0]


def broad_caption(scene: Scene, rng: random.Random, empty_probability: float = 0.08) -> str:
    """A caption of ``scene`` in one of the forms the few-shot stages use; sometimes empty, for guidance."""
    if rng.random() < empty_probability:
        return ""
    template = rng.choices([f for f, _ in _FORMS], weights=[w for _, w in _FORMS])[0]
    return template.format(
        a_descriptor=with_article(DESCRIPTOR),
        class_name=class_words(scene, rng),
        background=phrase(BACKGROUNDS[scene.background].phrasings, rng),
        pose=phrase(POSES[scene.pose].phrasings, rng),
    )


def all_caption_texts() -> list[str]:
    """Every fixed text a toy-world caption or prompt is built from (for the tokenizer's vocabulary).

    The model names of the broad world *and* of the few-shot classes are included, each as one
    word: a few-shot name is then one token whose embedding pretraining never touched, as a
    rare real class name is one or two tokens of a real text-to-image model's vocabulary.
    """
    from bob.toyworld.variants import FAMILY_OF_WING, FEWSHOT_VARIANTS, broad_variants

    texts = [CONTEXT_TEMPLATE, CLASS_TEMPLATE, _BACKGROUND_ONLY, _POSE_ONLY, with_article(DESCRIPTOR)]
    texts += list(FAMILY_OF_WING.values())
    texts += [v.name for v in (*broad_variants(), *FEWSHOT_VARIANTS)]
    texts += [p for b in BACKGROUNDS for p in b.phrasings]
    texts += [p for pose in POSES for p in pose.phrasings]
    return texts
