"""A video's per-frame detections, kept on disk as they are computed.

Detection is about 90 % of a tracking run's time. With its detections kept, a resumed run (a
worker that was stopped or killed) replays the frames it had already detected instead of
starting the detector from frame 0, and a second run of the same model on the same video
with other tracker settings (distance, threshold, hit counter) runs the detector on no frame.

The file is an append-only log of float32 rows ``frame, x1, y1, x2, y2, score, class_id``
(xyxy in the video's pixels); each frame's rows end with a marker row whose class id is -1,
written together, so a process killed mid-write leaves at most one incomplete frame, which
is dropped on opening. Plain numbers only: nothing is unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .detections import Detections

_COLUMNS = 7
_MARKER = -1.0


class FrameDetections:
    """Detections per frame index of one video under one detector (the caller picks the file
    name from what the detections depend on: video content, model weights, detection size).

    Args:
        path: the log file (created with its folder on the first :meth:`put`).
        class_names: the detector's vocabulary, background first (``DetectorBox.class_names``).
    """

    def __init__(self, path: str | Path, class_names: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.class_names = tuple(class_names)
        self._frames: dict[int, Detections] = {}
        self._file = None
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        rows = np.fromfile(self.path, np.float32)
        rows = rows[: len(rows) // _COLUMNS * _COLUMNS].reshape(-1, _COLUMNS)
        markers = np.flatnonzero(rows[:, 6] == _MARKER)
        complete = int(markers[-1]) + 1 if len(markers) else 0
        if complete * _COLUMNS * 4 != self.path.stat().st_size:
            os.truncate(self.path, complete * _COLUMNS * 4)  # drop a frame cut off mid-write
        start = 0
        for end in markers:
            frame = rows[start:end]
            index = int(rows[end, 0])
            start = end + 1
            if index in self._frames:
                continue
            try:
                self._frames[index] = Detections(frame[:, 1:5], frame[:, 6].astype(np.int64), frame[:, 5],
                                                 self.class_names)
            except ValueError:  # not this detector's file (another vocabulary): detect again
                continue

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, index: int) -> Detections | None:
        """The detections of frame ``index`` (xyxy px of the video), or None if not kept."""
        return self._frames.get(index)

    def put(self, index: int, detections: Detections) -> None:
        """Keep the detections of frame ``index`` (xyxy px of the video, scores required)."""
        if index in self._frames:
            return
        rows = np.zeros((len(detections) + 1, _COLUMNS), np.float32)
        rows[:, 0] = index
        if len(detections):
            rows[:-1, 1:5] = detections.xyxy
            rows[:-1, 5] = detections.score if detections.score is not None else 1.0
            rows[:-1, 6] = detections.class_id
        rows[-1, 6] = _MARKER
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)
        self._file.write(rows.tobytes())  # one write per frame: rows and marker land together
        self._frames[index] = detections

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> FrameDetections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
