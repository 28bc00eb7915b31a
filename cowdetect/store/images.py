"""Images, their ground-truth boxes (xyxy pixels of the original image), splits and classes."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data import LabeledDataset, Sample, check_boxes_inside
from ..detections import BACKGROUND, Detections
from ..files import atomic_write_bytes, remove_abandoned
from ..images import (ImageSource, check_image_size, encode_image, load_image, perceptual_hash,
                      short_name, stored_extension)
from .base import StoreBase, sha256_hex
from .rows import ImageRecord, image_row
from .suggestions import record_effort

# (stored video id, frame index, the frame's timestamp in seconds)
VideoFrameSource = tuple[int, int, float]

SPLITS = ("train", "val", "test", "unassigned")


MAX_CLASS_NAME = 64


def check_class_name(name: Any) -> str:
    """A class name, stripped: 1 to 64 printable characters, not the background's name. Names are
    drawn on images and listed on every page, so control characters and essays are refused."""
    if not isinstance(name, str) or not name.strip() or name.strip() == BACKGROUND:
        raise ValueError(f"class name: expected a non-empty name, got {short_name(repr(name))}")
    name = name.strip()
    if len(name) > MAX_CLASS_NAME or not name.isprintable():
        raise ValueError(f"class name: expected up to {MAX_CLASS_NAME} printable characters (no newlines or "
                         f"control characters), got {short_name(repr(name))}")
    return name


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    return split


def _image_bytes(source: ImageSource, name: str | None, array_format: str) -> tuple[bytes, str, np.ndarray | None]:
    """The bytes to store for ``source``, the name to report it by, and its RGB pixels when they
    are known without decoding the bytes again (a PIL image or an array, encoded here)."""
    label = short_name(name or "image")
    if isinstance(source, (str, Path)):
        label = short_name(name or Path(source).name)
        try:
            return Path(source).read_bytes(), label, None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ValueError(f"image {label}: no such file") from None
        except OSError as exc:  # a name too long for the file system, no permission, ...
            raise ValueError(f"image {label}: cannot be read ({exc.strerror or exc})") from None
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
        name = check_class_name(name)
        self.require("label")  # type: ignore[attr-defined]
        with self.connect() as conn:
            conn.execute("INSERT OR IGNORE INTO classes(name) VALUES (?)", (name,))

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

        The image is fully decoded first, so corrupt or truncated files, non-images,
        decompression bombs, formats the store does not keep (GIF, TIFF, ... whatever the name
        says) and images too small or too thin to train on
        (:func:`cowdetect.images.check_image_size`) raise ValueError and store nothing. Identical
        bytes are stored once: the second call returns the existing record and ``False`` — also
        when several processes add the same bytes at the same moment (one row, one file, no
        exception).
        ``frame`` = (video id, frame index, timestamp in s) records where a video frame came
        from; a frame of a video that is already stored is returned as is (``False``).
        An array or PIL image is encoded as ``array_format`` ('PNG', or 'JPEG' at quality 95 for
        video frames) and not decoded again; ``phash`` is its perceptual hash when the caller has
        it already (:func:`cowdetect.images.perceptual_hash` of the same pixels). Many images in
        one transaction: :meth:`image_batch`.

        Returns:
            (record, created)
        """
        with self.image_batch(split) as batch:
            batch.add(source, name, boxes, frame=frame, array_format=array_format, phash=phash)
            return batch.commit()[0]

    def image_batch(self, split: str = "unassigned") -> ImageBatch:
        """A batch of images to store in ``split`` in one transaction (all or none): see :class:`ImageBatch`."""
        return ImageBatch(self, split)

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
            self._log(conn, "move to split", f"{len(image_ids)} images", split)  # type: ignore[attr-defined]

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
            self._log(conn, "save boxes", f"image #{record.id}", f"{len(boxes)} boxes")  # type: ignore[attr-defined]
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
            samples.append(Sample(rec.path, boxes, rec.id, (rec.width, rec.height)))
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
            self._log(conn, "delete image", f"image #{record.id}", record.original_name or "")  # type: ignore[attr-defined]
            record.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Staged:
    """One image of a batch, checked and written to the staging folder (its pixels are not kept)."""

    sha: str
    file: str  # where it will lie, relative to the data folder: images/ab/<sha256>.<ext>
    staged: Path
    name: str | None
    width: int
    height: int
    phash: str
    boxes: Detections | None
    frame: VideoFrameSource | None


class ImageBatch:
    """Images checked and staged one by one, then stored together in one transaction.

    :meth:`add` does the slow part outside the database's write lock (read, decode, check, hash,
    write the file to a staging folder under ``<data dir>/tmp``) and raises ValueError for an image
    that cannot be stored, leaving the batch as it was, so a caller may skip it and go on.
    :meth:`commit` takes the write lock once, moves the staged files into ``images/`` and inserts
    every row and box; on any error it removes the files it moved and the transaction rolls back:
    nothing of the batch is stored. Files only appear under the lock, so a concurrent import of
    the same bytes never sees a row without its file. Use it in a ``with`` block: leaving it
    removes the staging folder, committed or not. One image's pixels are in memory at a time.
    Boxes are xyxy pixels of the image as decoded (RGB, EXIF rotation applied).
    """

    def __init__(self, store: ImagesMixin, split: str = "unassigned") -> None:
        check_split(split)
        store.require("import")  # type: ignore[attr-defined]
        self.store, self.split = store, split
        self._staged: list[_Staged] = []
        self._seen: dict[str, tuple[str, bool]] = {}  # sha256 -> (the first image's name, it has boxes)
        self._stored_classes = store.classes()
        self._new_classes: list[str] = []
        self._folder: Path | None = None

    def __enter__(self) -> ImageBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def __len__(self) -> int:
        return len(self._staged)

    def add_class(self, name: str) -> None:
        """Add a foreground class name, stored with the batch (no-op when it exists)."""
        name = check_class_name(name)
        self.store.require("label")  # type: ignore[attr-defined]
        if name not in self.class_names():
            self._new_classes.append(name)

    def class_names(self) -> tuple[str, ...]:
        """The vocabulary boxes of this batch may use: background, the store's classes, the added ones."""
        return (BACKGROUND, *self._stored_classes, *self._new_classes)

    def add(self, source: ImageSource, name: str | None = None, boxes: Detections | None = None, *,
            frame: VideoFrameSource | None = None, array_format: str = "PNG", phash: str | None = None,
            expected_size: tuple[int, int] | None = None) -> None:
        """Check and stage one image (arguments as :meth:`Store.add_image`; boxes xyxy px).

        ``expected_size``: the (width, height) px its boxes were drawn on (a COCO entry's); a file
        of another size is refused, as its boxes would land in the wrong place. The same bytes
        twice in one batch are stored once, unless one of them has boxes (then the second is
        refused: its boxes would be lost). Raises ValueError (see :meth:`Store.add_image`).
        """
        data, label, rgb = _image_bytes(source, name, array_format)
        extension = stored_extension(data, label)
        if rgb is None:
            rgb = load_image(data, label)
        height, width = rgb.shape[:2]
        check_image_size(width, height, label)
        if expected_size is not None and (width, height) != tuple(expected_size):
            turned = " (turned by its EXIF orientation?)" if (height, width) == tuple(expected_size) else ""
            raise ValueError(f"image {label}: the file is {width}x{height} px, not the {expected_size[0]}x"
                             f"{expected_size[1]} its boxes were drawn on{turned}")
        if boxes is not None:
            self._check_boxes(boxes, width, height, label)
        sha = sha256_hex(data)
        first, first_has_boxes = self._seen.get(sha, (None, False))
        if first is not None and (first_has_boxes or boxes is not None):
            raise ValueError(f"image {label}: the same picture (identical bytes) as {first} earlier in this "
                             f"import; one of them has boxes, which would be lost")
        phash = phash or perceptual_hash(rgb)
        staged = self._staging() / f"{sha}{extension}"
        if not staged.is_file():
            atomic_write_bytes(staged, data)
        self._seen[sha] = (label, boxes is not None)
        self._staged.append(_Staged(sha, f"images/{sha[:2]}/{sha}{extension}", staged, name, width, height,
                                    phash, boxes, frame))

    def _check_boxes(self, boxes: Detections, width: int, height: int, label: str) -> None:
        check_boxes_inside(boxes.xyxy, width, height, f"image {label}")
        unknown = sorted(set(boxes.names) - set(self.class_names()[1:]))
        if unknown:
            raise ValueError(f"class name: {unknown} not in the dataset's classes {sorted(self.class_names()[1:])}")

    def _staging(self) -> Path:
        if self._folder is None:
            scratch = self.store.inside("tmp")
            scratch.mkdir(parents=True, exist_ok=True)
            remove_abandoned(scratch, "import-")  # what imports that were killed midway left
            self._folder = Path(tempfile.mkdtemp(prefix=f"import-{os.getpid()}-", dir=scratch))
        return self._folder

    def commit(self, action: str | None = None, target: str = "", note: str = "") -> list[tuple[ImageRecord, bool]]:
        """Store the added classes and every staged image in one transaction: all or none.

        Returns (record, created) per image, in the order added; an image already stored (same
        bytes, or the same video frame) comes back as it is, with ``False``, its boxes unchanged.
        ``action``: also add ONE line to the activity log — ``target``, how many images were added
        and found, and ``note`` — in the same transaction.
        """
        moved: list[Path] = []
        with self.store.write_lock() as conn:
            try:
                conn.executemany("INSERT OR IGNORE INTO classes(name) VALUES (?)", [(c,) for c in self._new_classes])
                results = [self._insert(conn, item, moved) for item in self._staged]
                if action is not None:
                    added = sum(created for _, created in results)
                    detail = f"{added} images added, {len(results) - added} already stored{', ' if note else ''}{note}"
                    self.store._log(conn, action, target, detail)  # type: ignore[attr-defined]
            except BaseException:
                for path in moved:  # still under the lock: no other process has seen these files
                    path.unlink(missing_ok=True)
                raise
        self._stored_classes, self._new_classes = (*self._stored_classes, *self._new_classes), []
        self._staged, self._seen = [], {}
        return results

    def _insert(self, conn: sqlite3.Connection, item: _Staged, moved: list[Path]) -> tuple[ImageRecord, bool]:
        """Insert one staged image (moving its file into place) unless it is stored already."""
        row = conn.execute("SELECT * FROM images WHERE sha256 = ?", (item.sha,)).fetchone()
        if row is None and item.frame is not None:
            row = conn.execute("SELECT * FROM images WHERE video_id = ? AND frame_index = ?",
                               (int(item.frame[0]), int(item.frame[1]))).fetchone()
        if row is not None:
            return self.store._image(row), False
        path = self.store.inside(item.file)
        if not path.is_file():  # else a file an interrupted import left: the same bytes (named by their hash)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item.staged, path)
            moved.append(path)
        video_id, frame_index, frame_time = item.frame if item.frame is not None else (None, None, None)
        cur = conn.execute(
            "INSERT INTO images(sha256, file, original_name, width, height, split, video_id, frame_index, "
            "frame_time, phash, added_by) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (item.sha, item.file, item.name, item.width, item.height, self.split, video_id, frame_index, frame_time,
             item.phash, self.store.user.name))  # type: ignore[attr-defined]
        image_id = int(cur.lastrowid)  # type: ignore[arg-type]
        if item.boxes is not None:
            self.store._write_boxes(conn, image_id, item.boxes, item.width, item.height)
        return self.store._image(conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()), True

    def discard(self) -> None:
        """Forget what was staged and remove the staging folder (committed images stay stored)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._staged, self._seen, self._new_classes = [], {}, []
