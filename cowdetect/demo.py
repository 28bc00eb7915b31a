"""The embedded demo data: pasture scenes with cows, drawn by our own code, and a video.

Everything is generated from a seed (no downloads), so two runs give the same bytes.
Cows have a body, head, legs, tail and udder, in Holstein, brown, Hereford, black, Jersey
or white coats, of several sizes, facing left or right, grazing or looking up, and partly
hidden by fences, each other or the frame edge. Some images hold no cow; some hold a dog,
a person or a cow-coloured rock as distractors. Boxes (xyxy px) enclose each cow's
*visible* pixels, as COCO's do.

The video shows cows walking across a pasture, crossing each other, one leaving the frame
and coming back; its ground truth is MOTChallenge text
(``frame,id,x,y,w,h,conf,class,visibility``, frames from 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .detections import Detections
from .images import encode_image

SS = 3  # sprites are drawn 3x larger and scaled down, which smooths their edges

COATS: dict[str, dict[str, Any]] = {
    "holstein": {"base": (236, 234, 228), "patch": (30, 28, 28)},
    "black_white": {"base": (32, 30, 30), "patch": (236, 234, 228)},
    "brown": {"base": (122, 70, 38)},
    "hereford": {"base": (138, 56, 28), "face": (238, 234, 226)},
    "black": {"base": (36, 32, 32)},
    "jersey": {"base": (178, 124, 74)},
    "white": {"base": (230, 222, 202)},
}
COAT_WEIGHTS = {"holstein": 0.34, "black_white": 0.08, "brown": 0.16, "hereford": 0.12, "black": 0.12,
                "jersey": 0.08, "white": 0.10}


def _shade(color: tuple[int, ...], factor: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * factor))) for c in color[:3])  # type: ignore[return-value]


def _jitter(color: tuple[int, ...], rng: np.random.Generator, amount: int = 12) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color[:3])  # type: ignore[return-value]


def _finish(img: Image.Image, outline: tuple[int, int, int]) -> Image.Image:
    """Add a thin dark outline around the silhouette, then scale the sprite down by SS."""
    alpha = img.getchannel("A")
    # dilate the silhouette by ~SS px: a box blur then "any coverage" is much faster than MaxFilter
    grown = alpha.filter(ImageFilter.BoxBlur(SS - 1)).point(lambda v: 255 if v > 8 else 0)
    under = Image.new("RGBA", img.size, outline + (255,))
    under.putalpha(grown)
    under.alpha_composite(img)
    w, h = img.size
    return under.resize((max(1, w // SS), max(1, h // SS)), Image.LANCZOS)


# -- sprites (all face right; flip for left) -----------------------------------------------

def _pts(L: float, *xy: float) -> list[tuple[float, float]]:
    """Pixel (x, y) pairs from coordinates in body lengths ``L``."""
    return [(xy[i] * L, xy[i + 1] * L) for i in range(0, len(xy), 2)]


# the cow's head in body lengths, looking up (False) or grazing (True); "eye" is its centre
_COW_HEADS: dict[bool, dict[str, tuple[float, ...]]] = {
    False: {"neck": (1.06, 0.34, 1.30, 0.28, 1.46, 0.40, 1.44, 0.60, 1.18, 0.74),
            "head": (1.36, 0.28, 1.54, 0.27, 1.74, 0.48, 1.72, 0.58, 1.58, 0.62, 1.40, 0.50),
            "muzzle": (1.58, 0.45, 1.76, 0.62), "eye": (1.52, 0.37), "ear": (1.26, 0.27, 1.42, 0.34),
            "horn": (1.44, 0.20, 1.50, 0.28)},
    True: {"neck": (1.06, 0.36, 1.26, 0.36, 1.52, 0.84, 1.38, 0.92, 1.12, 0.70),
           "head": (1.36, 0.76, 1.54, 0.72, 1.66, 1.00, 1.60, 1.10, 1.46, 1.10, 1.36, 0.92),
           "muzzle": (1.46, 0.98, 1.64, 1.12), "eye": (1.53, 0.84), "ear": (1.26, 0.74, 1.42, 0.81),
           "horn": (1.40, 0.70, 1.47, 0.74)},
}

_Legs = list[tuple[float, float, bool]]  # (x centre in body lengths, hoof offset, on the far side)


def cow_sprite(length: int, coat: str, rng: np.random.Generator, phase: float = 0.0,
               grazing: bool = False) -> Image.Image:
    """An RGBA cow facing right whose body is ``length`` px long; feet at the bottom edge.

    ``phase`` (radians) swings the legs for walking; ``grazing`` lowers the head.
    """
    L = length * SS
    W, H = int(1.80 * L), int(1.20 * L)
    spec = COATS[coat]
    base = _jitter(spec["base"], rng, 10)
    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    pose = {part: _pts(L, *xy) for part, xy in _COW_HEADS[grazing].items()}
    swing = 0.07 * math.sin(phase)
    legs = [(0.36, -swing, True), (1.04, swing, True), (0.47, swing, False), (1.15, -swing, False)]
    _cow_silhouette(d, L, base, legs, pose)
    coat_mask = img.getchannel("A")
    if "patch" in spec:
        _cow_patches(img, coat_mask, spec["patch"], L, rng)
    if "face" in spec:
        d.polygon(pose["head"], fill=spec["face"])
    _cow_details(d, L, base, coat, legs, pose, rng)
    _belly_shadow(img, coat_mask, L)
    return _finish(img, _shade(base, 0.45))


def _cow_silhouette(d: ImageDraw.ImageDraw, L: float, base: tuple[int, int, int], legs: _Legs,
                    pose: dict[str, list[tuple[float, float]]]) -> None:
    """Legs, body, neck, head, ear and tail in the base coat colour, far legs darker and behind."""
    def leg(xc: float, dx: float, color: tuple[int, int, int]) -> None:
        d.polygon(_pts(L, xc - 0.06, 0.62, xc + 0.06, 0.62, xc + 0.045 + dx, 1.12, xc - 0.045 + dx, 1.12),
                  fill=color)

    for xc, dx, far in legs:
        if far:
            leg(xc, dx, _shade(base, 0.78))
    # body, hip and shoulder
    d.rounded_rectangle([0.22 * L, 0.30 * L, 1.24 * L, 0.78 * L], radius=0.2 * L, fill=base)
    d.ellipse(_pts(L, 0.34, 0.48, 1.12, 0.86), fill=base)
    d.ellipse(_pts(L, 0.18, 0.25, 0.52, 0.58), fill=base)
    d.ellipse(_pts(L, 0.94, 0.27, 1.28, 0.72), fill=base)
    d.polygon(pose["neck"], fill=base)
    d.polygon(pose["head"], fill=base)
    d.ellipse(pose["ear"], fill=base)
    for xc, dx, far in legs:
        if not far:
            leg(xc, dx, base)
    # tail hangs from the rump; it is part of the coat so patches may cover it
    d.line(_pts(L, 0.24, 0.36, 0.16, 0.60, 0.17, 0.92), fill=base, width=max(1, int(0.035 * L)), joint="curve")


def _cow_patches(img: Image.Image, coat_mask: Image.Image, color: tuple[int, int, int], L: float,
                 rng: np.random.Generator) -> None:
    """Paint 4 to 8 random blobs of ``color`` on the coat (never outside ``coat_mask``)."""
    W, H = img.size
    patches = Image.new("L", (W, H), 0)
    pd = ImageDraw.Draw(patches)
    for _ in range(int(rng.integers(4, 9))):
        cx, cy = rng.uniform(0.2, 1.7), rng.uniform(0.25, 1.05)
        rx, ry = rng.uniform(0.07, 0.22), rng.uniform(0.06, 0.18)
        pts = []
        for k in range(10):
            a = 2 * math.pi * k / 10
            r = rng.uniform(0.7, 1.2)
            pts.append(((cx + rx * r * math.cos(a)) * L, (cy + ry * r * math.sin(a)) * L))
        pd.polygon(pts, fill=255)
    patches = Image.fromarray(np.minimum(np.asarray(patches), np.asarray(coat_mask)))
    img.paste(Image.new("RGBA", (W, H), _jitter(color, rng, 6) + (255,)), (0, 0), patches)


def _cow_details(d: ImageDraw.ImageDraw, L: float, base: tuple[int, int, int], coat: str, legs: _Legs,
                 pose: dict[str, list[tuple[float, float]]], rng: np.random.Generator) -> None:
    """Muzzle, eye, horns (sometimes), tail tuft, udder (mostly) and hooves, drawn over the coat."""
    d.ellipse(pose["muzzle"], fill=_jitter((214, 160, 150), rng, 10) if coat not in ("black", "black_white")
              else (70, 62, 62))
    (ex, ey), = pose["eye"]
    d.ellipse([ex - 0.022 * L, ey - 0.022 * L, ex + 0.022 * L, ey + 0.022 * L], fill=(15, 12, 12))
    if rng.random() < 0.5:
        d.ellipse(pose["horn"], fill=(226, 214, 180))
    d.ellipse(_pts(L, 0.12, 0.86, 0.22, 1.02), fill=_shade(base, 0.55))  # tail tuft
    if rng.random() < 0.8:  # udder
        d.ellipse(_pts(L, 0.50, 0.72, 0.74, 0.88), fill=_jitter((226, 168, 164), rng, 8))
    for xc, dx, far in legs:
        d.polygon(_pts(L, xc - 0.05 + dx, 1.10, xc + 0.05 + dx, 1.10, xc + 0.052 + dx, 1.17, xc - 0.052 + dx, 1.17),
                  fill=(40, 32, 28))


def _belly_shadow(img: Image.Image, coat_mask: Image.Image, L: float) -> None:
    """Darken the belly softly, within the coat, to give the body some volume."""
    W, H = img.size
    shade = Image.new("L", (W, H), 0)
    ImageDraw.Draw(shade).ellipse(_pts(L, 0.30, 0.62, 1.16, 0.90), fill=60)
    shade = Image.fromarray(np.minimum(np.asarray(shade.filter(ImageFilter.GaussianBlur(0.05 * L))),
                                       np.asarray(coat_mask)))
    img.paste(Image.new("RGBA", (W, H), (0, 0, 0, 255)), (0, 0), shade)


def dog_sprite(length: int, rng: np.random.Generator) -> Image.Image:
    """An RGBA dog facing right (a distractor): slim body, long legs, pricked ears, raised tail."""
    L = length * SS
    W, H = int(1.45 * L), int(1.05 * L)
    color = _jitter([(196, 146, 78), (40, 36, 34), (150, 96, 52), (220, 200, 160)][int(rng.integers(4))], rng)
    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)

    def p(*xy: float) -> list[tuple[float, float]]:
        return [(xy[i] * L, xy[i + 1] * L) for i in range(0, len(xy), 2)]

    for xc in (0.32, 0.42, 0.88, 0.98):
        d.polygon(p(xc - 0.04, 0.5, xc + 0.04, 0.5, xc + 0.03, 1.02, xc - 0.03, 1.02), fill=color)
    d.ellipse(p(0.22, 0.34, 1.04, 0.64), fill=color)
    d.polygon(p(0.90, 0.40, 1.02, 0.22, 1.14, 0.26, 1.06, 0.52), fill=color)
    d.ellipse(p(0.98, 0.14, 1.24, 0.38), fill=color)
    d.polygon(p(1.18, 0.22, 1.42, 0.30, 1.40, 0.36, 1.18, 0.36), fill=color)
    d.polygon(p(1.02, 0.20, 1.06, 0.02, 1.14, 0.18), fill=_shade(color, 0.8))
    d.line(p(0.25, 0.42, 0.14, 0.28, 0.08, 0.12), fill=color, width=max(1, int(0.05 * L)), joint="curve")
    d.ellipse(p(1.38, 0.28, 1.44, 0.34), fill=(10, 10, 10))
    d.ellipse(p(1.12, 0.22, 1.16, 0.26), fill=(10, 10, 10))
    return _finish(img, _shade(color, 0.5))


def person_sprite(height: int, rng: np.random.Generator) -> Image.Image:
    """An RGBA standing person (a distractor), ``height`` px tall."""
    U = height * SS
    W, H = int(0.42 * U), int(1.0 * U)
    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)

    def p(*xy: float) -> list[tuple[float, float]]:
        return [(xy[i] * U, xy[i + 1] * U) for i in range(0, len(xy), 2)]

    skin = _jitter([(236, 196, 160), (170, 120, 84), (110, 76, 52)][int(rng.integers(3))], rng, 8)
    shirt = _jitter([(40, 80, 160), (180, 40, 40), (60, 120, 60), (230, 190, 40)][int(rng.integers(4))], rng)
    trousers = _jitter([(40, 50, 80), (70, 60, 50), (30, 30, 30)][int(rng.integers(3))], rng)
    d.polygon(p(0.12, 0.55, 0.20, 0.55, 0.19, 0.96, 0.11, 0.96), fill=trousers)
    d.polygon(p(0.22, 0.55, 0.30, 0.55, 0.31, 0.96, 0.23, 0.96), fill=trousers)
    d.rounded_rectangle(p(0.10, 0.20, 0.32, 0.58), radius=0.04 * U, fill=shirt)
    d.line(p(0.11, 0.24, 0.05, 0.42, 0.07, 0.55), fill=shirt, width=int(0.05 * U), joint="curve")
    d.line(p(0.31, 0.24, 0.37, 0.42, 0.35, 0.55), fill=shirt, width=int(0.05 * U), joint="curve")
    d.ellipse(p(0.14, 0.05, 0.28, 0.20), fill=skin)
    d.chord(p(0.13, 0.03, 0.29, 0.17), 180, 360, fill=_jitter((60, 40, 30), rng))
    d.rectangle(p(0.10, 0.95, 0.32, 1.0), fill=(30, 26, 24))
    return _finish(img, (30, 30, 30))


def rock_sprite(width: int, rng: np.random.Generator) -> Image.Image:
    """An RGBA boulder; sometimes white with black blotches, coloured like a Holstein."""
    U = width * SS
    W, H = int(1.0 * U), int(0.62 * U)
    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    cowlike = rng.random() < 0.5
    base = (226, 224, 216) if cowlike else _jitter((128, 124, 114), rng, 18)
    pts = []
    for k in range(14):
        a = math.pi + math.pi * k / 13
        r = rng.uniform(0.85, 1.05)
        pts.append(((0.5 + 0.48 * r * math.cos(a)) * U, (0.98 + 0.9 * r * math.sin(a)) * H))
    d.polygon(pts, fill=base)
    mask = img.getchannel("A")
    blot = Image.new("L", (W, H), 0)
    bd = ImageDraw.Draw(blot)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy, r = rng.uniform(0.1, 0.9) * W, rng.uniform(0.2, 0.9) * H, rng.uniform(0.05, 0.16) * U
        bd.ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=255)
    blot = Image.fromarray(np.minimum(np.asarray(blot), np.asarray(mask)))
    img.paste(Image.new("RGBA", (W, H), ((28, 26, 26) if cowlike else _shade(base, 0.75)) + (255,)), (0, 0), blot)
    return _finish(img, _shade(base, 0.5))


# -- scenes ----------------------------------------------------------------------------

def _background(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, int]:
    """Sky, clouds, hills, trees and textured grass; returns (RGBA image, horizon y)."""
    horizon = int(height * rng.uniform(0.26, 0.42))
    t = np.linspace(0, 1, horizon)[:, None, None]
    top, low = np.array(_jitter((96, 150, 214), rng, 14)), np.array(_jitter((196, 218, 238), rng, 10))
    sky = (top * (1 - t) + low * t) * np.ones((1, width, 1))
    g = np.linspace(0, 1, height - horizon)[:, None, None]
    far, near = np.array(_jitter((118, 160, 74), rng, 14)), np.array(_jitter((66, 124, 44), rng, 12))
    grass = (far * (1 - g) + near * g) * np.ones((1, width, 1))
    grass += rng.normal(0, 9, grass.shape[:2])[:, :, None]
    arr = np.concatenate([sky, grass]).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB").convert("RGBA")
    d = ImageDraw.Draw(img)
    clouds = Image.new("RGBA", img.size, (0, 0, 0, 0))
    cd = ImageDraw.Draw(clouds)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0, width), rng.uniform(0.05, 0.7) * horizon
        for _ in range(5):
            rx, ry = rng.uniform(0.03, 0.08) * width, rng.uniform(0.02, 0.05) * height
            ox, oy = rng.uniform(-0.06, 0.06) * width, rng.uniform(-0.01, 0.01) * height
            cd.ellipse([cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry], fill=(250, 250, 252, 200))
    img.alpha_composite(clouds.filter(ImageFilter.GaussianBlur(width / 200)))
    hill = _jitter((92, 128, 82), rng, 12)
    xs = np.arange(0, width + 8, 8)
    amp, freq, off = rng.uniform(0.03, 0.08) * height, rng.uniform(1, 3), rng.uniform(0, 6.28)
    ys = horizon - amp * (0.6 + 0.4 * np.sin(xs / width * freq * 6.28 + off))
    d.polygon([(0, horizon + 1)] + list(zip(xs.tolist(), ys.tolist())) + [(width, horizon + 1)], fill=hill)
    for _ in range(int(rng.integers(0, 6))):
        tx, th = rng.uniform(0, width), rng.uniform(0.06, 0.14) * height
        d.rectangle([tx - th * 0.06, horizon - th * 0.5, tx + th * 0.06, horizon + 2], fill=(84, 60, 40))
        leaf = _jitter((46, 88, 42), rng, 12)
        for _ in range(4):
            r = th * rng.uniform(0.25, 0.4)
            cx, cy = tx + rng.uniform(-0.25, 0.25) * th, horizon - th * rng.uniform(0.55, 0.9)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=leaf)
    for _ in range(int(width * height / 900)):  # grass tufts
        x, y = rng.uniform(0, width), rng.uniform(horizon, height)
        s = 1 + 5 * (y - horizon) / (height - horizon)
        d.line([(x, y), (x + rng.uniform(-s, s), y - 2 * s)], fill=_jitter((52, 102, 36), rng, 16), width=1)
    return img, horizon


@dataclass
class _Placed:
    sprite: Image.Image
    x: int  # top-left in the scene
    y: int
    kind: str  # 'cow', 'dog', 'person', 'rock', 'fence'
    foot: float  # depth order: larger = nearer


def _shadow(scene: Image.Image, obj: _Placed) -> None:
    """A soft ellipse of shade under the feet, blurred on a small patch (not the whole scene)."""
    w, h = obj.sprite.size
    blur = max(1.0, w / 40)
    pad = int(3 * blur) + 2
    sw, sh = int(0.9 * w) + 2 * pad, int(0.12 * h) + 2 * pad
    layer = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse([pad, pad, sw - pad, sh - pad], fill=(20, 40, 10, 90))
    layer = layer.filter(ImageFilter.GaussianBlur(blur))
    x, y = int(obj.x + 0.05 * w) - pad, int(obj.y + 0.93 * h) - pad
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(scene.width, x + sw), min(scene.height, y + sh)
    if x1 > x0 and y1 > y0:
        scene.alpha_composite(layer.crop((x0 - x, y0 - y, x1 - x, y1 - y)), dest=(x0, y0))


def _composite(scene: Image.Image, objects: list[_Placed]) -> np.ndarray:
    """Paste objects far to near; returns the label map (index+1 of the visible object, 0 = none)."""
    width, height = scene.size
    labels = np.zeros((height, width), np.int32)
    for index, obj in sorted(enumerate(objects), key=lambda io: io[1].foot):
        if obj.kind != "fence":
            _shadow(scene, obj)
        w, h = obj.sprite.size
        x0, y0, x1, y1 = max(0, obj.x), max(0, obj.y), min(width, obj.x + w), min(height, obj.y + h)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = obj.sprite.crop((x0 - obj.x, y0 - obj.y, x1 - obj.x, y1 - obj.y))
        scene.alpha_composite(crop, dest=(x0, y0))
        visible = np.asarray(crop.getchannel("A")) > 127
        labels[y0:y1, x0:x1][visible] = index + 1
    return labels


def _visible_box(labels: np.ndarray, index: int, full_area: int, min_visible: float = 0.2) -> list[float] | None:
    ys, xs = np.nonzero(labels == index + 1)
    if len(xs) < max(16, min_visible * full_area):
        return None
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return box if box[2] - box[0] >= 4 and box[3] - box[1] >= 4 else None


def _fence(rng: np.random.Generator, width: int, height: int, foot: int) -> Image.Image:
    """A post-and-rail fence across the whole width whose posts stand at y = ``foot``."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    wood = _jitter((128, 102, 74), rng, 16)
    tall = 0.16 * height * (0.5 + foot / height)
    spacing = width / rng.uniform(4, 8)
    x = rng.uniform(0, spacing)
    post = max(3, tall * 0.07)
    while x < width + post:
        d.rectangle([x - post, foot - tall, x + post, foot], fill=wood, outline=_shade(wood, 0.6))
        x += spacing
    for frac in (0.25, 0.62):
        y = foot - tall * (1 - frac)
        d.rectangle([0, y - post * 0.5, width, y + post * 0.5], fill=_shade(wood, 1.08), outline=_shade(wood, 0.6))
    return img


def _finish_photo(scene: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Exposure, colour cast and sensor noise, so scenes do not all look alike."""
    arr = np.asarray(scene.convert("RGB")).astype(np.float32)
    arr = arr * rng.uniform(0.8, 1.15) * np.array([rng.uniform(0.94, 1.06) for _ in range(3)])
    arr += rng.normal(0, 3.0, arr.shape)
    return arr.clip(0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, width: int = 640, height: int = 480,
                 n_cows: int | None = None) -> tuple[np.ndarray, list[list[float]]]:
    """One pasture photo: RGB uint8 (H, W, 3) and the cows' visible boxes (xyxy px)."""
    scene, horizon = _background(rng, width, height)
    if n_cows is None:
        n_cows = 0 if rng.random() < 0.1 else int(rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6]))
    objects: list[_Placed] = []
    depth = height - horizon

    def place(kind: str, make: Callable[[float], Image.Image], rel_size: float) -> None:
        foot = horizon + depth * rng.uniform(0.12, 1.08)
        near = (foot - horizon) / depth
        size = max(12, int(width * rel_size * (0.25 + 0.85 * near) * rng.uniform(0.85, 1.15)))
        sprite = make(size)
        if rng.random() < 0.5:
            sprite = sprite.transpose(Image.FLIP_LEFT_RIGHT)
        w, h = sprite.size
        cx = rng.uniform(-0.12, 1.12) * width
        objects.append(_Placed(sprite, int(cx - w / 2), int(foot - h), kind, foot))

    for _ in range(n_cows):
        coat = str(rng.choice(list(COAT_WEIGHTS), p=list(COAT_WEIGHTS.values())))
        grazing = bool(rng.random() < 0.4)
        phase = float(rng.uniform(0, 6.28)) if rng.random() < 0.3 else 0.0
        place("cow", lambda s: cow_sprite(s, coat, rng, phase, grazing), 0.26)
    if rng.random() < 0.25:
        place("dog", lambda s: dog_sprite(s, rng), 0.12)
    if rng.random() < 0.15:
        place("person", lambda s: person_sprite(s, rng), 0.2)
    if rng.random() < 0.25:
        place("rock", lambda s: rock_sprite(s, rng), 0.16)
    if rng.random() < 0.35:
        foot = int(horizon + depth * rng.uniform(0.45, 0.95))
        objects.append(_Placed(_fence(rng, width, height, foot), 0, 0, "fence", foot))
    labels = _composite(scene, objects)
    boxes = []
    for index, obj in enumerate(objects):
        if obj.kind == "cow":
            box = _visible_box(labels, index, int((np.asarray(obj.sprite.getchannel("A")) > 127).sum()))
            if box is not None:
                boxes.append(box)
    return _finish_photo(scene, rng), boxes


# -- the video ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Walker:
    track_id: int
    coat: str
    keys: tuple[tuple[float, float, float], ...]  # (seconds, x as fraction of width, foot y as fraction)
    grazing: bool = False


# Five cows: 1 and 2 cross each other mid-way, 3 leaves on the right at ~3.5 s and walks
# back in from ~6 s, 4 grazes slowly in the distance, 5 walks left across 3 and 4.
WALKERS = (
    _Walker(1, "holstein", ((0, -0.08, 0.74), (12, 1.12, 0.78))),
    _Walker(2, "brown", ((0, 1.08, 0.84), (12, -0.14, 0.82))),
    _Walker(3, "black_white", ((0, 0.55, 0.64), (3.6, 1.2, 0.64), (6.0, 1.2, 0.66), (12, 0.32, 0.66))),
    _Walker(4, "white", ((0, 0.2, 0.55), (12, 0.42, 0.56)), grazing=True),
    _Walker(5, "hereford", ((0, 0.86, 0.59), (12, 0.12, 0.61))),
)


def _position(keys: tuple[tuple[float, float, float], ...], t: float) -> tuple[float, float, float]:
    """(x, foot, x-velocity sign) at time t by linear interpolation between keyframes."""
    for (t0, x0, y0), (t1, x1, y1) in zip(keys, keys[1:]):
        if t <= t1 or (t1, x1, y1) == keys[-1]:
            a = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
            return x0 + a * (x1 - x0), y0 + a * (y1 - y0), float(np.sign(x1 - x0))
    raise AssertionError("unreachable")


def render_video(seed: int = 0, width: int = 640, height: int = 360, fps: int = 25,
                 seconds: float = 12.0) -> Iterator[tuple[np.ndarray, list[tuple[int, list[float], float]]]]:
    """Yield (RGB frame (H, W, 3) uint8, [(track id, visible xyxy box, visibility)]) per frame."""
    rng = np.random.default_rng([seed, 99])
    background, horizon = _background(rng, width, height)
    rock = rock_sprite(int(width * 0.08), rng)
    rock_at = _Placed(rock, int(width * 0.62), int(height * 0.57) - rock.size[1], "rock", height * 0.57)
    sprite_seeds = {w.track_id: int(rng.integers(1 << 30)) for w in WALKERS}
    facing = {w.track_id: 1.0 for w in WALKERS}
    travelled = {w.track_id: 0.0 for w in WALKERS}
    last_x: dict[int, float] = {}
    noise_rng = np.random.default_rng([seed, 100])
    for frame in range(int(round(seconds * fps))):
        t = frame / fps
        objects = [rock_at]
        walkers = []
        for walker in WALKERS:
            xf, yf, direction = _position(walker.keys, t)
            if direction:
                facing[walker.track_id] = direction
            x, foot = xf * width, yf * height
            travelled[walker.track_id] += abs(x - last_x.get(walker.track_id, x))
            last_x[walker.track_id] = x
            near = (foot - horizon) / (height - horizon)
            length = int(width * 0.2 * (0.3 + 0.8 * near))
            # the same seed each frame keeps a cow's patches in place while its legs move
            sprite = cow_sprite(length, walker.coat, np.random.default_rng(sprite_seeds[walker.track_id]),
                                phase=travelled[walker.track_id] / (0.35 * length) * math.pi,
                                grazing=walker.grazing)
            if facing[walker.track_id] < 0:
                sprite = sprite.transpose(Image.FLIP_LEFT_RIGHT)
            objects.append(_Placed(sprite, int(x - sprite.size[0] / 2), int(foot - sprite.size[1]), "cow", foot))
            walkers.append(walker.track_id)
        scene = background.copy()
        labels = _composite(scene, objects)
        truth = []
        for index, obj in enumerate(objects[1:], start=1):
            full = int((np.asarray(obj.sprite.getchannel("A")) > 127).sum())
            box = _visible_box(labels, index, full, min_visible=0.15)
            if box is not None:
                visible = float((labels == index + 1).sum()) / max(1, full)
                truth.append((walkers[index - 1], box, round(min(1.0, visible), 3)))
        arr = np.asarray(scene.convert("RGB")).astype(np.float32) + noise_rng.normal(0, 2.0, (height, width, 3))
        yield arr.clip(0, 255).astype(np.uint8), truth


def mot_lines(frame_index: int, truth: list[tuple[int, list[float], float]]) -> list[str]:
    """MOTChallenge ground-truth lines for one frame (frame numbers start at 1)."""
    return [f"{frame_index + 1},{tid},{b[0]:.1f},{b[1]:.1f},{b[2] - b[0]:.1f},{b[3] - b[1]:.1f},1,1,{vis}"
            for tid, b, vis in truth]


# -- putting it in the store ---------------------------------------------------------------

SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


def demo_image(seed: int, split: str, index: int, width: int = 640,
               height: int = 480) -> tuple[bytes, Detections]:
    """The JPEG bytes and cow boxes (xyxy px) of one demo image; same arguments, same bytes."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    rgb, boxes = render_scene(rng, width, height)
    return encode_image(rgb, "JPEG", 92), Detections.from_names(
        np.array(boxes, np.float32).reshape(-1, 4), ["cow"] * len(boxes), ("__background__", "cow"))


def make_demo(store: Any, n_train: int = 200, n_val: int = 50, n_test: int = 50, seed: int = 0,
              size: tuple[int, int] = (640, 480), video: bool = True, video_seconds: float = 12.0,
              progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Generate the demo images (with boxes and splits) and the demo video into ``store``.

    Idempotent: images are stored by content hash, so a second call adds nothing.
    ``progress(stage, done, total)`` is called as work proceeds.

    Returns:
        counts of images added and already present, boxes, and the video id (or None).
    """
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 0:
            raise ValueError(f"{name}: expected 0 or more images, got {n}")
    width, height = size
    if width < 64 or height < 64 or width * height > 4096 * 4096:
        raise ValueError(f"size: expected between 64x64 and 4096x4096 pixels, got {width}x{height}")
    total = n_train + n_val + n_test
    added = boxes = done = 0
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        for index in range(count):
            data, dets = demo_image(seed, split, index, width, height)
            _, created = store.add_image(data, name=f"demo-{split}-{index:04d}.jpg", split=split, boxes=dets)
            added += int(created)
            boxes += len(dets)
            done += 1
            if progress:
                progress("images", done, total)
    video_id = None
    if video:
        video_id = make_demo_video(store, seed, seconds=video_seconds, progress=progress)
    return {"images_added": added, "images_present": total - added, "boxes": boxes, "video_id": video_id}


def make_demo_video(store: Any, seed: int = 0, seconds: float = 12.0, fps: int = 25,
                    size: tuple[int, int] = (640, 360),
                    progress: Callable[[str, int, int], None] | None = None) -> int:
    """Render the demo video to H.264 MP4 with MOTChallenge ground truth; store it; return its id."""
    import tempfile
    from pathlib import Path

    from .video import write_video

    lines: list[str] = []
    total = int(round(seconds * fps))

    def frames() -> Iterator[np.ndarray]:
        for index, (frame, truth) in enumerate(render_video(seed, size[0], size[1], fps, seconds)):
            lines.extend(mot_lines(index, truth))
            if progress:
                progress("video", index + 1, total)
            yield frame

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo-cows.mp4"
        count = write_video(frames(), path, fps)
        data = path.read_bytes()
    record, _ = store.add_video(data, "demo-cows.mp4", size[0], size[1], float(fps), count, "\n".join(lines) + "\n")
    return record.id
