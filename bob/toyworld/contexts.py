"""The toy world's contexts: backgrounds and poses, each with VLM-like phrasings of varying length."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Background:
    """A procedural backdrop.

    Args:
        name: short id, used in file names and metrics.
        phrasings: ways a captioner might describe it, from two words to a sentence.
    """

    name: str
    phrasings: tuple[str, ...]


@dataclass(frozen=True)
class Pose:
    """Where the aircraft is and which way it points.

    Args:
        name: short id.
        heading: degrees clockwise from nose-up.
        scale: size relative to the default silhouette.
        offset: centre offset as fractions of the image side, (right, down).
        phrasings: ways a captioner might describe it.
    """

    name: str
    heading: float
    scale: float
    offset: tuple[float, float]
    phrasings: tuple[str, ...]


BACKGROUNDS: tuple[Background, ...] = (
    Background("sky", (
        "Clear blue sky", "clear sky", "blue sky", "A cloudless blue sky",
        "The aircraft is flying in a clear blue sky with no clouds",
    )),
    Background("clouds", (
        "Cloudy sky", "white clouds", "Clouds", "Fluffy white clouds in a pale sky",
        "The sky is full of thick white clouds",
    )),
    Background("grass", (
        "Grass", "green grass", "Grassy field", "A green grass field seen from above",
        "The aircraft is over a green field of grass",
    )),
    Background("desert", (
        "Desert", "sand dunes", "Desert sand", "Sandy desert with dunes",
        "The aircraft is above a dry desert with sand dunes",
    )),
    Background("snow", (
        "Snow", "snowy ground", "Snow field", "A white snowy landscape",
        "The ground below is covered in white snow",
    )),
    Background("night", (
        "Night sky", "dark sky with stars", "Night", "A dark night sky with stars",
        "The aircraft is flying at night under a starry sky",
    )),
    Background("water", (
        "Ocean", "water", "Sea water", "Blue ocean with small waves",
        "The aircraft is flying low over the blue sea",
    )),
    Background("runway", (
        "Runway", "airport runway", "Tarmac", "Grey runway with white markings",
        "The aircraft is on an airport runway with painted lines",
    )),
)

POSES: tuple[Pose, ...] = (
    Pose("up", 0.0, 1.0, (0.0, 0.0), (
        "Flying upward", "nose up", "Climbing", "Pointing straight up, centered",
        "The aircraft is flying upward with its nose to the top of the image",
    )),
    Pose("right", 90.0, 1.0, (0.0, 0.0), (
        "Flying right", "heading right", "Facing right", "Flying to the right, seen from above",
        "The aircraft is flying toward the right side of the image",
    )),
    Pose("down", 180.0, 0.95, (0.0, 0.0), (
        "Flying downward", "nose down", "Diving", "Pointing down toward the bottom",
        "The aircraft is flying down with its nose to the bottom of the image",
    )),
    Pose("left", 270.0, 0.9, (0.0, 0.0), (
        "Flying left", "heading left", "Facing left", "Turning to the left, seen from above",
        "The aircraft is flying toward the left side of the image",
    )),
    Pose("far", 45.0, 0.6, (-0.16, -0.16), (
        "Far away", "distant and small", "Small in the distance", "A small aircraft far away in the corner",
        "The aircraft is small and far away in the upper left",
    )),
    Pose("close", 315.0, 1.25, (0.0, 0.0), (
        "Close up", "large and close", "Close view", "A large close view filling the image",
        "The aircraft is very close and fills most of the image",
    )),
)

BACKGROUND_NAMES = tuple(b.name for b in BACKGROUNDS)
POSE_NAMES = tuple(p.name for p in POSES)


def phrase(options: tuple[str, ...], rng: random.Random) -> str:
    """One phrasing, chosen like a captioner's varying answers."""
    return rng.choice(options)
