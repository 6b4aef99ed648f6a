"""The toy world's aircraft variants: part vocabulary, the few-shot classes and the broad world."""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass
from functools import cache
from typing import Literal

Wing = Literal["straight", "swept", "delta", "glider"]

#: RGB colours of painted parts; bold and far apart, because the prior's VAE blurs 2-3 px details.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "blue": (35, 75, 215),
    "green": (30, 165, 60),
    "orange": (245, 140, 15),
    "yellow": (245, 215, 25),
    "black": (25, 25, 30),
    "purple": (140, 50, 180),
    "white": (240, 240, 240),
    "silver": (165, 172, 182),
    "tan": (200, 170, 120),
}

#: coarse family word a caption may use for each wing shape (the broad world's only class words).
FAMILY_OF_WING: dict[str, str] = {
    "swept": "jetliner",
    "straight": "transport",
    "delta": "fighter",
    "glider": "glider",
}
ENGINES_OF_WING: dict[str, tuple[int, ...]] = {
    "swept": (2, 4),
    "straight": (2, 4),
    "delta": (0, 2),
    "glider": (0,),
}
TAIL_COLOURS = ("red", "blue", "green", "orange", "black", "purple")
TIP_COLOURS = ("none", "yellow", "red", "blue", "black", "green")
BODY_COLOURS = ("white", "silver", "tan", "yellow")
NOSE_COLOURS = ("body", "black", "red", "blue")
#: the fields of `Variant` that decide its look, in the order of `Variant.parts`.
PART_NAMES = ("wing", "engines", "tail", "wingtip", "body", "nose")


@dataclass(frozen=True)
class Variant:
    """One aircraft variant: a named combination of parts.

    Args:
        name: the variant's model name, e.g. ``Korvan``; the few-shot classes' names appear in
            no pretraining caption.
        wing: wing planform; also decides the coarse family word.
        engines: number of under-wing engine pods (0, 2 or 4).
        tail: colour of the tailplane and fin.
        wingtip: colour of the outer wing sections, or ``none`` (painted like the body).
        body: fuselage and wing colour.
        nose: nose-cone colour, or ``body``.
    """

    name: str
    wing: Wing
    engines: int
    tail: str
    wingtip: str
    body: str
    nose: str

    @property
    def family(self) -> str:
        return FAMILY_OF_WING[self.wing]

    @property
    def parts(self) -> tuple[str, int, str, str, str, str]:
        return tuple(getattr(self, part) for part in PART_NAMES)

    def to_dict(self) -> dict:
        return {**asdict(self), "family": self.family}


#: Letters of made-up model names. Names are one letter run (no digits, no hyphen) because
#: CLIP's pre-tokenizer splits digits and punctuation apart: a letter run can be one token of
#: the prior's vocabulary, so the prior can bind a whole name to a look, as a real text-to-image
#: model binds a real model name.
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def model_name(rng: random.Random) -> str:
    """A made-up, pronounceable model name such as ``Korvan`` (consonant-vowel-consonant-vowel-consonant)."""
    c, v = _CONSONANTS, _VOWELS
    return (rng.choice(c) + rng.choice(v) + rng.choice(c) + rng.choice(v) + rng.choice(c)).capitalize()


def _names(count: int, salt: str, taken: set[str]) -> list[str]:
    rng = random.Random(f"model-names|{salt}")
    names: list[str] = []
    while len(names) < count:
        name = model_name(rng)
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _fewshot_variants() -> tuple[Variant, ...]:
    # Four binary part choices give 16 classes; every class has neighbours that differ in one
    # part only (wing planform, engine count, tail colour or wingtip paint): fine-grained.
    names = iter(_names(16, "few-shot", set()))
    variants = []
    for wing, tail in itertools.product(("swept", "straight"), ("red", "blue")):
        for engines, wingtip in itertools.product((2, 4), ("none", "yellow")):
            variants.append(Variant(next(names), wing, engines, tail, wingtip, body="silver", nose="black"))
    return tuple(variants)


#: The few-shot classes, in label order of their names (the order `ClassFolders` reads them).
FEWSHOT_VARIANTS: tuple[Variant, ...] = tuple(sorted(_fewshot_variants(), key=lambda v: v.name))


@cache
def broad_variants(count: int = 256, seed: int = 0) -> tuple[Variant, ...]:
    """The broad pretraining world: ``count`` random part combinations, none a few-shot class."""
    rng = random.Random(f"broad-variants|{seed}")
    held_out = {v.parts for v in FEWSHOT_VARIANTS}
    seen: set[tuple] = set()
    names = iter(_names(count, f"broad|{seed}", {v.name for v in FEWSHOT_VARIANTS}))
    variants: list[Variant] = []
    while len(variants) < count:
        wing = rng.choice(tuple(FAMILY_OF_WING))
        parts = (
            wing,
            rng.choice(ENGINES_OF_WING[wing]),
            rng.choice(TAIL_COLOURS),
            rng.choice(TIP_COLOURS),
            rng.choice(BODY_COLOURS),
            rng.choice(NOSE_COLOURS),
        )
        if parts in held_out or parts in seen:
            continue
        seen.add(parts)
        variants.append(Variant(next(names), *parts))
    return tuple(variants)


def fewshot_variant(name: str) -> Variant:
    for variant in FEWSHOT_VARIANTS:
        if variant.name == name:
            return variant
    raise KeyError(f"no few-shot toy-world variant named {name!r}; known: {[v.name for v in FEWSHOT_VARIANTS]}")
