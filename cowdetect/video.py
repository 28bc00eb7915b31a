"""Reading and writing video files.

Writing uses PyAV's libx264 (H.264, yuv420p, faststart) because browsers play that and
OpenCV's pip wheels cannot encode it. Reading uses OpenCV.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 25.0, crf: int = 23) -> int:
    """Encode RGB uint8 frames (H, W, 3; all the same size) to an H.264 MP4; returns the frame count.

    Odd widths or heights are cropped by one pixel (yuv420p needs even sizes).
    """
    path = Path(path)
    count = 0
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as container:
        stream = None
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {count}: expected an RGB uint8 (H, W, 3) array, got {frame.dtype} {frame.shape}")
            h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = w, h
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            elif (h, w) != (stream.height, stream.width):
                raise ValueError(f"frame {count}: size {w}x{h} differs from the first frame's "
                                 f"{stream.width}x{stream.height}")
            packet_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
            container.mux(stream.encode(packet_frame))
            count += 1
        if stream is None:
            raise ValueError("frames: no frames to write")
        container.mux(stream.encode(None))
    return count


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as RGB uint8 arrays (H, W, 3), one at a time."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"video {path}: cannot be opened (not a video, or an unsupported codec)")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
