"""Videos (named by the hash of their bytes) and their MOTChallenge ground truth."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write_bytes
from .base import StoreBase, sha256_hex
from .rows import VideoRecord, video_row


class VideosMixin(StoreBase):
    """Stored videos."""

    def add_video(self, data: bytes, name: str, width: int, height: int, fps: float, frames: int,
                  ground_truth: str | None = None) -> tuple[VideoRecord, str]:
        """Store a video file's bytes (and MOTChallenge ground-truth text); returns the record and
        a sentence saying what was done: added; already stored; or already stored and its
        ground truth attached or replaced by the one given. Atomic across processes.

        Raises:
            ValueError: frames larger than :data:`cowdetect.video.MAX_FRAME_PIXELS` (checked here
                too, so that no caller stores a video whose frames cannot be imported or tracked).
        """
        from ..video import MAX_FRAME_PIXELS  # here: the store itself needs no video decoder

        self.require("import")  # type: ignore[attr-defined]
        if (width or 0) * (height or 0) > MAX_FRAME_PIXELS:
            raise ValueError(f"video {name}: frames of {width}x{height} are more than the limit of "
                             f"{MAX_FRAME_PIXELS / 1e6:.0f} megapixels")
        sha = sha256_hex(data)
        rel = Path("videos") / f"{sha}{Path(name).suffix.lower() or '.mp4'}"
        gt_rel = Path("videos") / f"{sha}.gt.txt"
        with self.write_lock() as conn:
            row = conn.execute("SELECT * FROM videos WHERE sha256 = ?", (sha,)).fetchone()
            if row is not None:
                return self._attach_truth(conn, row, gt_rel, ground_truth)
            written = [self.inside(rel)] + ([self.inside(gt_rel)] if ground_truth is not None else [])
            try:
                atomic_write_bytes(written[0], data)
                if ground_truth is not None:
                    atomic_write_bytes(written[1], ground_truth.encode())
                cur = conn.execute("INSERT INTO videos(sha256, file, original_name, width, height, fps, frames, "
                                   "gt_file) VALUES (?,?,?,?,?,?,?,?)", (sha, rel.as_posix(), name, width, height, fps,
                                   frames, gt_rel.as_posix() if ground_truth is not None else None))
                row = conn.execute("SELECT * FROM videos WHERE id = ?", (cur.lastrowid,)).fetchone()
                self._log(conn, "import video", f"video #{cur.lastrowid}", name)  # type: ignore[attr-defined]
            except BaseException:  # a full disk, a kill: no file without its row
                for path in written:
                    path.unlink(missing_ok=True)
                raise
        with_truth = " with its ground truth" if ground_truth is not None else ""
        return video_row(row, self.inside), f"Added {name}{with_truth}."

    def _attach_truth(self, conn, row, gt_rel: Path, ground_truth: str | None) -> tuple[VideoRecord, str]:
        record = video_row(row, self.inside)
        shown = record.original_name or f"video {record.id}"
        if ground_truth is None:
            return record, f"{shown} is already stored (video {record.id}); nothing added."
        old = record.gt_path.read_text() if record.gt_path is not None and record.gt_path.is_file() else None
        if old == ground_truth:
            return record, f"{shown} is already stored with this ground truth (video {record.id}); nothing added."
        atomic_write_bytes(self.inside(gt_rel), ground_truth.encode())
        conn.execute("UPDATE videos SET gt_file = ? WHERE id = ?", (gt_rel.as_posix(), record.id))
        row = conn.execute("SELECT * FROM videos WHERE id = ?", (record.id,)).fetchone()
        what = "attached to it" if old is None else "replaced the one stored with it (earlier runs keep their scores)"
        return video_row(row, self.inside), f"{shown} was already stored (video {record.id}); its ground truth was {what}."

    def videos(self) -> list[VideoRecord]:
        """Stored videos, oldest first."""
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM videos ORDER BY id").fetchall()
        return [video_row(r, self.inside) for r in rows]

    def video(self, video_id: int) -> VideoRecord:
        """The video with this id; ValueError lists the stored ids."""
        row = self._one("SELECT * FROM videos WHERE id = ?", (int(video_id),))
        if row is None:
            raise ValueError(f"video {video_id}: no such stored video (stored: {[v.id for v in self.videos()] or 'none'})")
        return video_row(row, self.inside)
