"""Suggestions (a model's or a tracker's boxes for an image, never mixed with ground truth), each
image's labeling state, and the labeling effort measured when a suggested image is saved."""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

import numpy as np

from ..detections import Detections
from ..effort import Effort, compare
from .base import StoreBase
from .rows import ImageRecord, SuggestionSet

# An image is in one of these states: no boxes of any kind / a suggestion set, not saved yet /
# saved ground truth (a saved image stays 'labeled' whatever suggestions it has).
STATES = ("unlabeled", "suggested", "labeled")
_EFFORT_FIELDS = ("suggested", "unchanged", "changed", "deleted", "added")
# Two images whose perceptual hashes differ in fewer bits than this show the same scene: "next to
# label" takes one of them (measured on the demo video: frames 1/25 s apart differ in 0-4 bits,
# frames 1 s apart in 8-18).
NEAR_IDENTICAL_BITS = 6


def record_effort(conn: sqlite3.Connection, image_id: int, saved: Detections) -> None:
    """Inside the transaction of an unlabeled image's first save: when the image has suggestions,
    store how ``saved`` (its ground truth, xyxy px) differs from them (:func:`cowdetect.effort.compare`).
    Saves of an image already labeled are edits of ground truth, not a review of suggestions, so
    they record nothing (nor do suggestions set on a labeled image later)."""
    head = conn.execute("SELECT source, model_id FROM suggestion_sets WHERE image_id = ?", (image_id,)).fetchone()
    if head is None:
        return
    rows = conn.execute("SELECT class_name, x_min, y_min, x_max, y_max FROM suggestions WHERE image_id = ? "
                        "ORDER BY id", (image_id,)).fetchall()
    effort = compare(np.array([r[1:] for r in rows], np.float64).reshape(-1, 4), [r[0] for r in rows],
                     saved.xyxy, list(saved.names))
    conn.execute("INSERT OR REPLACE INTO label_effort(image_id, source, model_id, suggested, unchanged, changed, "
                 "deleted, added) VALUES (?,?,?,?,?,?,?,?)",
                 (image_id, head[0], head[1], *(getattr(effort, f) for f in _EFFORT_FIELDS)))


class SuggestionsMixin(StoreBase):
    """Suggestion sets, labeling states and effort."""

    def set_suggestions(self, image_id: int, boxes: Detections, source: str, model_id: int | None = None,
                        run_id: int | None = None, score_threshold: float | None = None,
                        uncertainty: float | None = None) -> int:
        """Replace an image's suggestions with ``boxes`` (xyxy px of the original image, with
        scores; named in the store's classes — boxes of other classes are dropped) made by
        ``source`` (a model version's label, 'coco:…', 'tracker, run N'). A box reaching past the
        image's edge (models' and trackers' often do) is clipped to it, one left under 1 px
        dropped. Ground truth is not touched. Returns how many boxes were stored (0 is a valid
        set: the model found nothing)."""
        self.require("label")  # type: ignore[attr-defined]
        if not source:
            raise ValueError("source: expected what made the suggestions, got an empty name")
        record = self.image(image_id)  # type: ignore[attr-defined]
        known = set(self.classes())  # type: ignore[attr-defined]
        keep = np.array([name in known for name in boxes.names], bool)
        boxes = boxes[keep] if len(boxes) else boxes
        boxes = boxes.clipped(record.width, record.height)
        scores = boxes.score if boxes.score is not None else np.full(len(boxes), np.nan)
        with self.connect() as conn:
            conn.execute("DELETE FROM suggestion_sets WHERE image_id = ?", (record.id,))
            conn.execute("INSERT INTO suggestion_sets(image_id, source, model_id, run_id, score_threshold, uncertainty) "
                         "VALUES (?,?,?,?,?,?)", (record.id, source, model_id, run_id, score_threshold, uncertainty))
            conn.executemany(
                "INSERT INTO suggestions(image_id, class_name, x_min, y_min, x_max, y_max, score) VALUES (?,?,?,?,?,?,?)",
                [(record.id, name, *map(float, xyxy), None if np.isnan(s) else float(s))
                 for (xyxy, name, _), s in zip(boxes, scores)])
        return len(boxes)

    def suggestions(self, image_id: int) -> SuggestionSet | None:
        """An image's suggestion set (boxes in the store's vocabulary, xyxy px), or None."""
        with self.connect() as conn:
            head = conn.execute("SELECT * FROM suggestion_sets WHERE image_id = ?", (int(image_id),)).fetchone()
            if head is None:
                return None
            rows = conn.execute("SELECT class_name, x_min, y_min, x_max, y_max, score FROM suggestions "
                                "WHERE image_id = ? ORDER BY id", (int(image_id),)).fetchall()
        vocab = self.class_names()  # type: ignore[attr-defined]
        boxes = Detections.from_names(np.array([r[1:5] for r in rows], np.float32).reshape(-1, 4),
                                      [r[0] for r in rows], vocab,
                                      score=np.array([np.nan if r[5] is None else r[5] for r in rows], np.float32))
        return SuggestionSet(head["image_id"], head["source"], head["model_id"], head["run_id"],
                             head["score_threshold"], head["uncertainty"], head["created_at"], boxes)

    def image_states(self, image_ids: Sequence[int]) -> dict[int, str]:
        """Each image's state (:data:`STATES`): labeled, suggested or unlabeled."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self.connect() as conn:
            rows = conn.execute(f"SELECT i.id, i.labeled, s.image_id IS NOT NULL FROM images i LEFT JOIN "
                                f"suggestion_sets s ON s.image_id = i.id WHERE i.id IN ({marks})", ids).fetchall()
        return {int(r[0]): "labeled" if r[1] else "suggested" if r[2] else "unlabeled" for r in rows}

    def count_states(self, split: str | None = None) -> dict[str, int]:
        """How many images (of ``split``, all when None) are in each state."""
        where, args = ("WHERE i.split = ?", [split]) if split is not None else ("", [])
        with self.connect() as conn:
            rows = conn.execute(f"SELECT CASE WHEN i.labeled THEN 'labeled' WHEN s.image_id IS NOT NULL THEN "
                                f"'suggested' ELSE 'unlabeled' END, COUNT(*) FROM images i LEFT JOIN suggestion_sets "
                                f"s ON s.image_id = i.id {where} GROUP BY 1", args).fetchall()
        return {state: 0 for state in STATES} | {r[0]: int(r[1]) for r in rows}

    def effort(self) -> list[dict[str, Any]]:
        """Labeling effort per suggestion source (one row per model version, pretrained model or
        tracker): images saved from suggestions and the summed :class:`cowdetect.effort.Effort`."""
        with self.connect() as conn:
            rows = conn.execute("SELECT source, model_id, COUNT(*), " + ", ".join(f"SUM({f})" for f in _EFFORT_FIELDS)
                                + " FROM label_effort GROUP BY source, model_id ORDER BY MIN(saved_at)").fetchall()
        return [{"source": r[0], "model_id": r[1], "images": int(r[2]),
                 **Effort(*(int(v) for v in r[3:])).as_dict()} for r in rows]

    def to_label(self, split: str | None = None, limit: int = 20, order: str = "uncertainty",
                 near_identical_bits: int = NEAR_IDENTICAL_BITS) -> list[ImageRecord]:
        """Unlabeled images (of ``split``; all when None) in the order worth labeling them.

        ``order='uncertainty'``: the most uncertain first (``uncertainty`` of their suggestion
        set, written by the pre-label job; images without one come after, oldest first), and an
        image whose perceptual hash is within ``near_identical_bits`` of one already chosen or
        already labeled (in the split) goes to the end of the list: labeling the same scene twice
        teaches little. ``order='id'``: oldest first. Reads candidates a page at a time and compares
        hashes as one array: cheap with 10,000s of images. Images stored before hashes existed get
        theirs when first read here.
        """
        if order not in ("uncertainty", "id"):
            raise ValueError(f"order: expected 'uncertainty' or 'id', got {order!r}")
        where, args = ("AND i.split = ?", [split]) if split is not None else ("", [])
        sort = "s.uncertainty IS NULL, s.uncertainty DESC, i.id" if order == "uncertainty" else "i.id"
        seen = self._labeled_hashes(where, args) if order == "uncertainty" else np.zeros(0, np.uint64)
        chosen: list[ImageRecord] = []
        later: list[ImageRecord] = []
        offset, page = 0, max(50, 4 * limit)
        while len(chosen) < limit:
            with self.connect() as conn:
                rows = conn.execute(f"SELECT i.* FROM images i LEFT JOIN suggestion_sets s ON s.image_id = i.id "
                                    f"WHERE i.labeled = 0 {where} ORDER BY {sort} LIMIT ? OFFSET ?",
                                    [*args, page, offset]).fetchall()
            for row in rows:
                record = self._with_phash(self._image(row))  # type: ignore[attr-defined]
                if order == "id" or not _near_any(record.phash, seen, near_identical_bits):
                    chosen.append(record)
                    seen = np.append(seen, np.uint64(int(record.phash, 16))) if order != "id" else seen
                    if len(chosen) == limit:
                        break
                elif len(later) < limit:
                    later.append(record)
            if len(rows) < page:
                break
            offset += page
        return chosen + later[:limit - len(chosen)]

    def _labeled_hashes(self, where: str, args: list[Any]) -> np.ndarray:
        with self.connect() as conn:
            rows = conn.execute(f"SELECT i.phash FROM images i WHERE i.labeled = 1 AND i.phash IS NOT NULL {where}",
                                args).fetchall()
        return np.array([int(r[0], 16) for r in rows], np.uint64)

    def _with_phash(self, record: ImageRecord) -> ImageRecord:
        """``record`` with its perceptual hash, computed and stored now if it has none yet."""
        if record.phash is not None or not record.path.is_file():
            return record
        from dataclasses import replace

        from ..images import load_image, perceptual_hash

        try:
            phash = perceptual_hash(load_image(record.path))
        except ValueError:  # an unreadable file: no hash, so never "near" anything
            return record
        with self.connect() as conn:
            conn.execute("UPDATE images SET phash = ? WHERE id = ?", (phash, record.id))
        return replace(record, phash=phash)


def _near_any(phash: str | None, seen: np.ndarray, bits: int) -> bool:
    """Whether ``phash`` differs from any hash in ``seen`` (uint64) in fewer than ``bits`` bits."""
    if phash is None or not len(seen):
        return False
    differ = np.bitwise_xor(seen, np.uint64(int(phash, 16)))
    counts = np.unpackbits(differ.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
    return bool((counts < bits).any())
