"""Videos (named by the hash of their bytes) and their MOTChallenge ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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

    def set_video_geometry(self, video_id: int, geometry: dict[str, Any]) -> VideoRecord:
        """Keep counting lines and zones with a video (:func:`cowdetect.geometry.geometry_to_dict`;
        ``{}`` removes them), replacing those it had; every later tracking run of the video counts on
        them unless it is given others. Needs the track role; logged. Returns the updated record.

        Raises:
            ValueError: an unknown video, or geometry that is malformed, misnamed or outside its frames
                (nothing is changed).
        """
        from ..geometry import geometry_from_dict  # the store needs no cv2 else

        given = geometry_from_dict(geometry)
        return self._edit_geometry(video_id, lambda lines, zones: given)

    def add_video_shape(self, video_id: int, kind: str, points: list[tuple[float, float]],
                        name: str = "") -> VideoRecord:
        """Add one counting line (``kind`` "line", two points) or zone ("zone", corners) in full-frame
        pixels to a video's saved ones, read and written under the write lock (two pages adding at once
        keep both). ``name`` '' picks the first free "line1", "line2", ... Needs the track role; logged.

        Raises:
            ValueError: an unknown video or kind, a bad shape or name, a name already used (nothing changed).
        """
        from ..geometry import with_shape

        return self._edit_geometry(video_id, lambda lines, zones: with_shape(lines, zones, kind, points, name))

    def remove_video_shape(self, video_id: int, name: str) -> VideoRecord:
        """Remove the counting line or zone called ``name`` from a video's saved ones (under the write
        lock, like :meth:`add_video_shape`; an unknown name changes nothing). Needs the track role; logged."""
        return self._edit_geometry(video_id, lambda lines, zones: (tuple(x for x in lines if x.name != name),
                                                                   tuple(z for z in zones if z.name != name)))

    def _edit_geometry(self, video_id: int, change: Any) -> VideoRecord:
        """Apply ``change(lines, zones) -> (lines, zones)`` to the video's geometry as stored now, inside
        the write lock (no lost update between two writers), checked against its frame, and log it."""
        from ..geometry import check_geometry, geometry_from_dict, geometry_to_dict

        self.require("track")  # type: ignore[attr-defined]
        video = self.video(video_id)
        with self.write_lock() as conn:
            row = conn.execute("SELECT geometry FROM videos WHERE id = ?", (video.id,)).fetchone()
            lines, zones = change(*geometry_from_dict(json.loads(row[0] or "{}")))
            # names always; points against the frame when its size is known
            check_geometry(lines, zones, video.width or None, video.height or None)
            names = ", ".join([line.name for line in lines] + [zone.name for zone in zones]) or "none"
            conn.execute("UPDATE videos SET geometry = ? WHERE id = ?",
                         (json.dumps(geometry_to_dict(lines, zones) if lines or zones else {}), video.id))
            self._log(conn, "set counting lines", f"video #{video.id}",  # type: ignore[attr-defined]
                      f"{len(lines)} lines, {len(zones)} zones: {names}")
        return self.video(video.id)

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
