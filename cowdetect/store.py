"""The SQLite database and the files beside it: images, boxes, splits, models, runs, results, videos.

Layout of a data folder (default ``./data``, or ``--data-dir`` / ``COWDETECT_DATA_DIR``)::

    cowdetect.sqlite      the database (WAL mode, schema version in PRAGMA user_version)
    images/ab/<sha256>.jpg  image files, named by the hash of their bytes
    models/<name>.pt      checkpoints
    videos/<sha256>.mp4   videos (and <sha256>.gt.txt ground truth in MOTChallenge format)
    cache/detections/     per-frame detections kept by tracking runs (cowdetect.framecache)

Each call opens its own short connection, so a Store is safe to share between threads
and processes. Every write is one transaction: on error nothing is changed, and a file
written for a failed insert is removed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from .data import LabeledDataset, Sample, check_boxes_inside
from .detections import BACKGROUND, Detections
from .files import atomic_write_bytes
from .images import ImageSource, encode_image, load_image

DB_NAME = "cowdetect.sqlite"
SPLITS = ("train", "val", "test", "unassigned")
RUN_STATUSES = ("queued", "running", "done", "stopped", "failed", "interrupted")
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}

# Each entry upgrades the schema by one version; never edit a released entry, append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        file TEXT NOT NULL,
        original_name TEXT,
        width INTEGER NOT NULL CHECK (width > 0),
        height INTEGER NOT NULL CHECK (height > 0),
        split TEXT NOT NULL DEFAULT 'unassigned' CHECK (split IN ('train', 'val', 'test', 'unassigned')),
        labeled INTEGER NOT NULL DEFAULT 0,
        added_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        architecture TEXT NOT NULL,
        classes TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        parent_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
        params TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE boxes (
        id INTEGER PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        class_name TEXT NOT NULL,
        x_min REAL NOT NULL, y_min REAL NOT NULL, x_max REAL NOT NULL, y_max REAL NOT NULL,
        score REAL,
        source TEXT NOT NULL DEFAULT 'ground_truth' CHECK (source IN ('ground_truth', 'model')),
        model_id INTEGER REFERENCES models(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        CHECK (x_max >= x_min AND y_max >= y_min)
    );
    CREATE INDEX boxes_image ON boxes(image_id, source);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'done', 'stopped', 'failed', 'interrupted')),
        iteration INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        pid INTEGER,
        model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
        history TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        finished_at TEXT
    );
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        model_id INTEGER REFERENCES models(id) ON DELETE CASCADE,
        model_label TEXT NOT NULL,
        split TEXT NOT NULL,
        dataset_hash TEXT NOT NULL,
        metrics TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE videos (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        file TEXT NOT NULL,
        original_name TEXT,
        width INTEGER, height INTEGER, fps REAL, frames INTEGER,
        gt_file TEXT,
        added_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    INSERT INTO classes(name) VALUES ('cow');
    """,
    # 2: background jobs (checkpoints, stop requests, progress points) and the active model.
    """
    ALTER TABLE runs ADD COLUMN checkpoint TEXT;
    ALTER TABLE runs ADD COLUMN checkpoint_iteration INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN started_at TEXT;
    ALTER TABLE runs ADD COLUMN device TEXT;
    ALTER TABLE runs ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE run_points (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('train', 'val')),
        iteration INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX run_points_run ON run_points(run_id, kind, iteration);
    ALTER TABLE models ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: labeling — a per-image version for concurrent editors, indexes for paging 10,000s of images.
    """
    ALTER TABLE images ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX images_split ON images(split, id);
    CREATE INDEX images_labeled ON images(labeled, id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class ImageRecord:
    """One stored image; ``path`` is absolute, inside the data folder."""

    id: int
    sha256: str
    path: Path
    original_name: str | None
    width: int
    height: int
    split: str
    labeled: bool


@dataclass(frozen=True)
class ModelRecord:
    """One stored model version; ``checkpoint`` is absolute, inside the data folder."""

    id: int
    name: str
    architecture: str
    classes: tuple[str, ...]
    checkpoint: Path
    parent_id: int | None
    params: dict[str, Any]
    created_at: str


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    return split


def _safe_name(name: str) -> str:
    """A model name usable as a file name: letters, digits, '-', '_', '.'; nothing else."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name or "") or ".." in name:
        raise ValueError(f"name: expected letters, digits, '-', '_' or '.' (max 100), got {name!r}")
    return name


class Store:
    """A data folder: the SQLite database plus image, model and video files.

    Boxes are stored as xyxy pixels of the original image.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / DB_NAME
        self._migrate()

    # -- plumbing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction: committed on success, rolled back on error."""
        conn = sqlite3.connect(self.db_path, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def _migrate(self) -> None:
        with self.connect() as conn:
            # WAL lets the app read while a CLI or job process writes.
            conn.execute("PRAGMA journal_mode = WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.db_path}: schema version {version} is newer than this cowdetect "
                                 f"understands ({SCHEMA_VERSION}); upgrade cowdetect")
            for number in range(version, SCHEMA_VERSION):
                conn.executescript("BEGIN;" + MIGRATIONS[number] + f"; PRAGMA user_version = {number + 1}; COMMIT;")

    def inside(self, relative: str | Path) -> Path:
        """Absolute path of a file stored under the data folder; refuses to leave it."""
        path = (self.data_dir / relative).resolve()
        if self.data_dir not in path.parents:
            raise ValueError(f"path {relative!r} leaves the data folder {self.data_dir}")
        return path

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def weights_dir(self) -> Path:
        """Where converted pretrained weights are kept (see cowdetect.ssd_weights)."""
        return self.data_dir / "weights"

    # -- classes ------------------------------------------------------------------------
    def classes(self) -> tuple[str, ...]:
        """The dataset's foreground class names, in creation order ('cow' first)."""
        with self.connect() as conn:
            return tuple(r[0] for r in conn.execute("SELECT name FROM classes ORDER BY id"))

    def add_class(self, name: str) -> None:
        """Add a foreground class name (no-op when it exists)."""
        if not name or not name.strip() or name == BACKGROUND:
            raise ValueError(f"class name: expected a non-empty name, got {name!r}")
        with self.connect() as conn:
            conn.execute("INSERT OR IGNORE INTO classes(name) VALUES (?)", (name.strip(),))

    def class_names(self) -> tuple[str, ...]:
        """Vocabulary with the background at index 0."""
        return (BACKGROUND, *self.classes())

    # -- images -------------------------------------------------------------------------
    def _image(self, row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(row["id"], row["sha256"], self.inside(row["file"]), row["original_name"],
                           row["width"], row["height"], row["split"], bool(row["labeled"]))

    def add_image(self, source: ImageSource, name: str | None = None, split: str = "unassigned",
                  boxes: Detections | None = None) -> tuple[ImageRecord, bool]:
        """Store an image (and optionally its ground-truth boxes, xyxy px).

        The image is fully decoded first, so corrupt or truncated files, non-images and
        decompression bombs raise ValueError and store nothing. Identical bytes are stored
        once: the second call returns the existing record and ``False``.

        Returns:
            (record, created)
        """
        _check_split(split)
        label = name or "image"
        if isinstance(source, (str, Path)):
            data = Path(source).read_bytes() if Path(source).is_file() else b""
            label = name or Path(source).name
            if not data and not Path(source).is_file():
                raise ValueError(f"image {label}: no such file")
        elif isinstance(source, (bytes, bytearray)):
            data = bytes(source)
        else:
            data = encode_image(load_image(source, label), "PNG")
        rgb = load_image(data, label)
        height, width = rgb.shape[:2]
        if boxes is not None:
            check_boxes_inside(boxes.xyxy, width, height, f"image {label}")
        sha = _sha256(data)
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM images WHERE sha256 = ?", (sha,)).fetchone()
        if row is not None:
            return self._image(row), False
        fmt = Image.open(io.BytesIO(data)).format or "PNG"
        rel = Path("images") / sha[:2] / f"{sha}{_EXTENSIONS.get(fmt, '.png')}"
        path = self.inside(rel)
        existed = path.exists()
        if not existed:
            atomic_write_bytes(path, data)
        try:
            with self.connect() as conn:
                cur = conn.execute(
                    "INSERT INTO images(sha256, file, original_name, width, height, split) VALUES (?,?,?,?,?,?)",
                    (sha, rel.as_posix(), name, width, height, split))
                image_id = int(cur.lastrowid)  # type: ignore[arg-type]
                if boxes is not None:
                    self._write_boxes(conn, image_id, boxes, width, height)
                row = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        except Exception:
            if not existed and path.exists():
                path.unlink()
            raise
        return self._image(row), True

    def image(self, image_id: int) -> ImageRecord:
        """The image with this id; ValueError when there is none."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM images WHERE id = ?", (int(image_id),)).fetchone()
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
            args.append(_check_split(split))
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
        _check_split(split)
        with self.connect() as conn:
            conn.executemany("UPDATE images SET split = ? WHERE id = ?", [(split, int(i)) for i in image_ids])

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
        record = self.image(image_id)
        with self.connect() as conn:
            self._write_boxes(conn, record.id, boxes, record.width, record.height)
            conn.execute("UPDATE images SET version = version + 1 WHERE id = ?", (record.id,))
            return int(conn.execute("SELECT version FROM images WHERE id = ?", (record.id,)).fetchone()[0])

    def version(self, image_id: int) -> int:
        """How many times an image's boxes were saved (0: never). Compare to detect a stale view."""
        with self.connect() as conn:
            row = conn.execute("SELECT version FROM images WHERE id = ?", (int(image_id),)).fetchone()
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

    def set_predictions(self, image_id: int, model_id: int, detections: Detections) -> None:
        """Replace what model version ``model_id`` predicted on an image (xyxy px, with scores).

        Classes the dataset does not have (e.g. COCO's 'person') are dropped; boxes are
        clipped to the image, since detectors may overshoot the border by a fraction of a pixel.
        """
        record = self.image(image_id)
        self.model(model_id)
        kept = detections.with_class_names(self.class_names())
        xyxy = kept.xyxy.copy()
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, record.width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, record.height)
        scores = kept.score if kept.score is not None else np.ones(len(kept), np.float32)
        with self.connect() as conn:
            conn.execute("DELETE FROM boxes WHERE image_id = ? AND source = 'model' AND model_id = ?",
                         (record.id, int(model_id)))
            conn.executemany(
                "INSERT INTO boxes(image_id, class_name, x_min, y_min, x_max, y_max, score, source, model_id) "
                "VALUES (?,?,?,?,?,?,?,'model',?)",
                [(record.id, name, *map(float, box), float(s), int(model_id))
                 for box, name, s in zip(xyxy, kept.names, scores)])

    def predictions(self, image_id: int, model_id: int) -> Detections:
        """What model version ``model_id`` predicted on an image (xyxy px, scored), best first."""
        vocab = self.class_names()
        with self.connect() as conn:
            rows = conn.execute("SELECT class_name, x_min, y_min, x_max, y_max, score FROM boxes WHERE image_id = ? "
                                "AND source = 'model' AND model_id = ? ORDER BY score DESC",
                                (int(image_id), int(model_id))).fetchall()
        return Detections.from_names(np.array([r[1:5] for r in rows], np.float32).reshape(-1, 4),
                                     [r[0] for r in rows], vocab, np.array([r[5] for r in rows], np.float32))

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
        h = hashlib.sha256()
        for sample in self.dataset(split):
            h.update(str(sample.image_id).encode())
            h.update(np.round(sample.boxes.xyxy, 2).tobytes())
            h.update(",".join(sample.boxes.names).encode())
        return h.hexdigest()[:16]

    # -- models -------------------------------------------------------------------------
    def _model(self, row: sqlite3.Row) -> ModelRecord:
        return ModelRecord(row["id"], row["name"], row["architecture"], tuple(json.loads(row["classes"])),
                           self.inside(row["checkpoint"]), row["parent_id"], json.loads(row["params"]),
                           row["created_at"])

    def model_checkpoint_path(self, name: str) -> Path:
        """Where the checkpoint of a model version called ``name`` belongs."""
        return self.inside(Path("models") / f"{_safe_name(name)}.pt")

    def add_model(self, name: str, architecture: str, classes: Sequence[str], checkpoint: Path,
                  parent_id: int | None = None, params: dict[str, Any] | None = None) -> ModelRecord:
        """Register a model version whose checkpoint already lies inside the data folder."""
        _safe_name(name)
        rel = Path(checkpoint).resolve().relative_to(self.data_dir)
        with self.connect() as conn:
            if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"model name {name!r} is taken; choose another")
            cur = conn.execute("INSERT INTO models(name, architecture, classes, checkpoint, parent_id, params) "
                               "VALUES (?,?,?,?,?,?)", (name, architecture, json.dumps(list(classes)),
                                                        rel.as_posix(), parent_id, json.dumps(params or {})))
            row = conn.execute("SELECT * FROM models WHERE id = ?", (cur.lastrowid,)).fetchone()
        return self._model(row)

    def models(self) -> list[ModelRecord]:
        """All model versions, oldest first."""
        with self.connect() as conn:
            return [self._model(r) for r in conn.execute("SELECT * FROM models ORDER BY id")]

    def model(self, name_or_id: str | int) -> ModelRecord:
        """A model version by name or id; ValueError lists the stored names."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ? OR CAST(id AS TEXT) = ?",
                               (str(name_or_id), str(name_or_id))).fetchone()
            if row is None:
                names = [r[0] for r in conn.execute("SELECT name FROM models ORDER BY id")]
                raise ValueError(f"model: no version called {name_or_id!r}; stored versions: {names or 'none'}")
        return self._model(row)

    def latest_model(self) -> ModelRecord | None:
        """The newest model version, or None."""
        models = self.models()
        return models[-1] if models else None

    def active_model(self) -> ModelRecord | None:
        """The version set active for prediction and tracking, else the newest, else None."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM models ORDER BY active DESC, id DESC LIMIT 1").fetchone()
        return self._model(row) if row is not None else None

    def set_active_model(self, name_or_id: str | int) -> ModelRecord:
        """Make one version the active model."""
        record = self.model(name_or_id)
        with self.connect() as conn:
            conn.execute("UPDATE models SET active = (id = ?)", (record.id,))
        return record

    def rename_model(self, name_or_id: str | int, new_name: str) -> ModelRecord:
        """Rename a version (its checkpoint file keeps its name)."""
        record = self.model(name_or_id)
        _safe_name(new_name)
        with self.connect() as conn:
            if conn.execute("SELECT 1 FROM models WHERE name = ? AND id != ?", (new_name, record.id)).fetchone():
                raise ValueError(f"model name {new_name!r} is taken; choose another")
            conn.execute("UPDATE models SET name = ? WHERE id = ?", (new_name, record.id))
        return self.model(record.id)

    def delete_model(self, name_or_id: str | int) -> None:
        """Delete a version and its checkpoint file; its children keep working (parent set to none)."""
        record = self.model(name_or_id)
        with self.connect() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", (record.id,))
        if record.checkpoint.is_file():
            record.checkpoint.unlink()

    def unique_model_name(self, stem: str) -> str:
        """``stem``, or ``stem-2``, ``stem-3``... whichever is free."""
        taken = {m.name for m in self.models()}
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        return name

    # -- runs and results ---------------------------------------------------------------
    def add_run(self, kind: str, params: dict[str, Any], total: int = 0, status: str = "queued") -> int:
        """Record a job (train, evaluate, track); returns its id. The process running it sets its pid."""
        with self.connect() as conn:
            cur = conn.execute("INSERT INTO runs(kind, params, total, status) VALUES (?,?,?,?)",
                               (kind, json.dumps(params), total, status))
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Update fields of a run (status, iteration, error, pid, checkpoint, metrics, ...)."""
        allowed = {"status", "iteration", "error", "model_id", "history", "finished_at", "total", "pid",
                   "checkpoint", "checkpoint_iteration", "stop_requested", "started_at", "device", "metrics",
                   "params"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"run fields: expected some of {sorted(allowed)}, got {sorted(bad)}")
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"status: expected one of {list(RUN_STATUSES)}, got {fields['status']!r}")
        for key in ("history", "metrics", "params"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.connect() as conn:
            conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    @staticmethod
    def _run(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for key in ("params", "history", "metrics"):
            d[key] = json.loads(d[key])
        return d

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All runs (of one kind), newest first, as dicts (params, history and metrics decoded)."""
        sql, args = "SELECT * FROM runs", []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        with self.connect() as conn:
            return [self._run(r) for r in conn.execute(sql + " ORDER BY id DESC", args)]

    def run(self, run_id: int) -> dict[str, Any]:
        """One run as a dict; ValueError when there is none."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise ValueError(f"run {run_id}: no such run")
        return self._run(row)

    def add_points(self, run_id: int, records: Sequence[dict[str, Any]], kind: str = "train") -> None:
        """Append progress records (each with an ``iteration``) to a run."""
        with self.connect() as conn:
            conn.executemany("INSERT INTO run_points(run_id, kind, iteration, record) VALUES (?,?,?,?)",
                             [(run_id, kind, int(r["iteration"]), json.dumps(r)) for r in records])

    def points(self, run_id: int, kind: str = "train", after: int = 0) -> list[dict[str, Any]]:
        """A run's progress records of one kind with iteration > ``after``, in order."""
        with self.connect() as conn:
            rows = conn.execute("SELECT record FROM run_points WHERE run_id = ? AND kind = ? AND iteration > ? "
                                "ORDER BY iteration, id", (int(run_id), kind, int(after))).fetchall()
        return [json.loads(r[0]) for r in rows]

    def drop_points_after(self, run_id: int, iteration: int) -> None:
        """Forget progress past ``iteration`` (a resume repeats those iterations from a checkpoint)."""
        with self.connect() as conn:
            conn.execute("DELETE FROM run_points WHERE run_id = ? AND iteration > ?", (int(run_id), int(iteration)))

    def add_result(self, model_label: str, split: str, dataset_hash: str, metrics: dict[str, Any],
                   model_id: int | None = None) -> int:
        """Keep an evaluation result."""
        with self.connect() as conn:
            cur = conn.execute("INSERT INTO results(model_id, model_label, split, dataset_hash, metrics) "
                               "VALUES (?,?,?,?,?)", (model_id, model_label, split, dataset_hash,
                                                      json.dumps(metrics)))
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def cached_result(self, model_label: str, split: str, dataset_hash: str,
                      model_id: int | None = None) -> dict[str, Any] | None:
        """The newest result for this model (by id when stored, else by label) on exactly this
        split content (``dataset_hash``), or None: re-opening a page never recomputes."""
        with self.connect() as conn:
            if model_id is not None:
                row = conn.execute("SELECT * FROM results WHERE model_id = ? AND split = ? AND dataset_hash = ? "
                                   "ORDER BY id DESC LIMIT 1", (int(model_id), split, dataset_hash)).fetchone()
            else:
                row = conn.execute("SELECT * FROM results WHERE model_id IS NULL AND model_label = ? AND split = ? "
                                   "AND dataset_hash = ? ORDER BY id DESC LIMIT 1",
                                   (model_label, split, dataset_hash)).fetchone()
        return {**dict(row), "metrics": json.loads(row["metrics"])} if row is not None else None

    def delete_image(self, image_id: int) -> None:
        """Remove an image, its boxes and its file."""
        record = self.image(image_id)
        with self.connect() as conn:
            conn.execute("DELETE FROM images WHERE id = ?", (record.id,))
        record.path.unlink(missing_ok=True)

    def results(self) -> list[dict[str, Any]]:
        """All evaluation results, newest first (metrics decoded)."""
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM results ORDER BY id DESC").fetchall()
        return [{**dict(r), "metrics": json.loads(r["metrics"])} for r in rows]

    # -- videos -------------------------------------------------------------------------
    def add_video(self, data: bytes, name: str, width: int, height: int, fps: float, frames: int,
                  ground_truth: str | None = None) -> int:
        """Store a video file's bytes (and MOTChallenge ground truth text); returns its id."""
        sha = _sha256(data)
        with self.connect() as conn:
            row = conn.execute("SELECT id FROM videos WHERE sha256 = ?", (sha,)).fetchone()
            if row:
                return int(row[0])
        suffix = Path(name).suffix.lower() or ".mp4"
        rel = Path("videos") / f"{sha}{suffix}"
        atomic_write_bytes(self.inside(rel), data)
        gt_rel = None
        if ground_truth is not None:
            gt_rel = Path("videos") / f"{sha}.gt.txt"
            atomic_write_bytes(self.inside(gt_rel), ground_truth.encode())
        with self.connect() as conn:
            cur = conn.execute("INSERT INTO videos(sha256, file, original_name, width, height, fps, frames, gt_file) "
                               "VALUES (?,?,?,?,?,?,?,?)", (sha, rel.as_posix(), name, width, height, fps, frames,
                                                            gt_rel.as_posix() if gt_rel else None))
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def videos(self) -> list[dict[str, Any]]:
        """Stored videos with absolute ``path`` and ``gt_path`` (or None)."""
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM videos ORDER BY id").fetchall()
        return [{**dict(r), "path": self.inside(r["file"]),
                 "gt_path": self.inside(r["gt_file"]) if r["gt_file"] else None} for r in rows]

    # -- overview -----------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        """Numbers for the Home page: images, labeled images, boxes, per split, models, videos."""
        with self.connect() as conn:
            one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            per_split = {s: n for s, n in conn.execute("SELECT split, COUNT(*) FROM images GROUP BY split")}
            return {
                "images": one("SELECT COUNT(*) FROM images"),
                "labeled_images": one("SELECT COUNT(*) FROM images WHERE labeled = 1"),
                "boxes": one("SELECT COUNT(*) FROM boxes WHERE source = 'ground_truth'"),
                "splits": {s: per_split.get(s, 0) for s in SPLITS},
                "models": one("SELECT COUNT(*) FROM models"),
                "videos": one("SELECT COUNT(*) FROM videos"),
                "runs": one("SELECT COUNT(*) FROM runs"),
            }
