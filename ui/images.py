"""Thumbnails, cached across reruns and sessions."""

from __future__ import annotations

import base64
import io

import numpy as np
import streamlit as st
from PIL import Image

from cowdetect.draw import draw_detections
from cowdetect.images import load_image
from cowdetect.store import Store


def labeled_thumbnail(store: Store, image_id: int, width: int = 320) -> np.ndarray:
    """An image with its ground-truth boxes drawn (RGB), scaled to ``width`` px."""
    record = store.image(image_id)
    drawn = Image.fromarray(draw_detections(load_image(record.path), store.boxes(image_id), color=(255, 214, 0)))
    return np.asarray(drawn.resize((width, max(1, round(drawn.height * width / drawn.width)))))


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(path: str, width: int = 160) -> np.ndarray:
    """A small RGB copy of an image file, cached by path: files are named by their content hash,
    so a path never changes content."""
    with Image.open(path) as im:
        im.draft("RGB", (width * 2, width * 2))  # JPEG: decode at reduced size, much faster
        im = im.convert("RGB")
        im.thumbnail((width, width * 4))
        return np.asarray(im)


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail_uri(path: str, width: int = 96) -> str:
    """:func:`thumbnail` as a JPEG data URI (for table image columns), cached the same way."""
    buffer = io.BytesIO()
    Image.fromarray(thumbnail(path, width)).save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_uri(store: Store, image_id: int, width: int = 96) -> str | None:
    """:func:`thumbnail_uri` of a stored image, or None when it was deleted."""
    try:
        return thumbnail_uri(str(store.image(image_id).path), width)
    except ValueError:
        return None
