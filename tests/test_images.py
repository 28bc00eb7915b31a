"""Bad and odd images: every one either converts to RGB uint8 or raises a clear ValueError."""

import io

import numpy as np
import pytest
from PIL import Image

from cowdetect.images import (MAX_ASPECT, MAX_PIXELS, MIN_SIDE, check_file_name, check_image_size, load_image,
                              stored_extension)


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def good_jpeg() -> bytes:
    arr = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    return encode(Image.fromarray(arr), "JPEG")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16", "I", "F", "CMYK", "1"])
def test_modes_convert_to_rgb(mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode) if mode not in ("I;16",) \
        else Image.fromarray(np.linspace(0, 65535, 40 * 30).astype(np.uint16).reshape(30, 40))
    fmt = {"CMYK": "JPEG", "I": "TIFF", "F": "TIFF"}.get(mode, "PNG")
    out = load_image(encode(img, fmt))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_sixteen_bit_is_rescaled_not_clipped():
    arr = np.linspace(0, 65535, 40 * 30).astype(np.uint16).reshape(30, 40)
    out = load_image(encode(Image.fromarray(arr)))
    assert out.min() == 0 and out.max() == 255


def test_transparent_png_becomes_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert (load_image(encode(img)) == 255).all()


@pytest.mark.parametrize("arr, shape", [
    (np.zeros((10, 12), np.uint8), (10, 12, 3)),
    (np.zeros((10, 12, 4), np.uint8), (10, 12, 3)),
    (np.zeros((10, 12, 3), np.uint16), (10, 12, 3)),
])
def test_arrays(arr, shape):
    assert load_image(arr).shape == shape


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is a text file, not a jpeg\n" * 5, "not an image"),
    (good_jpeg()[:200], "corrupt or truncated"),
    (good_jpeg()[:20] + b"\x00" * 300, "corrupt or truncated|not an image"),
])
def test_bad_bytes(data, message):
    with pytest.raises(ValueError, match=message):
        load_image(data, name="x.jpg")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "cow.jpg"
    path.write_text("hello")
    with pytest.raises(ValueError, match="cow.jpg: not an image"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb_refused_before_decoding():
    # A 1-bit PNG of 8000x8000 = 64 MP compresses to a few KB: the header alone must stop it.
    bomb = encode(Image.new("1", (8000, 8000)))
    assert len(bomb) < 100_000 and 8000 * 8000 > MAX_PIXELS
    with pytest.raises(ValueError, match="megapixels"):
        load_image(bomb)


@pytest.mark.parametrize("arr", [np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4, 3), np.uint8),
                                 np.zeros((4, 4, 3), np.float32)])
def test_bad_arrays(arr):
    with pytest.raises(ValueError, match="image array"):
        load_image(arr)


def test_unsupported_type():
    with pytest.raises(ValueError, match="expected a path, bytes"):
        load_image(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("width, height, message", [
    (MIN_SIDE, MIN_SIDE, None),
    (MIN_SIDE * MAX_ASPECT, MIN_SIDE, None),
    (MIN_SIDE - 1, 500, "31x500 px is too small; each side needs at least 32 px"),
    (1, 1, "1x1 px is too small"),
    (60000, 1, "60000x1 px is too small"),
    (MIN_SIDE * MAX_ASPECT + 1, MIN_SIDE, "641x32 px is 20:1; at most 20:1 is accepted"),
    (40, 4000, "40x4000 px is 100:1"),
])
def test_sizes_training_can_use(width, height, message):
    if message is None:
        check_image_size(width, height, "x")
    else:
        with pytest.raises(ValueError, match=f"^image x: {message}"):
            check_image_size(width, height, "x")


@pytest.mark.parametrize("fmt, extension", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("BMP", ".bmp"),
                                            ("GIF", None), ("TIFF", None), ("ICO", None)])
def test_the_stored_format_is_what_the_bytes_are(fmt, extension):
    data = encode(Image.new("RGB", (40, 40), (10, 200, 30)), fmt)
    if extension is not None:
        assert stored_extension(data, "a.png") == extension
    else:
        with pytest.raises(ValueError, match=f"^image a.png: a {fmt} file \\(whatever its name says\\)"):
            stored_extension(data, "a.png")


def test_stored_format_of_a_non_image_says_why():
    with pytest.raises(ValueError, match="^image a.png: not an image file"):
        stored_extension(b"hello" * 20, "a.png")


@pytest.mark.parametrize("name, message", [
    ("cows/a.jpg", None),
    ("é" * 126 + ".jp", None),  # 129 characters but 255 bytes: allowed; one é more is not
    ("é" * 128, "is too long: 256 bytes in one name"),
    ("x" * 5000, "… \\(5000 characters\\) is too long: 5000 bytes in one name, file systems allow 255"),
    ("", "expected a file name"),
    ("a\0b.png", "expected a file name"),
])
def test_file_names(name, message):
    if message is None:
        check_file_name(name)
    else:
        with pytest.raises(ValueError, match=message):
            check_file_name(name)
