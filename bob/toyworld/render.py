"""The toy world's renderer: a top-down aircraft of a given variant, in a background and pose."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from bob.toyworld.contexts import BACKGROUNDS, POSES
from bob.toyworld.variants import COLOURS, Variant

IMAGE_SIZE = 64
#: drawn at twice the size and box-filtered down, so edges are anti-aliased like a photo's.
_CANVAS = 2 * IMAGE_SIZE
_OUTLINE = (35, 35, 40)
_ENGINE = (55, 55, 62)
_HALF_SPAN = {"straight": 46.0, "swept": 46.0, "delta": 40.0, "glider": 58.0}


@dataclass(frozen=True)
class Scene:
    """Everything that decides one image: variant, context and the seed of its jitter and texture."""

    variant: Variant
    background: int
    pose: int
    seed: int


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Noise in [0, 1] varying over ``cells`` cells across the canvas (bicubic upsampling)."""
    coarse = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(coarse.resize((_CANVAS, _CANVAS), Image.BICUBIC)).clip(0.0, 1.0)


def _mix(base: tuple[int, ...], other: tuple[int, ...], amount: np.ndarray) -> np.ndarray:
    base_, other_ = np.asarray(base, np.float32), np.asarray(other, np.float32)
    return base_ + (other_ - base_) * amount[..., None]


def _background(kind: str, rng: np.random.Generator) -> np.ndarray:
    size = _CANVAS
    rows = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None].repeat(size, 1)
    fine = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    if kind == "sky":
        image = _mix((85, 145, 225), (165, 205, 242), rows) + 3 * fine[..., None]
    elif kind == "clouds":
        cover = np.clip((_smooth_noise(rng, 5) - 0.25) * 3.0, 0.0, 1.0)
        image = _mix((120, 140, 175), (246, 246, 250), cover) + 4 * fine[..., None]
    elif kind == "grass":
        patches = _smooth_noise(rng, 8)
        image = _mix((50, 115, 35), (105, 160, 60), patches) + 12 * fine[..., None]
    elif kind == "desert":
        angle = rng.uniform(0, math.pi)
        x, y = np.meshgrid(np.arange(size), np.arange(size))
        dunes = 0.5 + 0.5 * np.sin((x * math.cos(angle) + y * math.sin(angle)) / 9.0 + rng.uniform(0, 6.3))
        image = _mix((190, 155, 95), (232, 205, 150), dunes.astype(np.float32)) + 4 * fine[..., None]
    elif kind == "snow":
        shade = _smooth_noise(rng, 4)
        image = _mix((205, 215, 235), (250, 252, 255), shade) + 3 * fine[..., None]
    elif kind == "night":
        image = _mix((8, 12, 38), (22, 28, 70), rows) + 2 * fine[..., None]
        for _ in range(int(rng.integers(25, 45))):
            x, y = rng.integers(0, size - 2, 2)
            image[y : y + 2, x : x + 2] = rng.uniform(200, 255)
    elif kind == "water":
        x, y = np.meshgrid(np.arange(size), np.arange(size))
        waves = 0.5 + 0.5 * np.sin(y / 3.0 + 2.0 * np.sin(x / 11.0 + rng.uniform(0, 6.3)))
        image = _mix((15, 75, 130), (45, 125, 175), waves.astype(np.float32)) + 5 * fine[..., None]
    elif kind == "runway":
        image = np.full((size, size, 3), 92.0, np.float32) + 7 * fine[..., None]
        centre = int(rng.integers(size // 3, 2 * size // 3))
        for edge in (centre - 44, centre + 44):
            if 0 <= edge < size - 3:
                image[:, edge : edge + 3] = 225.0
        phase = int(rng.integers(0, 24))
        for top in range(-24 + phase, size, 24):
            image[max(top, 0) : max(top + 12, 0), centre - 2 : centre + 2] = 235.0
    else:
        raise ValueError(f"unknown background {kind!r}")
    return image


def _wing_edges(wing: str, x: float) -> tuple[float, float]:
    """Leading and trailing edge (body axis, tail is +y) of the right wing at span position ``x``."""
    if wing == "straight":
        return -9.0, 7.0
    if wing == "swept":
        return -12.0 + (x - 6.0) * 0.6, 7.0 + (x - 6.0) * 0.35
    if wing == "delta":
        return -22.0 + (x - 6.0) * 1.5, 30.0
    return -5.0, 4.0


def _wing_section(wing: str, x0: float, x1: float) -> list[tuple[float, float]]:
    lead0, trail0 = _wing_edges(wing, x0)
    lead1, trail1 = _wing_edges(wing, x1)
    return [(x0, lead0), (x1, lead1), (x1, trail1), (x0, trail0)]


def _mirror(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(-x, y) for x, y in points]


def _paint(variant: Variant, colour: str) -> tuple[int, int, int]:
    return COLOURS[variant.body] if colour in ("none", "body") else COLOURS[colour]


def _aircraft_shapes(variant: Variant) -> list[tuple[list[tuple[float, float]], tuple[int, int, int]]]:
    """Polygons in body coordinates (nose at -y, about 84 canvas px long), back to front."""
    body = COLOURS[variant.body]
    span = _HALF_SPAN[variant.wing]
    tip_start = span - (14.0 if variant.wing != "glider" else 18.0)
    shapes = []
    for side in (lambda p: p, _mirror):
        shapes.append((side(_wing_section(variant.wing, 5.0, tip_start)), body))
        shapes.append((side(_wing_section(variant.wing, tip_start, span)), _paint(variant, variant.wingtip)))
    pods = {0: (), 2: (19.0,), 4: (16.0, 31.0)}[variant.engines]
    for x in pods:
        lead, _ = _wing_edges(variant.wing, x)
        pod = [(x - 5.5, lead - 9.0), (x + 5.5, lead - 9.0), (x + 5.5, lead + 9.0), (x - 5.5, lead + 9.0)]
        shapes += [(pod, _ENGINE), (_mirror(pod), _ENGINE)]
    tail = COLOURS[variant.tail]
    if variant.wing != "delta":
        plane = [(3.0, 26.0), (21.0, 33.0), (21.0, 41.0), (3.0, 40.0)]
        shapes += [(plane, tail), (_mirror(plane), tail)]
    fuselage = [(0.0, -44.0), (6.5, -32.0), (6.5, 34.0), (3.5, 44.0), (-3.5, 44.0), (-6.5, 34.0), (-6.5, -32.0)]
    shapes.append((fuselage, body))
    shapes.append(([(0.0, -44.0), (6.5, -32.0), (-6.5, -32.0)], _paint(variant, variant.nose)))
    shapes.append(([(-3.5, 16.0), (3.5, 16.0), (3.5, 44.0), (-3.5, 44.0)], tail))
    return shapes


def render(scene: Scene) -> Image.Image:
    """The 64x64 RGB image of ``scene``; the same scene always gives the same pixels."""
    return render_with_mask(scene)[0]


def render_with_mask(scene: Scene) -> tuple[Image.Image, np.ndarray]:
    """The image of ``scene`` (as `render`) and the aircraft's coverage of each pixel, float32
    64x64 in [0, 1] (outline included): what an autoencoder's loss can weigh more."""
    rng = np.random.default_rng(scene.seed)
    pose = POSES[scene.pose]
    image = _background(BACKGROUNDS[scene.background].name, rng)
    canvas = Image.fromarray(image.clip(0, 255).astype(np.uint8), mode="RGB")
    mask = Image.new("L", canvas.size, 0)
    heading = math.radians(pose.heading + rng.uniform(-12.0, 12.0))
    scale = pose.scale * rng.uniform(0.94, 1.06)
    centre_x = _CANVAS * (0.5 + pose.offset[0] + rng.uniform(-0.03, 0.03))
    centre_y = _CANVAS * (0.5 + pose.offset[1] + rng.uniform(-0.03, 0.03))
    cos, sin = math.cos(heading), math.sin(heading)
    draw, draw_mask = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    for points, colour in _aircraft_shapes(scene.variant):
        placed = [
            (centre_x + scale * (x * cos - y * sin), centre_y + scale * (x * sin + y * cos)) for x, y in points
        ]
        draw.polygon(placed, fill=colour, outline=_OUTLINE, width=2)
        draw_mask.polygon(placed, fill=255, outline=255, width=2)
    small = canvas.reduce(_CANVAS // IMAGE_SIZE)
    light = rng.uniform(0.93, 1.07)
    pixels = Image.fromarray((np.asarray(small, np.float32) * light).clip(0, 255).astype(np.uint8), mode="RGB")
    return pixels, np.asarray(mask.reduce(_CANVAS // IMAGE_SIZE), np.float32) / 255.0
