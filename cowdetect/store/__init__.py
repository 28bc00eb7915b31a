"""The SQLite database and the files beside it: images, boxes, splits, models, runs, results, videos.

Layout of a data folder (default ``./data``, or ``--data-dir`` / ``COWDETECT_DATA_DIR``)::

    cowdetect.sqlite        the database (WAL mode, schema version in PRAGMA user_version)
    images/ab/<sha256>.jpg  image files, named by the hash of their bytes
    models/by-id/<id>.pt    checkpoints of model versions, named by the version's id
    runs/run-<id>/          a job's checkpoints, log and outputs
    videos/<sha256>.mp4     videos (and <sha256>.gt.txt ground truth in MOTChallenge format)
    cache/detections/       per-frame detections kept by tracking runs (cowdetect.framecache)

One module per table group (:mod:`.images`, :mod:`.models`, :mod:`.runs`, :mod:`.suggestions`,
:mod:`.videos`, :mod:`.users`: accounts, the role check and the activity log),
the schema and its migrations in :mod:`.schema`, the typed rows handed out in :mod:`.rows`.
Each call opens its own short connection, so a Store is safe to share between threads and
processes. Every write is one transaction: on error nothing is changed, and a file written
for a failed insert is removed again.
"""

from __future__ import annotations

from typing import Any

from .base import DB_NAME
from .images import SPLITS, ImagesMixin, check_split, hash_dataset
from .models import ModelsMixin
from .rows import (ACTIVE, RUN_STATUSES, ImageRecord, ModelRecord, ResultRecord, RunRecord, SuggestionSet,
                   VideoRecord)
from .runs import RunsMixin, now
from .schema import SCHEMA_VERSION
from .suggestions import STATES, SuggestionsMixin
from .users import UsersMixin
from .videos import VideosMixin

__all__ = ["ACTIVE", "DB_NAME", "RUN_STATUSES", "SCHEMA_VERSION", "SPLITS", "STATES", "ImageRecord", "ModelRecord",
           "ResultRecord", "RunRecord", "Store", "SuggestionSet", "VideoRecord", "check_split", "hash_dataset", "now"]


class Store(ImagesMixin, ModelsMixin, RunsMixin, SuggestionsMixin, VideosMixin, UsersMixin):
    """A data folder: the SQLite database plus image, model and video files.

    Boxes are stored as xyxy pixels of the original image; images are decoded as RGB.
    ``Store(data_dir, user)`` acts as ``user``: each write checks that user's role
    (:class:`cowdetect.accounts.PermissionDenied` otherwise) and records who did it.
    """

    def counts(self) -> dict[str, Any]:
        """Numbers for the Home page: images, labeled images, boxes, per split, models, videos."""
        with self.connect() as conn:
            def one(sql: str) -> int:
                return int(conn.execute(sql).fetchone()[0])
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
