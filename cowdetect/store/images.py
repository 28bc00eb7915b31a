"""Images, their ground-truth boxes (xyxy pixels of the original image), splits and classes."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..data import LabeledDataset, Sample, check_boxes_inside
from ..detections import BACKGROUND, Detections
from ..files import atomic_write_bytes
from ..images import ImageSource, encode_image, load_image, perceptual_hash
from .base import StoreBase, sha256_hex
from .rows import ImageRecord, image_row
from .suggestions import record_effort

# (stored video id, frame index, the frame's timestamp in seconds)
VideoFrameSource = tuple[int, int, float]

SPLITS = ("train", "val", "test", "unassigned")
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    return split


def _image_bytes(source: ImageSource, name: str | None, array_format: str) -> tuple[bytes, str, np.ndarray | None]:
    """The bytes to store for ``source``, the name to report it by, and its RGB pixels when they
    are known without decoding the bytes again (a PIL image or an array, encoded here)."""
    label = name or "image"
    if isinstance(source, (str, Path)):
        label = name or Path(source).name
        if not Path(source).is_file():
            raise ValueError(f"image {label}: no such file")
        return Path(source).read_bytes(), label, None
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), label, None
    rgb = load_image(source, label)
    return encode_image(rgb, array_format, 95), label, rgb


def hash_dataset(dataset: LabeledDataset) -> str:
    """A hash of a dataset's image ids and boxes (to 0.01 px): equal hashes mean equal evaluation data."""
    h = hashlib.sha256()
    for sample in dataset:
        h.update(str(sample.image_id).encode())
        h.update(np.round(sample.boxes.xyxy, 2).tobytes())
        h.update(",".join(sample.boxes.names).encode())
    return h.hexdigest()[:16]


class ImagesMixin(StoreBase):
    """Images, boxes, splits and classes."""

    # -- classes ------------------------------------------------------------------------
    def classes(self) -> tuple[str, ...]:
        """The dataset's foreground class names, in creation order ('cow' first)."""
        with self.connect() as conn:
            return tuple(r[0] for r in conn.execute("SELECT name FROM classes ORDER BY id"))

    def add_class(self, name: str) -> None:
        """Add a foreground class name (no-op when it exists)."""
        if not name or not name.strip() or name == BACKGROUND:
            raise ValueError(f"class name: expected a non-empty name, got {name!r}")
        self.require("label")  # type: ignore[attr-defined]
        with self.connect() as conn:
            conn.execute("INSERT OR IGNORE INTO classes(name) VALUES (?)", (name.strip(),))

    def class_names(self) -> tuple[str, ...]:
        """Vocabulary with the background at index 0."""
        return (BACKGROUND, *self.classes())

    # -- images -------------------------------------------------------------------------
    def _image(self, row: sqlite3.Row) -> ImageRecord:
        return image_row(row, self.inside)

    def add_image(self, source: ImageSource, name: str | None = None, split: str = "unassigned",
                  boxes: Detections | None = None, frame: VideoFrameSource | None = None,
                  array_format: str = "PNG", phash: str | None = None) -> tuple[ImageRecord, bool]:
        """Store an image (RGB; and optionally its ground-truth boxes, xyxy px).

        The image is fully decoded first, so corrupt or truncated files, non-images and
        decompression bombs raise ValueError and store nothing. Identical bytes are stored
        once: the second call returns the existing record and ``False`` — also when several
        processes add the same bytes at the same moment (one row, one file, no exception).
        ``frame`` = (video id, frame index, timestamp in s) records where a video frame came
        from; a frame of a video that is already stored is returned as is (``False``).
        An array or PIL image is encoded as ``array_format`` ('PNG', or 'JPEG' at quality 95 for
        video frames) and not decoded again; ``phash`` is its perceptual hash when the caller has
        it already (:func:`cowdetect.images.perceptual_hash` of the same pixels).

        Returns:
            (record, created)
        """
        self.require("import")  # type: ignore[attr-defined]
        check_split(split)
        data, label, rgb = _image_bytes(source, name, array_format)
        if rgb is None:
            rgb = load_image(data, label)
        height, width = rgb.shape[:2]
        if boxes is not None:
            check_boxes_inside(boxes.xyxy, width, height, f"image {label}")
        sha = sha256_hex(data)
        phash = phash or perceptual_hash(rgb)
        fmt = Image.open(io.BytesIO(data)).format or "PNG"
        rel = Path("images") / sha[:2] / f"{sha}{_EXTENSIONS.get(fmt, '.png')}"
        # Under the write lock no other process can insert this image, so "not there yet, write
        # the file, insert" cannot race, and a failed insert may remove the file it wrote.
        with self.write_lock() as conn:
            row = conn.execute("SELECT * FROM images WHERE sha256 = ?", (sha,)).fetchone()
            if row is None and frame is not None:
                row = conn.execute("SELECT * FROM images WHERE video_id = ? AND frame_index = ?",
                                   (int(frame[0]), int(frame[1]))).fetchone()
            if row is not None:
                return self._image(row), False
            path = self.inside(rel)
            wrote = not path.is_file()
            if wrote:
                atomic_write_bytes(path, data)
            try:
                video_id, frame_index, frame_time = frame if frame is not None else (None, None, None)
                cur = conn.execute(
                    "INSERT INTO images(sha256, file, original_name, width, height, split, video_id, frame_index, "
                    "frame_time, phash, added_by) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (sha, rel.as_posix(), name, width, height, split, video_id, frame_index, frame_time, phash,
                     self.user.name))
                image_id = int(cur.lastrowid)  # type: ignore[arg-type]
                if boxes is not None:
                    self._write_boxes(conn, image_id, boxes, width, height)
                row = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
            except BaseException:
                if wrote:
                    path.unlink(missing_ok=True)
                raise
        return self._image(row), True

    def frame_image(self, video_id: int, frame_index: int) -> ImageRecord | None:
        """The image imported from this frame of a stored video, or None."""
        row = self._one("SELECT * FROM images WHERE video_id = ? AND frame_index = ?", (int(video_id), int(frame_index)))
        return self._image(row) if row is not None else None

    def last_image_id(self) -> int:
        """The newest image's id (0 when there is none): images added later have larger ids."""
        return int(self._one("SELECT COALESCE(MAX(id), 0) FROM images")[0])  # type: ignore[index]

    def frames_added_since(self, video_id: int, after_image: int) -> set[int]:
        """Frame indexes of ``video_id`` stored as images newer than image ``after_image``."""
        with self.connect() as conn:
            rows = conn.execute("SELECT frame_index FROM images WHERE video_id = ? AND id > ?",
                                (int(video_id), int(after_image))).fetchall()
        return {int(r[0]) for r in rows}

    def image(self, image_id: int) -> ImageRecord:
        """The image with this id; ValueError when there is none."""
        row = self._one("SELECT * FROM images WHERE id = ?", (int(image_id),))
        if row is None:
            raise ValueError(f"image id {image_id}: no such image")
        return self._image(row)

    def images(self, split: str | None = None, labeled: bool | None = None) -> list[ImageRecord]:
        """Stored images in insertion order, optionally filtered by split and labeled state."""
        where, args = self._filter(split, labeled)
        with self.connect() as conn:
            return [self._image(r) for r in conn.execute("SELECT * FROM images WHERE 1=1" + where + " ORDER BY id",
                                                        args)]

    @staticmethod
    def _filter(split: str | None, labeled: bool | None) -> tuple[str, list[Any]]:
        sql, args = "", []
        if split is not None:
            sql += " AND split = ?"
            args.append(check_split(split))
        if labeled is not None:
            sql += " AND labeled = ?"
            args.append(int(labeled))
        return sql, args

    def count_images(self, split: str | None = None, labeled: bool | None = None) -> int:
        """How many images match (an indexed COUNT: cheap with 10,000s of images)."""
        where, args = self._filter(split, labeled)
        with self.connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM images WHERE 1=1" + where, args).fetchone()[0])

    def images_page(self, offset: int = 0, limit: int = 50, split: str | None = None,
                    labeled: bool | None = None) -> list[ImageRecord]:
        """One page of images in id order (``offset`` from 0), filtered like :meth:`images`."""
        where, args = self._filter(split, labeled)
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM images WHERE 1=1" + where + " ORDER BY id LIMIT ? OFFSET ?",
                                [*args, max(0, int(limit)), max(0, int(offset))]).fetchall()
        return [self._image(r) for r in rows]

    def image_index(self, image_id: int, split: str | None = None) -> int:
        """Position (from 0) of an image among the images of ``split`` (all when None), in id order."""
        where, args = self._filter(split, None)
        with self.connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM images WHERE id < ?" + where,
                                    [int(image_id), *args]).fetchone()[0])

    def next_unlabeled(self, after_id: int, split: str | None = None) -> ImageRecord | None:
        """The first unlabeled image after ``after_id`` (wrapping around), or None when all are labeled."""
        where, args = self._filter(split, False)
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM images WHERE id > ?" + where + " ORDER BY id LIMIT 1",
                               [int(after_id), *args]).fetchone() or \
                conn.execute("SELECT * FROM images WHERE 1=1" + where + " ORDER BY id LIMIT 1", args).fetchone()
        return self._image(row) if row is not None else None

    def box_counts(self, image_ids: Sequence[int]) -> dict[int, int]:
        """Ground-truth box count per image id (0 for images without boxes)."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return {}
        with self.connect() as conn:
            rows = conn.execute(f"SELECT image_id, COUNT(*) FROM boxes WHERE source = 'ground_truth' AND image_id IN "
                                f"({','.join('?' * len(ids))}) GROUP BY image_id", ids).fetchall()
        return {i: 0 for i in ids} | {int(r[0]): int(r[1]) for r in rows}

    def assign_splits(self, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
                      ) -> dict[str, int]:
        """Shuffle the unassigned images (seeded) into train / val / test by ``fractions``.

        Images already in a split keep it. Returns how many went to each split.
        """
        if len(fractions) != 3 or any(f < 0 for f in fractions) or not sum(fractions) > 0:
            raise ValueError(f"fractions: expected three non-negative numbers (train, val, test), got {fractions}")
        self.require("label")  # type: ignore[attr-defined]
        with self.connect() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM images WHERE split = 'unassigned' ORDER BY id")]
        order = np.random.default_rng(seed).permutation(len(ids))
        total = sum(fractions)
        n_train = round(len(ids) * fractions[0] / total)
        n_val = round(len(ids) * fractions[1] / total)
        parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
        with self.connect() as conn:
            for split, picks in parts.items():
                conn.executemany("UPDATE images SET split = ? WHERE id = ?", [(split, ids[i]) for i in picks])
        return {split: len(picks) for split, picks in parts.items()}

    def set_split(self, image_ids: Sequence[int], split: str) -> None:
        """Move images to a split."""
        check_split(split)
        self.require("label")  # type: ignore[attr-defined]
        with self.connect() as conn:
            conn.executemany("UPDATE images SET split = ? WHERE id = ?", [(split, int(i)) for i in image_ids])
            self.record("move to split", f"{len(image_ids)} images", split, conn)  # type: ignore[attr-defined]

    # -- boxes --------------------------------------------------------------------------
    def _write_boxes(self, conn: sqlite3.Connection, image_id: int, boxes: Detections, width: int,
                     height: int) -> None:
        check_boxes_inside(boxes.xyxy, width, height, f"image {image_id}")
        known = set(r[0] for r in conn.execute("SELECT name FROM classes"))
        unknown = sorted(set(boxes.names) - known)
        if unknown:
            raise ValueError(f"class name: {unknown} not in the dataset's classes {sorted(known)}")
        conn.execute("DELETE FROM boxes WHERE image_id = ? AND source = 'ground_truth'", (image_id,))
        conn.executemany(
            "INSERT INTO boxes(image_id, class_name, x_min, y_min, x_max, y_max) VALUES (?,?,?,?,?,?)",
            [(image_id, name, *map(float, xyxy)) for xyxy, name, _ in boxes])
        conn.execute("UPDATE images SET labeled = 1 WHERE id = ?", (image_id,))

    def set_boxes(self, image_id: int, boxes: Detections) -> int:
        """Replace an image's ground-truth boxes (xyxy px) and mark it labeled; all or nothing.

        An empty ``boxes`` marks the image as labeled with no cow (a negative example).
        Returns the image's new version: each save adds one, so an editor that opened
        version v and gets back more than v + 1 knows another session saved in between
        (the later save wins; see :meth:`version`).
        """
        self.require("label")  # type: ignore[attr-defined]
        record = self.image(image_id)
        with self.write_lock() as conn:
            was_labeled = bool(conn.execute("SELECT labeled FROM images WHERE id = ?", (record.id,)).fetchone()[0])
            self._write_boxes(conn, record.id, boxes, record.width, record.height)
            if not was_labeled:  # the review of its suggestions; later edits of a labeled image are not
                record_effort(conn, record.id, boxes)
            conn.execute("UPDATE images SET version = version + 1 WHERE id = ?", (record.id,))
            self.record("save boxes", f"image #{record.id}", f"{len(boxes)} boxes", conn)  # type: ignore[attr-defined]
            return int(conn.execute("SELECT version FROM images WHERE id = ?", (record.id,)).fetchone()[0])

    def version(self, image_id: int) -> int:
        """How many times an image's boxes were saved (0: never). Compare to detect a stale view."""
        row = self._one("SELECT version FROM images WHERE id = ?", (int(image_id),))
        if row is None:
            raise ValueError(f"image id {image_id}: no such image")
        return int(row[0])

    def boxes(self, image_id: int) -> Detections:
        """Ground-truth boxes of an image (xyxy px) in the store's vocabulary."""
        vocab = self.class_names()
        with self.connect() as conn:
            rows = conn.execute("SELECT class_name, x_min, y_min, x_max, y_max FROM boxes "
                                "WHERE image_id = ? AND source = 'ground_truth' ORDER BY id",
                                (int(image_id),)).fetchall()
        if not rows:
            return Detections.empty(vocab)
        return Detections.from_names(np.array([r[1:] for r in rows], np.float32), [r[0] for r in rows], vocab)

    def dataset(self, split: str, labeled_only: bool = True) -> LabeledDataset:
        """The images of a split with their ground-truth boxes, ready for train / evaluate."""
        vocab = self.class_names()
        records = self.images(split, labeled=True if labeled_only else None)
        by_image: dict[int, list[sqlite3.Row]] = {r.id: [] for r in records}
        with self.connect() as conn:
            for row in conn.execute("SELECT b.image_id, b.class_name, b.x_min, b.y_min, b.x_max, b.y_max "
                                    "FROM boxes b JOIN images i ON i.id = b.image_id "
                                    "WHERE i.split = ? AND b.source = 'ground_truth' ORDER BY b.id", (split,)):
                if row[0] in by_image:
                    by_image[row[0]].append(row)
        samples = []
        for rec in records:
            rows = by_image[rec.id]
            boxes = Detections.from_names(np.array([r[2:] for r in rows], np.float32).reshape(-1, 4),
                                          [r[1] for r in rows], vocab)
            samples.append(Sample(rec.path, boxes, rec.id))
        return LabeledDataset(tuple(samples), vocab[1:], name=split)

    def dataset_hash(self, split: str) -> str:
        """A hash of a split's images and boxes: equal hashes mean equal evaluation data."""
        return hash_dataset(self.dataset(split))

    def delete_image(self, image_id: int) -> None:
        """Remove an image, its boxes and its file (under the write lock, so an import of the same
        bytes at the same moment either finds the row or writes the file anew)."""
        self.require("delete")  # type: ignore[attr-defined]
        record = self.image(image_id)
        with self.write_lock() as conn:
            conn.execute("DELETE FROM images WHERE id = ?", (record.id,))
            self.record("delete image", f"image #{record.id}", record.original_name or "", conn)  # type: ignore[attr-defined]
            record.path.unlink(missing_ok=True)
