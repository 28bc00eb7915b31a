"""The Label page's edit state: a plain class, no Streamlit, so it is tested on a real Store
(tests/test_ui_editor.py) and the page only draws it.

A box is a dict ``{"label": class name, "xyxy": [x1, y1, x2, y2] in original image pixels
rounded to 0.01, "suggested": bool}`` (suggested: a model's box not saved yet). The editor holds
every box of the image; the canvas shows those in the :class:`ui.zoom.Viewport` and reports
only those, so the others are put back (:func:`with_hidden`) before anything compares or saves.
"""

from __future__ import annotations

import numpy as np

from cowdetect.accounts import PermissionDenied
from cowdetect.detections import Detections
from cowdetect.store import ImageRecord, Store, SuggestionSet

from .zoom import Viewport

# What the Label page says when the store changed under an open image (``LabelEditor.news``).
NEWS = {"reloaded": "This image changed in the store (another session saved it, or new suggestions came): "
                    "showing it as stored now.",
        "stale": "This image changed in the store since you opened it (another session saved it, or new "
                 "suggestions came): your view is stale. Save to replace it with yours (the later save wins), or "
                 "Revert to see the stored one."}

# A model's box this close to one already drawn repeats it and is not suggested.
SUGGESTION_IOU = 0.5


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def stored_boxes(store: Store, image_id: int) -> list[dict]:
    """The image's ground truth as the editor's boxes."""
    return [{"label": name, "xyxy": [round(float(v), 2) for v in xyxy], "suggested": False}
            for xyxy, name, _ in store.boxes(image_id)]


def merge_suggestions(current: list[dict], found: Detections) -> list[dict]:
    """``current`` plus the boxes of ``found`` (xyxy px, named) that repeat none already kept
    (IoU under :data:`SUGGESTION_IOU`), marked suggested."""
    kept = list(current)
    for xyxy, name, _ in found:
        box = [round(float(v), 2) for v in xyxy]
        if all(box_iou(box, b["xyxy"]) < SUGGESTION_IOU for b in kept):
            kept.append({"label": name, "xyxy": box, "suggested": True})
    return kept


def with_hidden(shown: list[dict], boxes: list[dict], view: Viewport) -> list[dict]:
    """What the canvas reports (``shown``) plus the ``boxes`` that ``view`` did not show, each put
    back at its place in ``boxes``: an untouched canvas gives ``boxes`` again, in the same order."""
    out = list(shown)
    for i, box in enumerate(boxes):
        if not view.shows(box["xyxy"]):
            out.insert(min(i, len(out)), box)
    return out


def same_boxes(a: list[dict], b: list[dict]) -> bool:
    """Same labels and coordinates in the same order (whether suggested or not)."""
    return [(x["label"], x["xyxy"]) for x in a] == [(x["label"], x["xyxy"]) for x in b]


class LabelEditor:
    """One session's labeling state: the image shown, the boxes the canvas starts from, whether
    they differ from the store, a move waiting for Save / Discard / Stay, and messages for the
    next run (``flash``: (kind, text) pairs, kind an ``st`` function name).

    Per run the page calls :meth:`open`, draws the canvas from :attr:`boxes` in :attr:`view`
    under :attr:`canvas_key`, passes what the canvas reports to :meth:`update`, and wires buttons
    to :meth:`save`, :meth:`move`, :meth:`suggest`, :meth:`load` (revert), :meth:`stay` and
    :meth:`set_view` (zoom and pan).

    An image that is not labeled and has a stored suggestion set opens with those boxes as
    suggestions; leaving it untouched loses nothing (they stay stored), so it is not dirty.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.image_id: int | None = None   # the image to show
        self.loaded_id: int | None = None  # the image ``boxes`` belong to; None: load again
        self.version = 0                   # the store's version of it when ``boxes`` were loaded
        self.boxes: list[dict] = []        # what the canvas starts from (stored, plus suggestions)
        self.view: Viewport | None = None  # the part of the image the canvas shows
        self.nonce = 0                     # bumped whenever the canvas must redraw from ``boxes``
        self.dirty = False                 # the canvas differs from the store (as of the last run)
        self.pending: int | None = None    # the image a move with unsaved changes wants to show
        self.flash: list[tuple[str, str]] = []
        self.news: str | None = None       # 'reloaded' or 'stale' (another session saved), else None
        # read from the store by open(), once per run
        self.split: str | None = None
        self.record: ImageRecord | None = None
        self.saved: list[dict] = []
        self.suggestions: SuggestionSet | None = None  # the stored set shown on open (unlabeled images)
        self.baseline: list[dict] = []     # what the image opens with: saved, or the stored suggestions
        self.stored_version = 0
        self.position = 0
        self.total = 0

    @property
    def canvas_key(self) -> str:
        """A new key whenever the canvas must redraw: no old drawing comes back under it."""
        return f"canvas-{self.loaded_id}-{self.nonce}"

    def open(self, split: str | None) -> bool:
        """Read the image to show in ``split`` (None: all) and what the store holds for it now;
        load the editor when the image changed, or when another session saved it and this one
        has no unsaved edits (``news`` 'reloaded'); with unsaved edits ``news`` is 'stale'.
        False when the split has no image."""
        self.split, self.news = split, None
        self.total = self.store.count_images(split)
        if not self.total:
            return False
        try:
            record = self.store.image(self.image_id) if self.image_id is not None else None
        except ValueError:  # deleted meanwhile
            record = None
        if record is None or (split is not None and record.split != split):
            record = self.store.images_page(0, 1, split)[0]
            self.image_id = record.id
        self.record = record
        self.saved = stored_boxes(self.store, record.id)
        opened_with = self.baseline
        self._read_suggestions()
        self.stored_version = self.store.version(record.id)
        self.position = self.store.image_index(record.id, split)
        if self.loaded_id != record.id:
            self.load()
        elif self.stored_version != self.version or self.baseline != opened_with:
            # another session saved it, or new suggestions came (a pre-label job, another Suggest)
            if self.boxes == self.saved or not self.dirty:
                self.load()
                self.news = "reloaded"
            else:
                self.news = "stale"
        return True

    def _read_suggestions(self) -> None:
        assert self.record is not None
        self.suggestions = None if self.record.labeled else self.store.suggestions(self.record.id)
        self.baseline = self.saved if self.suggestions is None else merge_suggestions([], self.suggestions.boxes)

    @property
    def state(self) -> str:
        """The image's state as the store counts it: 'labeled', 'suggested' or 'unlabeled'."""
        assert self.record is not None, "open() first"
        return "labeled" if self.record.labeled else "suggested" if self.suggestions is not None else "unlabeled"

    def load(self) -> None:
        """(Re)load the boxes from the store as read by :meth:`open` (also Revert): the saved
        boxes, or for an image not labeled yet its stored suggestions. The view stays where it
        is for an image of the same size (frames of one video), else it fits the image."""
        assert self.record is not None, "open() first"
        self.nonce += 1
        self.loaded_id, self.version, self.boxes, self.dirty = self.record.id, self.stored_version, \
            list(self.baseline), False
        size = self.record.width, self.record.height
        self.view = self.view.for_image(*size) if self.view is not None else Viewport.fitting(*size)

    def update(self, reported: list[dict] | None) -> list[dict]:
        """All the image's boxes now: what the canvas reports (``reported``; None before it has
        reported: :attr:`boxes`) plus those out of view. Sets :attr:`dirty`: they differ from what
        the image opened with, or hold suggestions on a labeled image."""
        assert self.view is not None, "open() first"
        current = self.boxes if reported is None else with_hidden(reported, self.boxes, self.view)
        self.dirty = not same_boxes(current, self.baseline) or (
            self.suggestions is None and any(b["suggested"] for b in current))
        return current

    def suggest(self, found: Detections, current: list[dict], source: str,
                score_threshold: float | None = None) -> int:
        """Store a model's boxes (``found``, xyxy px with scores, named with the dataset's classes)
        as the image's suggestion set made by ``source`` (so the effort of saving them is
        measured), and add those that repeat no box in ``current`` as suggestions the canvas
        redraws with; returns how many were added. Boxes are clipped to the image (a model's box
        may reach past the edge), as the store clips them."""
        assert self.record is not None, "open() first"
        found = found.clipped(self.record.width, self.record.height)  # as the store keeps them
        self.store.set_suggestions(self.record.id, found, source, score_threshold=score_threshold)
        self._read_suggestions()
        self.nonce += 1
        self.boxes = merge_suggestions(current, found)
        return len(self.boxes) - len(current)

    def set_view(self, current: list[dict], image_id: int, view: Viewport) -> None:
        """Button callback (zoom, pan): show ``view`` of image ``image_id``, the canvas redrawn
        with ``current`` (all the boxes as of the run that drew the button)."""
        if image_id == self.loaded_id:
            self.boxes, self.view = list(current), view
            self.nonce += 1

    def save(self, boxes: list[dict], image_id: int, opened_version: int, then: int | None = None) -> None:
        """Button callback: store ``boxes`` as the image's ground truth, then show image ``then``
        (default: this one, reloaded).

        Callbacks get the values of the run that drew the button, so a click that Streamlit
        delivers to two runs (a rerun racing the click) saves once and moves once: a store
        newer than ``opened_version`` that already holds exactly ``boxes`` is this very save.
        A user whose role may not label is refused by the store: the edits stay, with one error line.
        """
        classes = self.store.classes()
        unknown = sorted({b["label"] for b in boxes} - set(classes))
        if unknown:
            self.flash = [("error", f"Unknown class {unknown}: choose one of {list(classes)} (turn on edit and "
                                    f"click the box to relabel it).")]
            return
        if not (self.store.version(image_id) > opened_version and
                same_boxes(stored_boxes(self.store, image_id), boxes)):
            dets = Detections.from_names(np.array([b["xyxy"] for b in boxes], np.float32).reshape(-1, 4),
                                         [b["label"] for b in boxes], self.store.class_names())
            try:
                version = self.store.set_boxes(image_id, dets)
            except PermissionDenied as exc:  # the role (checked by the store): keep the edits on screen
                self.flash = [("error", f"Not saved: {exc}")]
                return
            self.flash = [("success", f"Saved {len(boxes)} boxes on image {image_id}.")]
            if version != opened_version + 1:
                self.flash.append(("warning", "Saved — over boxes another session had saved meanwhile (the later "
                                              "save wins)."))
        self.loaded_id = None  # reload from the store
        self.move(then if then is not None else image_id, dirty=False)

    def move(self, target: int | None, dirty: bool) -> None:
        """Button callback: show image ``target``; with unsaved changes (``dirty``) ask first."""
        if target is None:
            self.flash = [("success", f"All {self.total} images here are labeled.")]
        elif dirty:
            self.pending = target
        else:
            self.image_id, self.pending = target, None

    def stay(self) -> None:
        """Button callback: keep the unsaved changes and this image."""
        self.pending = None

    def targets(self, order: str = "uncertainty") -> dict[str, int | None]:
        """Where Previous, Next (wrapping around) and Next unlabeled go: the first image other
        than this one that :meth:`Store.to_label` gives in ``order`` ('uncertainty' or 'id'),
        else this one if it is not labeled (None: all labeled)."""
        assert self.record is not None, "open() first"
        ids = [r.id for r in self.store.to_label(self.split, 2, order)]
        unlabeled = next((i for i in ids if i != self.record.id), ids[0] if ids else None)
        at = lambda i: self.store.images_page(i % self.total, 1, self.split)[0].id  # noqa: E731
        return {"prev": at(self.position - 1), "next": at(self.position + 1), "unlabeled": unlabeled}

    def take_flash(self) -> list[tuple[str, str]]:
        """The messages for this run, once."""
        notes, self.flash = self.flash, []
        return notes
