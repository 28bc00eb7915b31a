"""Reading images into RGB uint8 arrays, with clear errors for bad input.

Every image that enters cowdetect (a path, bytes, a PIL image or an array) goes through
:func:`load_image`, so corrupt files, decompression bombs and odd pixel formats are
handled in one place. What the store accepts (:data:`STORED_FORMATS`, :func:`check_image_size`,
:func:`check_file_name`) is decided here too, so uploads, COCO, Deep Lake and video frames
follow one rule.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps

# Above this many pixels an image is refused before it is decoded: a 50 MP PNG decodes
# to 150 MB of RGB, and a crafted one (a "decompression bomb") to much more.
MAX_PIXELS = 50_000_000
# What training can use. Measured with torchvision 0.29: RandomIoUCrop (SSD's scale jitter) crops
# to int(0.3..1 x side) px and divides by that, so a side under 4 px dies with "ZeroDivisionError:
# division by zero"; Faster R-CNN scales the longer side down to max_size (640 px for the mobilenet
# 320 model), so past 640:1 the shorter side rounds to 0 px and its resize fails. We refuse well
# before either, at round numbers chosen for what a detector can learn from rather than what
# merely runs: a picture under 32 px (a thumbnail, an icon) is blown up ~10x to SSD's 300 px
# input and holds too few pixels to tell a cow from grass; 32 px is also the backbones' coarsest
# stride and Faster R-CNN's smallest anchor (SSD's is 30 px). Past 20:1 (longer than any
# camera frame or panorama crop we expect) SSD's square input squashes a cow 20x, and Faster
# R-CNN's 640 px cap leaves 32 px for the short side.
MIN_SIDE = 32
MAX_ASPECT = 20
# The encodings the store keeps (Pillow's format name -> file extension), checked on the decoded
# bytes whatever the file is called. MPO is how Pillow reads many camera JPEGs (a JPEG with a
# second, preview picture). GIF, TIFF and the rest are refused: convert them first.
STORED_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp"}
# A longer name cannot be a file on the usual file systems (NAME_MAX is 255 bytes).
MAX_NAME_BYTES = 255

ImageSource = Union[str, Path, bytes, Image.Image, np.ndarray]


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; 16-bit and float images are rescaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white rather than whatever colour hides under alpha.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _open(data: bytes, name: str) -> Image.Image:
    if not data:
        raise ValueError(f"image {name}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ValueError(
                    f"image {name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
                    f"more than the limit of {MAX_PIXELS / 1e6:.0f}"
                )
            img.load()  # decodes everything: truncated files fail here, not later
            img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
    except ValueError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"image {name}: too many pixels to decode safely ({exc})") from exc
    except (OSError, SyntaxError, Image.UnidentifiedImageError) as exc:
        kind = "not an image file (or a format Pillow cannot read)" \
            if isinstance(exc, Image.UnidentifiedImageError) else f"corrupt or truncated ({exc})"
        raise ValueError(f"image {name}: {kind}") from exc
    return img


def load_image(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Load an image as an RGB uint8 array of shape (H, W, 3).

    Args:
        source: a file path, the file's bytes, a PIL image (any mode) or an array
            (H, W) grayscale / (H, W, 3) RGB / (H, W, 4) RGBA, uint8 or uint16.
        name: what to call the image in error messages (defaults to the path).

    Raises:
        ValueError: the file is missing, empty, not an image, corrupt or truncated, larger
            than :data:`MAX_PIXELS`, or the array has an unusable shape.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name or "array")
    if isinstance(source, Image.Image):
        if source.width * source.height > MAX_PIXELS:
            raise ValueError(f"image {name or 'PIL'}: more than {MAX_PIXELS / 1e6:.0f} megapixels")
        return np.array(_to_rgb(source))
    if isinstance(source, (bytes, bytearray)):
        return np.array(_to_rgb(_open(bytes(source), name or "bytes")))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"image {name or path}: no such file")
        return np.array(_to_rgb(_open(path.read_bytes(), name or str(path))))
    raise ValueError(f"image: expected a path, bytes, PIL image or numpy array, got {type(source).__name__}")


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image {name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ValueError(f"image {name}: more than {MAX_PIXELS / 1e6:.0f} megapixels")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"image {name}: expected a uint8 or uint16 array, got {arr.dtype}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def short_name(name: str, limit: int = 60) -> str:
    """``name`` for a one-line message: at most ``limit`` characters, no line breaks."""
    flat = " ".join(str(name).split())
    return flat if len(flat) <= limit else f"{flat[:limit]}… ({len(name)} characters)"


def check_file_name(name: str, what: str = "file name") -> None:
    """ValueError unless ``name`` could be a file's name: not empty, no NUL, at most
    :data:`MAX_NAME_BYTES` bytes (UTF-8) per part of a path ('a/b.jpg' has two parts)."""
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise ValueError(f"{what}: expected a file name, got {short_name(repr(name))}")
    longest = max(len(part.encode("utf-8", "replace")) for part in name.replace("\\", "/").split("/"))
    if longest > MAX_NAME_BYTES:
        raise ValueError(f"{what} {short_name(name)} is too long: {longest} bytes in one name, "
                         f"file systems allow {MAX_NAME_BYTES}")


def check_image_size(width: int, height: int, name: str) -> None:
    """ValueError when an image of ``width`` x ``height`` px is too small (a side under
    :data:`MIN_SIDE`) or too long and thin (more than :data:`MAX_ASPECT`:1) for the detectors to
    train on (why: see the constants)."""
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"image {name}: {width}x{height} px is too small; each side needs at least {MIN_SIDE} px "
                         f"(the detectors' smallest box is ~30 px)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ValueError(f"image {name}: {width}x{height} px is {max(width, height) / min(width, height):.0f}:1; "
                         f"at most {MAX_ASPECT}:1 is accepted (the detectors squash it to a near-square input)")


def stored_extension(data: bytes, name: str) -> str:
    """The extension to store ``data`` under (see :data:`STORED_FORMATS`), from the format its bytes
    really have, whatever ``name`` says. ValueError for other formats and for non-images (with
    :func:`load_image`'s reason)."""
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            fmt = img.format
    except Exception:  # noqa: BLE001 - Pillow raises many types here; load_image names the problem
        load_image(data, name)
        raise ValueError(f"image {name}: not an image file (or a format Pillow cannot read)") from None
    if fmt not in STORED_FORMATS:
        raise ValueError(f"image {name}: a {fmt} file (whatever its name says); cowdetect stores JPEG, PNG, "
                         f"WEBP and BMP images — convert it first")
    return STORED_FORMATS[fmt]


def encode_image(rgb: np.ndarray, fmt: str = "JPEG", quality: int = 92) -> bytes:
    """Encode an RGB uint8 array (H, W, 3) as JPEG or PNG bytes."""
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality} if fmt.upper() == "JPEG" else {}
    Image.fromarray(rgb, "RGB").save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def perceptual_hash(rgb: np.ndarray) -> str:
    """A 64-bit perceptual hash (DCT pHash, ``imagehash.phash``) of an RGB uint8 image, as 16 hex
    digits. Near-identical images (the same scene a moment later, re-encoded, resized) differ in
    few bits: :func:`hash_distance`. The image is first shrunk with OpenCV's area filter, so a 4K
    frame hashes in about a millisecond (pHash itself looks at 32x32 pixels only)."""
    import cv2
    import imagehash

    # A whole-number shrink first (OpenCV's fast path for area resampling), then to 64x64.
    factor = max(1, min(rgb.shape[0], rgb.shape[1]) // 128)
    if factor > 1:
        rgb = cv2.resize(rgb, (rgb.shape[1] // factor, rgb.shape[0] // factor), interpolation=cv2.INTER_AREA)
    small = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)
    return str(imagehash.phash(Image.fromarray(small)))


def hash_distance(a: str, b: str) -> int:
    """How many of the 64 bits two :func:`perceptual_hash` values differ in (0: the same picture)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
