"""Shared widgets: model pickers, messages that survive a rerun, import reports, thumbnail grids."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import streamlit as st

from cowdetect.accounts import PermissionDenied
from cowdetect.formats import ImportReport, zip_entries
from cowdetect.import_roots import FolderImages, import_roots
from cowdetect.store import ImageRecord, Store

from .images import thumbnail
from .models import model_choices


def model_picker(store: Store, label: str = "Model", key: str | None = None, where: Any = st,
                 **choices: bool) -> str:
    """A selectbox of model specs (:func:`ui.models.model_choices` with ``choices``); returns the spec."""
    options = model_choices(store, **choices)
    return where.selectbox(label, list(options), format_func=options.get, key=key)


TILE_CHOICES = ["off", "auto", "2x2", "3x3", "4x4", "6x6"]


def tiles_picker(key: str, where: Any = st) -> str:
    """A selectbox of sliced-inference settings (cowdetect.tiling); returns 'off', 'auto' or 'RxC'."""
    return where.selectbox("Tiles (small, distant cows)", TILE_CHOICES, key=key,
                           help="auto: also look at overlapping tiles, each shown to the detector at twice the "
                                "size, when the image is large for the model. Slower: one detector pass a tile.")


def flash(key: str, kind: str, text: str) -> None:
    """Keep a message (``kind``: an ``st`` function name) for :func:`show_flash` in the next run
    (a button callback's result, shown by the run the click starts)."""
    st.session_state[key] = (kind, text)


def show_flash(key: str) -> None:
    """Show the message :func:`flash` kept under ``key``, once."""
    if key in st.session_state:
        kind, text = st.session_state.pop(key)
        getattr(st, kind)(text)


def import_report(report: ImportReport) -> None:
    """What an import did (success or warning) and a table of the skipped files and why."""
    (st.success if report.added or report.already_present else st.warning)(report.summary())
    if report.skipped:
        st.dataframe(pd.DataFrame(report.skipped, columns=["skipped", "why"]), hide_index=True, width="stretch")


def coco_images(images_zip: Any, folder: str) -> tuple[dict[str, bytes], ImportReport]:
    """The images of a COCO import, as {file name: bytes}: an uploaded zip (what could not be
    unpacked goes in the report), else a folder on this server inside an import root
    (:class:`cowdetect.import_roots.FolderImages`: read lazily, no file name leaves it).
    ValueError says which is missing, or — in the same words for any refused folder — that the
    folder is not allowed."""
    report = ImportReport()
    if images_zip is not None:
        return dict(zip_entries(images_zip.getvalue(), images_zip.name, report)), report
    if folder.strip():
        return FolderImages(folder.strip()), report
    raise ValueError("give the images: a zip of them" + (", or their folder on this server" if import_roots() else ""))


def thumbnail_grid(records: Sequence[ImageRecord], captions: Sequence[str], columns: int = 8) -> None:
    """Images as cached thumbnails, ``columns`` to a row."""
    for row in range(0, len(records), columns):
        for col, record, caption in zip(st.columns(columns), records[row:row + columns], captions[row:row + columns]):
            col.image(thumbnail(str(record.path)), width="stretch", caption=caption)


def move_button(store: Store, records: Sequence[ImageRecord], split: str, reset_key: str, where: Any = st) -> None:
    """A button that moves ``records`` (the images this run shows) to ``split``, then sets the
    selectbox ``reset_key`` back to '—'; a refusal is flashed under 'move_flash'. The callback gets
    these ids, and they key the button, so a click Streamlit delivers to two runs cannot move the
    next page's images too."""
    def move(ids: list[int], target: str) -> None:
        try:
            store.set_split(ids, target)
        except (ValueError, PermissionDenied) as exc:
            flash("move_flash", "error", str(exc))
        st.session_state[reset_key] = "—"

    ids = [r.id for r in records]
    where.button(f"Move {len(ids)} images to {split}", key=f"move-{split}-{hash(tuple(ids))}", on_click=move,
                 args=(ids, split))
