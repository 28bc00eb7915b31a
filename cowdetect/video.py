"""Reading and writing video files (PyAV, i.e. FFmpeg).

Writing uses libx264 (H.264, yuv420p, faststart MP4) because browsers play that and
OpenCV's pip wheels cannot encode it. Reading decodes with FFmpeg's own threads, turns
frames upright by the file's rotation metadata, and keeps each frame's timestamp, so
variable-frame-rate phone videos keep their true times. Frames are streamed one at a time:
memory stays constant however long the video is.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import av
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg")
# The largest frame a stored video may have: its frames become images, which have the same limit
# (cowdetect.images.MAX_PIXELS: 8K UHD, 33 MP, fits). A 10000x10000 frame is 300 MB decoded.
MAX_FRAME_PIXELS = 50_000_000


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video. Sizes are as displayed (after rotation)."""

    width: int
    height: int
    fps: float          # average frame rate (frames / duration); 0 when unknown
    frames: int         # frame count in the header; 0 when the container does not say
    duration: float     # seconds; 0 when unknown
    rotation: int       # degrees counter-clockwise that frames are turned to show upright
    codec: str


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index from 0, its time in seconds and the RGB uint8 pixels (H, W, 3)."""

    index: int
    time: float
    rgb: np.ndarray


def _open(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video {path}: no such file")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's reason, without the path
        raise ValueError(f"video {path.name}: not a video file FFmpeg can read ({reason})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"video {path.name}: the file has no video stream")
    return container


def _first_frame_rotation(stream: Any) -> int | None:
    """The display rotation (counter-clockwise degrees, a multiple of 90) of the first frame that
    decodes, or None when none does."""
    try:
        for frame in stream.container.decode(stream):
            return int(round((frame.rotation or 0) / 90.0)) * 90 % 360
    except av.FFmpegError:
        pass
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's size, frame rate, frame count, duration and rotation without decoding it all.

    Raises:
        ValueError: not a file, not a video, no video stream, or no frame can be decoded.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        if not duration and container.duration:
            duration = container.duration / av.time_base
        frames = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (frames / duration if frames and duration else 0.0)
        codec = stream.codec_context.name
        stream.thread_type = "AUTO"
        rotation = _first_frame_rotation(stream)
    if rotation is None or not width or not height:
        raise ValueError(f"video {Path(path).name}: the video has no frame that can be decoded")
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(width, height, round(fps, 3), frames, round(duration, 3), rotation, codec)


def check_frame_size(info: VideoInfo, name: str) -> VideoInfo:
    """``info`` of the video ``name`` when its frames are at most :data:`MAX_FRAME_PIXELS`, else ValueError."""
    if info.width * info.height > MAX_FRAME_PIXELS:
        raise ValueError(f"video {name}: frames of {info.width}x{info.height} are {info.width * info.height / 1e6:.0f} "
                         f"megapixels, more than the limit of {MAX_FRAME_PIXELS / 1e6:.0f}")
    return info


class VideoReader:
    """Iterate a video's frames (:class:`Frame`, RGB, upright) decoded on a background thread.

    Decoding runs ahead of the consumer by at most ``prefetch`` frames, so the detector never
    waits for FFmpeg and memory stays bounded. A file that is cut off or damaged does not
    raise mid-way: iteration ends, and :attr:`error` says what went wrong and
    :attr:`frames_read` how far it got.

    ``wanted(index, time)``, when given, is asked about each decoded frame (once, in order, on
    the decode thread): only the frames it accepts are converted to RGB, turned upright and
    yielded. The others are still decoded (inter-frame codecs need them) but cost no colour
    conversion — sampling one frame a second of a 25 fps video converts 1 frame in 25.
    :attr:`frames_read` counts every frame decoded either way.
    """

    def __init__(self, path: str | Path, prefetch: int = 8,
                 wanted: Callable[[int, float], bool] | None = None) -> None:
        self.path = Path(path)
        self.info = probe_video(path)
        self.frames_read = 0
        self.error: str | None = None
        self._wanted = wanted
        # (frames decoded so far, the frame); a None frame marks the end
        self._queue: queue.Queue[tuple[int, Frame | None]] = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _decode(self) -> None:
        k = self.info.rotation // 90
        first_pts = None
        index = 0  # frames decoded so far
        try:
            with _open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for packet_frame in container.decode(stream):
                    if self._stop.is_set():
                        return
                    pts = packet_frame.time if packet_frame.time is not None else None
                    if pts is not None and first_pts is None:
                        first_pts = pts
                    t = (pts - first_pts) if pts is not None and first_pts is not None else \
                        index / (self.info.fps or 25.0)
                    t = round(float(t), 6)
                    index += 1
                    if self._wanted is not None and not self._wants(index - 1, t):
                        continue
                    rgb = packet_frame.to_ndarray(format="rgb24")
                    if k:
                        rgb = np.ascontiguousarray(np.rot90(rgb, k))
                    self._put((index, Frame(index - 1, t, rgb)))
        except (av.FFmpegError, ValueError, OSError) as exc:
            self.error = f"decoding stopped at frame {index}: {exc}"
        finally:
            self._put((index, None))

    def _wants(self, index: int, time: float) -> bool:
        """The caller's ``wanted``; an error in it ends decoding with that error, not a silent end."""
        try:
            return bool(self._wanted(index, time))  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - any error of the caller's predicate
            raise ValueError(f"the wanted-frames test failed at frame {index}: {exc!r}") from exc

    def _put(self, item: tuple[int, Frame | None]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None:
            raise RuntimeError("a VideoReader can be iterated once")
        self._thread = threading.Thread(target=self._decode, name="video-decode", daemon=True)
        self._thread.start()
        try:
            while True:
                decoded, item = self._queue.get()
                self.frames_read = decoded
                if item is None:
                    break
                yield item
        finally:
            self.close()
        if self.error is None and self.info.frames and self.frames_read < self.info.frames - 1:
            # FFmpeg sometimes ends quietly on a truncated file; the header's count tells.
            self.error = (f"the video ended at frame {self.frames_read} of the {self.info.frames} its header "
                          f"announces (the file is cut off or damaged)")

    def close(self) -> None:
        """Stop decoding (safe to call twice)."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as RGB uint8 arrays (H, W, 3), upright, one at a time."""
    for frame in VideoReader(path):
        yield frame.rgb


class VideoWriter:
    """Encode RGB uint8 frames (H, W, 3; all one size) to an H.264 MP4 that browsers play.

    ``background=True`` encodes on a thread (bounded queue), off the caller's path. Odd widths
    or heights are cropped by one pixel (yuv420p needs even sizes). Use as a context manager;
    :attr:`count` is the number of frames written.
    """

    def __init__(self, path: str | Path, fps: float = 25.0, crf: int = 23, preset: str = "veryfast",
                 background: bool = False, queue_size: int = 8) -> None:
        if not fps > 0:
            raise ValueError(f"fps: expected a positive frame rate, got {fps}")
        self.path = Path(path)
        self.count = 0
        self._fps, self._crf, self._preset = fps, crf, preset
        self._container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
        self._stream: Any = None
        self._error: BaseException | None = None
        self._queue: queue.Queue[np.ndarray | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=queue_size)
            self._thread = threading.Thread(target=self._drain, name="video-encode", daemon=True)
            self._thread.start()

    def _encode(self, frame: np.ndarray) -> None:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame {self.count}: expected an RGB uint8 (H, W, 3) array, got {frame.dtype} "
                             f"{frame.shape}")
        h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=Fraction(self._fps).limit_denominator(1001))
            self._stream.width, self._stream.height = w, h
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self._crf), "preset": self._preset}
        elif (h, w) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame {self.count}: size {w}x{h} differs from the first frame's "
                             f"{self._stream.width}x{self._stream.height}")
        packet_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
        self._container.mux(self._stream.encode(packet_frame))
        self.count += 1

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._error is None:
                try:
                    self._encode(frame)
                except BaseException as exc:  # handed to the caller on the next write/close
                    self._error = exc

    def write(self, frame: np.ndarray) -> None:
        """Add one RGB uint8 frame (H, W, 3)."""
        if self._error is not None:
            raise self._error
        if self._queue is None:
            self._encode(frame)
        else:
            self._queue.put(frame)

    def close(self) -> int:
        """Flush and close the file; returns the number of frames written."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        try:
            if self._error is not None:
                raise self._error
            if self._stream is None:
                raise ValueError("frames: no frames to write")
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
        return self.count

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
        else:  # an error in the caller: close what we have, report theirs
            try:
                self.close()
            except BaseException:
                pass


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 25.0, crf: int = 23,
                preset: str = "veryfast") -> int:
    """Encode RGB uint8 frames (H, W, 3; all the same size) to an H.264 MP4; returns the frame count."""
    with VideoWriter(path, fps, crf, preset) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.count


SEGMENT_GLOB = "segment-*.mp4"


def list_segments(folder: str | Path) -> list[Path]:
    """The complete segments of a :class:`SegmentWriter` in ``folder``, oldest first (open
    ``.partial.mp4`` files left out)."""
    return sorted(p for p in Path(folder).glob(SEGMENT_GLOB) if ".partial" not in p.name)


class SegmentWriter:
    """A frame sink (see :class:`cowdetect.tracking.FrameSink`) writing RGB uint8 frames as complete
    H.264 MP4 files of ``seconds`` of video each: ``segment-00001.mp4``, ``segment-00002.mp4`` ...

    The open segment is ``segment-NNNNN.partial.mp4``, renamed when complete. A full segment is
    closed on the caller's thread before the next frame opens a new one (flushing an ``ultrafast``
    encoder takes milliseconds), so a process killed at any moment leaves every closed segment
    playable and loses only the open one. Numbering continues after segments already in ``folder``
    (a resumed run), and partial files found there (of a killed run) are removed. ``on_closed(path)``
    is called with each completed segment; an error in encoding, renaming or ``on_closed`` is kept in
    :attr:`error` and raised by the next :meth:`write` or :meth:`close`.
    """

    def __init__(self, folder: str | Path, seconds: float = 10.0, fps: float = 25.0,
                 on_closed: Callable[[Path], None] | None = None) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds: expected a positive segment length, got {seconds}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for partial in self.folder.glob("segment-*.partial.mp4"):
            partial.unlink(missing_ok=True)
        self.fps, self.per_segment = fps, max(1, round(seconds * fps))
        self.on_closed = on_closed
        found = list_segments(self.folder)
        self.segments: list[dict[str, Any]] = [{"name": p.name, "frames": None, "closed_at": None} for p in found]
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in found), default=0)
        self._writer: VideoWriter | None = None
        self.error: BaseException | None = None
        self.frames = self._in_segment = 0
        self.close_seconds: deque[float] = deque(maxlen=100)  # how long closing each segment took

    def write(self, frame: np.ndarray) -> None:
        """Add one RGB uint8 frame (H, W, 3); a segment full with this frame is closed."""
        if self.error is not None:
            raise self.error
        if self._writer is None:
            path = self.folder / f"segment-{self._next:05d}.partial.mp4"
            self._next += 1
            self._writer = VideoWriter(path, fps=self.fps, preset="ultrafast", crf=23, background=True)
            self._in_segment = 0
        self._writer.write(frame)
        self.frames += 1
        self._in_segment += 1
        if self._in_segment >= self.per_segment:
            self._finish()

    def _finish(self) -> None:
        """Close the open segment: flush, rename, ``on_closed``; any error lands in :attr:`error`."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        started = time.perf_counter()
        final = writer.path.with_name(writer.path.name.replace(".partial", ""))
        try:
            count = writer.close()
            os.replace(writer.path, final)
            self.segments.append({"name": final.name, "frames": count, "closed_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            if self.on_closed is not None:
                self.on_closed(final)
        except Exception as exc:  # a full disk, a bad on_closed target: told by the next write or close
            self.error = exc
            writer.path.unlink(missing_ok=True)
        self.close_seconds.append(time.perf_counter() - started)

    def close(self) -> None:
        """Complete the open segment.

        Raises:
            ValueError: no frame was written at all.
            OSError, ValueError: a segment could not be encoded, renamed or handed to ``on_closed``.
        """
        self._finish()
        if self.error is not None:
            raise self.error
        if not self.frames:
            raise ValueError("frames: no frames to write")
