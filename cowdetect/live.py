"""Tracking a live camera stream: RTSP / HTTP(S) / UDP / SRT URLs, /dev/video* devices, named pipes.

:class:`StreamReader` connects (failing in seconds, not hanging, on a stream that does not answer
or sends no video), decodes on a background thread into a bounded queue — when tracking falls
behind, the oldest waiting frame is dropped and counted, so latency stays bounded instead of
growing — and reconnects with capped exponential back-off when the stream drops, logging each drop
and reconnect with its wall time in :attr:`StreamStats.events`, and measures each frame's latency
(:class:`StreamStats`). Writing the annotated video in segments is
:class:`cowdetect.video.SegmentWriter`; tracking a stream is :func:`cowdetect.tracking.track_stream`.
Who may read which source (hosts, devices, pipes) is checked by :func:`cowdetect.jobs.live_settings`.

Why stream input is here and not in :mod:`cowdetect.video` (which holds file I/O): a file is
probed, has an end and a frame count, and is never dropped from; a stream needs timeouts, network
options per protocol, reconnecting and dropping frames — a different reader with different
failure modes. Both use PyAV.
"""

from __future__ import annotations

import io
import os
import queue
import re
import select
import stat
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import av
import numpy as np

from .video import MAX_FRAME_PIXELS, Frame, VideoInfo

# URL schemes FFmpeg reads live video from (its protocols of the same names).
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "srt", "rtmp", "rtmps", "tcp")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
# What FFmpeg reads to learn the stream's codec and frame rate before the first frame: bounded, so
# joining a stream takes about a second and not the default five.
_PROBE_OPTIONS = {"analyzeduration": "1000000", "probesize": "1000000"}
# The FFmpeg protocols each scheme may use (its transport included): a playlist or a redirect can
# then not switch to another protocol (file:, a pipe, another transport).
PROTOCOLS = {"http": "http,tcp", "https": "https,tls,tcp", "rtsp": "rtsp,rtp,udp,tcp", "rtsps": "rtsp,rtp,udp,tcp,tls",
             "udp": "udp", "srt": "srt", "rtmp": "rtmp,tcp", "rtmps": "rtmps,rtmp,tls,tcp", "tcp": "tcp"}
# Query options that make FFmpeg listen on a port of the server instead of connecting out.
_LISTEN = "a URL that makes the server listen on a port (listen, mode=listener/rendezvous, udp://@:PORT) is refused"


def url_scheme(text: str) -> str | None:
    """The scheme of ``text`` written as a URL (lower case), or None when it is no URL (a path)."""
    match = _URL.match(text.strip())
    return match.group(1).lower() if match else None


def is_live_source(text: str) -> bool:
    """Whether ``text`` names a live source rather than a video file: anything written as a URL
    (``scheme://...``; an unknown scheme is then refused by :func:`check_stream_source` with the
    schemes it knows, not "no such file"), a ``/dev/video*`` device, or a named pipe (FIFO)."""
    text = str(text)
    if url_scheme(text) is not None:
        return True
    if text.startswith("/dev/video"):
        return True
    try:
        return stat.S_ISFIFO(os.stat(text).st_mode)
    except (OSError, ValueError):
        return False


def check_stream_source(text: str) -> str:
    """``text`` as a checked live source (stripped), before any connection.

    Raises:
        ValueError: an unknown scheme, a ``file://`` URL, a URL without a host, a missing device or
            something that is neither URL, device nor named pipe.
    """
    text = str(text).strip()
    scheme = url_scheme(text)
    if scheme is not None:
        if scheme == "file":
            raise ValueError(f"stream {display_source(text)}: a file:// URL is a stored video; give its path instead")
        if scheme not in STREAM_SCHEMES:
            raise ValueError(f"stream {display_source(text)}: expected a URL starting with one of "
                             f"{', '.join(s + '://' for s in STREAM_SCHEMES)}, got {scheme}://")
        if any(c in text for c in "\n\r\0"):
            raise ValueError("stream: the URL contains a line break or NUL")
        _check_connects_out(text, scheme)
        return text
    if text.startswith("/dev/video"):
        if not os.path.exists(text):
            raise ValueError(f"stream {text}: no such camera device")
        return text
    if is_live_source(text):
        return text
    raise ValueError(f"stream {text!r}: expected a stream URL (rtsp://, http://, ...), a /dev/video* camera "
                     f"or a named pipe")


def _check_connects_out(url: str, scheme: str) -> None:
    """Refuse a URL without a host, and one that would make FFmpeg listen instead of connect."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # a bad port or IPv6 literal
        raise ValueError(f"stream {display_source(url)}: not a valid URL ({exc})") from None
    if not host:
        raise ValueError(f"stream {display_source(url)}: " + (_LISTEN if scheme == "udp" else "the URL has no host"))
    options = {k.strip().lower(): v.strip().lower() for k, v in parse_qsl(parts.query.replace(";", "&"),
                                                                          keep_blank_values=True)}
    if any("listen" in k for k in options) or options.get("mode") in ("listener", "server", "rendezvous"):
        raise ValueError(f"stream {display_source(url)}: {_LISTEN}")


# Query parameters that IP cameras take credentials in (?user=admin&pwd=..., ?token=...).
_SECRET_QUERY = re.compile(r"(?i)([?&;][^=&;#]*(?:pass|pwd|token|key|auth|secret|sig|cred)[^=&;#]*=)[^&;#]*")


def display_source(source: str) -> str:
    """The source for messages, without credentials: the URL's user info is masked up to the last
    '@' before the path (where FFmpeg splits it too, so a password holding '@' is masked whole), and
    so are the values of query parameters named like a password, token or key."""
    return _SECRET_QUERY.sub(r"\1***", re.sub(r"//[^/?#]*@", "//***@", source))


@dataclass(frozen=True)
class StreamEvent:
    """Something that happened to the connection: ``kind`` is ``connected``, ``dropped``,
    ``retry_failed``, ``reconnected`` or ``stuck`` (the decode thread did not end when closed); ``at`` the wall time (UTC, ISO 8601)."""

    kind: str
    at: str
    message: str


class StreamStats:
    """Rolling numbers of a live stream: frames in and out, frames dropped, end-to-end latency
    (arrival from the stream → annotated frame handed to the encoder) over the last ``window``
    frames, and the connection's events. Written by the reader and the pipeline, read by anyone."""

    def __init__(self, window: int = 250, keep_events: int = 200) -> None:
        self.started = time.monotonic()
        self.frames_in = self.frames_out = self.dropped = 0
        self.latencies: deque[float] = deque(maxlen=window)
        # the newest events only (a camera that flaps for days must not grow memory); counted whole
        self.events: deque[StreamEvent] = deque(maxlen=keep_events)
        self.counts: dict[str, int] = {}
        self.state = "connecting"
        self._received: dict[int, float] = {}  # frame index -> arrival (perf_counter), until it is written

    def event(self, kind: str, message: str) -> None:
        """Record a connection event of ``kind`` now (kept among the newest, counted always)."""
        clock = time.time()
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(clock)) + f".{int(clock * 1000) % 1000:03d}Z"
        self.events.append(StreamEvent(kind, at, message))
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def arrived(self, index: int, at: float) -> None:
        """Frame ``index`` arrived from the stream at ``at`` (``time.perf_counter()``)."""
        self._received[index] = at

    def written(self, index: int) -> None:
        """Frame ``index`` left the pipeline: record its latency."""
        received = self._received.pop(index, None)
        self.frames_out += 1
        if received is not None:
            self.latencies.append(time.perf_counter() - received)

    def summary(self, events: int = 20) -> dict[str, Any]:
        """JSON-ready: frames, fps (out, over the wall time so far), dropped, dropped per minute,
        latency median and 95th percentile in ms (rolling), reconnects, drops, state, last events."""
        seconds = max(1e-9, time.monotonic() - self.started)
        lat = np.array(self.latencies) * 1000.0
        return {"frames": self.frames_out, "frames_received": self.frames_in, "seconds": round(seconds, 2),
                "fps": round(self.frames_out / seconds, 2), "dropped": self.dropped,
                "dropped_per_minute": round(self.dropped * 60.0 / seconds, 2),
                "latency_ms_median": round(float(np.median(lat)), 1) if len(lat) else None,
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
                "drops": self.counts.get("dropped", 0), "reconnects": self.counts.get("reconnected", 0),
                "state": self.state, "events": [asdict(e) for e in list(self.events)[-events:]] if events else []}


class _PipeReader(io.RawIOBase):
    """A named pipe read with a timeout: FFmpeg's own file reads block forever on a silent pipe."""

    def __init__(self, path: str, timeout: float) -> None:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, with no timeout
        self.fd, self.timeout, self.path = os.open(path, os.O_RDONLY | os.O_NONBLOCK), timeout, path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            ready, _, _ = select.select([self.fd], [], [], self.timeout)
            if not ready:
                raise TimeoutError(f"no data for {self.timeout:g} s")
            try:
                data = os.read(self.fd, len(buffer))  # b"": the writer closed the pipe (the stream's end)
            except BlockingIOError:
                continue  # woken without data after all: wait again
            buffer[:len(data)] = data
            return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def _close(container: Any) -> None:
    """Close a container of :func:`_open_stream` and the named pipe it reads, if any (PyAV leaves a
    Python file object open)."""
    pipe = container.file
    container.close()
    if isinstance(pipe, _PipeReader):
        pipe.close()


def _open_stream(source: str, timeout: float) -> Any:
    """An open PyAV container of ``source`` with a video stream; ValueError (one line) when it does
    not answer within ``timeout`` seconds, is refused, or sends no video FFmpeg can read."""
    scheme, name = url_scheme(source), display_source(source)
    micro = str(int(timeout * 1_000_000))
    options = dict(_PROBE_OPTIONS)
    if scheme in ("http", "https"):
        options["rw_timeout"] = micro        # a server that accepts and then says nothing
    elif scheme in ("rtsp", "rtsps"):
        options.update(rtsp_transport="tcp", timeout=micro)  # TCP: no lost packets, and a timeout that works
    elif scheme in ("udp", "srt", "tcp"):
        options["timeout"] = micro
    if scheme is not None:
        options["protocol_whitelist"] = PROTOCOLS[scheme]
    target: Any = source
    fmt = "v4l2" if source.startswith("/dev/video") else None
    if scheme is None and fmt is None:
        target = _PipeReader(source, timeout)
    started = time.monotonic()
    try:
        # PyAV's own timeout interrupts any blocking FFmpeg call: the last guard on every protocol
        container = av.open(target, "r", format=fmt, options=options, timeout=(timeout, timeout))
    except (av.FFmpegError, OSError) as exc:
        if isinstance(target, _PipeReader):
            target.close()
        if isinstance(exc, (av.ExitError, TimeoutError)) or time.monotonic() - started >= timeout:
            raise ValueError(f"stream {name}: no answer within {timeout:g} s") from None
        reason = getattr(exc, "strerror", None) or str(exc)
        if isinstance(exc, av.InvalidDataError):
            raise ValueError(f"stream {name}: sends no video FFmpeg can read ({reason})") from None
        raise ValueError(f"stream {name}: could not be opened ({reason})") from None
    if not container.streams.video:
        _close(container)
        raise ValueError(f"stream {name}: the stream has no video")
    ctx = container.streams.video[0].codec_context
    if not ctx.width or not ctx.height or ctx.width * ctx.height > MAX_FRAME_PIXELS:
        _close(container)
        raise ValueError(f"stream {name}: frames of {ctx.width}x{ctx.height} (expected 1 to "
                         f"{MAX_FRAME_PIXELS / 1e6:.0f} megapixels)")
    return container


class StreamReader:
    """Iterate a live stream's frames (:class:`~cowdetect.video.Frame`, RGB uint8) until :meth:`stop`,
    ``keep_going()`` returning False, or — with ``reconnect=False`` — the stream's end.

    The first connection is made here, so a stream that does not answer within ``timeout`` seconds,
    an unknown protocol or bytes that are no video raise ValueError before any work. Afterwards a
    drop (an error, the end, or ``timeout`` seconds without data) is an event, not an error: the
    reader waits ``first_backoff`` seconds, doubling up to ``max_backoff``, between attempts to
    connect again; it starts from ``first_backoff`` again only after a connection that lasted
    ``stable_after`` seconds (a camera that sends a frame and drops is not retried twice a second
    forever). Frames keep the first connection's size (a camera that comes back at another
    resolution is scaled to it). A frame's ``time`` is seconds since the reader started (stream
    timestamps restart on reconnect); ``index`` counts the frames yielded, from 0.

    While no frame comes, ``keep_going()`` is asked about once a second (the job writes its state
    and reads its stop request there).
    """

    def __init__(self, source: str, timeout: float = 5.0, reconnect: bool = True, first_backoff: float = 0.5,
                 max_backoff: float = 10.0, buffer_seconds: float = 1.0,
                 keep_going: Callable[[], bool] | None = None, stable_after: float = 10.0) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout: expected a positive number of seconds, got {timeout}")
        self.source, self.timeout, self.reconnect = check_stream_source(source), timeout, reconnect
        self.first_backoff, self.max_backoff = first_backoff, max(first_backoff, max_backoff)
        self.stable_after = stable_after
        self.keep_going = keep_going
        self.stats = StreamStats()
        self.error: str | None = None
        self.halted = False  # stop() or keep_going() ended it, not the stream
        self._container = _open_stream(self.source, timeout)
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        ctx = stream.codec_context
        self.info = VideoInfo(ctx.width, ctx.height, round(float(rate), 3) if rate else 25.0, 0, 0.0, 0, ctx.name)
        self.stats.event("connected", f"{display_source(self.source)}: {ctx.width}x{ctx.height} {ctx.name} at "
                                      f"{self.info.fps:g} fps")
        self.stats.state = "streaming"
        size = max(2, round(self.info.fps * buffer_seconds))
        self._queue: queue.Queue[tuple[float, np.ndarray] | None] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the decode thread ----------------------------------------------------------------------

    def _run(self) -> None:
        container, backoff = self._container, self.first_backoff
        try:
            while container is not None and not self._stop.is_set():
                connected = time.monotonic()
                frames, reason = self._pump(container)
                _close(container)
                container = None
                if self._stop.is_set():
                    break
                self.stats.event("dropped", reason)
                if not self.reconnect:
                    self.error = reason
                    break
                if time.monotonic() - connected >= self.stable_after:
                    backoff = self.first_backoff  # it was a good connection: start again from short waits
                container, backoff = self._reconnect(backoff)
        finally:
            self.stats.state = "stopped" if self._stop.is_set() else "ended"
            self._put(None)

    def _pump(self, container: Any) -> tuple[int, str]:
        """Decode ``container`` into the queue; returns (frames decoded, why it ended)."""
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        try:
            for packet_frame in container.decode(stream):
                if self._stop.is_set():
                    return count, "stopped"
                arrived = time.perf_counter()
                # to_ndarray's scaling keeps every frame the first connection's size
                rgb = packet_frame.to_ndarray(format="rgb24", width=self.info.width, height=self.info.height)
                self._put((arrived, rgb))
                count += 1
        except av.ExitError:
            return count, f"no data for {self.timeout:g} s"
        except (av.FFmpegError, OSError, ValueError) as exc:
            return count, f"the stream failed after {count} frames ({getattr(exc, 'strerror', None) or exc})"
        return count, f"the stream ended after {count} frames"

    def _reconnect(self, backoff: float) -> tuple[Any, float]:
        """Wait and try again until connected or stopped: (container or None, the next back-off)."""
        self.stats.state = "reconnecting"
        down, attempts = time.monotonic(), 0
        while not self._stop.wait(backoff):
            attempts += 1
            waited, backoff = backoff, min(backoff * 2, self.max_backoff)
            try:
                container = _open_stream(self.source, self.timeout)
            except ValueError as exc:
                self.stats.event("retry_failed", f"attempt {attempts} after waiting {waited:g} s: {exc}")
                continue
            self.stats.event("reconnected", f"after {attempts} attempt{'s' * (attempts != 1)} (the last after "
                                            f"waiting {waited:g} s), {time.monotonic() - down:.1f} s without video")
            self.stats.state = "streaming"
            return container, backoff
        return None, backoff

    def _put(self, item: tuple[float, np.ndarray] | None) -> None:
        """Queue ``item``; when the queue is full, the oldest waiting frame makes room (counted as dropped)."""
        if item is not None:
            self.stats.frames_in += 1
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    if self._queue.get_nowait() is not None:
                        self.stats.dropped += 1
                except queue.Empty:
                    pass

    # -- the consumer ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None:
            raise RuntimeError("a StreamReader can be iterated once")
        self._thread = threading.Thread(target=self._run, name="stream-decode", daemon=True)
        self._thread.start()
        index, asked, first = 0, time.monotonic(), None
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if self.keep_going is not None and time.monotonic() - asked >= 1.0:
                        asked = time.monotonic()
                        if not self.keep_going():
                            self.halted = True
                            return
                    continue
                if item is None:
                    return
                arrived, rgb = item
                first = arrived if first is None else first
                self.stats.arrived(index, arrived)
                yield Frame(index, round(arrived - first, 6), rgb)
                index += 1
        finally:
            self.close()

    def stop(self) -> None:
        """Ask the reader to end (thread-safe; iteration ends after the frame in hand)."""
        self.halted = True
        self._stop.set()

    def close(self) -> None:
        """Stop decoding and disconnect (safe to call twice). Waits at most ``timeout`` + 1 s for the
        decode thread (it sees the stop after its current FFmpeg call, which PyAV's timeout bounds);
        a thread stuck beyond that (a camera driver) is left behind as a daemon, and said so."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            deadline = time.monotonic() + self.timeout + 1.0
            while self._thread.is_alive() and time.monotonic() < deadline:
                try:  # emptying the queue frees the frames; the thread never blocks on it (_put)
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            if self._thread.is_alive():
                self.stats.event("stuck", f"the decode thread did not stop within {self.timeout + 1:g} s; "
                                            f"left behind")
        elif self._thread is None and self._container is not None:
            _close(self._container)  # never iterated
            self._container = None
