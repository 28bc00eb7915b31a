"""A local live stream for tests and benchmarks: a video served as MPEG-TS over HTTP, paced at real time.

Nothing here touches the internet: the server listens on 127.0.0.1 only. :func:`mpegts` encodes
frames (RGB uint8) to H.264 in MPEG-TS with PyAV; :class:`StreamServer` sends it to every client
at the pace of its timestamps (looped as often as asked), and can go down and come back on the same
port (to test reconnecting), or send bytes that are no video at all.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

import av
import numpy as np


def mpegts(frames: Iterable[np.ndarray], fps: int = 25,
           gop: int | None = None) -> tuple[bytes, list[tuple[int, float]]]:
    """(MPEG-TS bytes of ``frames`` as H.264, [(byte offset where each packet starts, its time in s)]).
    A keyframe every ``gop`` frames (default: one a second), so a client joining mid-way starts soon."""
    out = io.BytesIO()
    with av.open(out, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop or fps)}
        for i, rgb in enumerate(frames):
            if i == 0:
                stream.width, stream.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:stream.height, :stream.width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = out.getvalue()
    marks = []
    with av.open(io.BytesIO(data), "r", format="mpegts") as container:
        first = None
        for packet in container.demux(video=0):
            if packet.pos is None or packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            first = t if first is None else first
            marks.append((int(packet.pos), t - first))
    return data, marks


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args: Any) -> None:  # quiet: tests read states, not logs
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path == "/garbage":
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            self.wfile.write(np.random.default_rng(0).integers(0, 256, 2_000_000, np.uint8).tobytes())
            return
        if self.path != "/live.ts":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.end_headers()
        owner.clients += 1
        try:
            owner.send(self.wfile, self.server.down)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "StreamServer"
    down: threading.Event


class StreamServer:
    """Serve ``data`` (MPEG-TS, from :func:`mpegts`) at http://127.0.0.1:PORT/live.ts, paced by ``marks``,
    ``loops`` times in a row (each client from the start); /garbage sends random bytes.

    :meth:`stop` closes the port and every open stream (a dropped camera); :meth:`start` opens the
    same port again. :attr:`clients` counts the streams begun.
    """

    def __init__(self, data: bytes, marks: list[tuple[int, float]], loops: int = 1, speed: float = 1.0) -> None:
        self.data, self.marks, self.loops, self.speed = data, marks, loops, speed
        self.clients = 0
        self.port = 0
        self._server: _Server | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.ts"

    def start(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.owner, server.down = self, threading.Event()
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.down.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def send(self, out: Any, down: threading.Event) -> None:
        """Write the stream to ``out`` at real time (times ``1 / speed``) until its end or ``down``."""
        duration = self.marks[-1][1] + (self.marks[-1][1] / max(1, len(self.marks) - 1))
        started = time.monotonic()
        ends = [pos for pos, _ in self.marks[1:]] + [len(self.data)]
        for loop in range(self.loops):
            for (pos, t), end in zip(self.marks, ends):
                wait = started + (loop * duration + t) / self.speed - time.monotonic()
                if wait > 0 and down.wait(wait):
                    return
                if down.is_set():
                    return
                # the bytes before the first packet (tables) go at the start of every loop
                out.write(self.data[0 if pos == self.marks[0][0] else pos:end])
                out.flush()


def silent_port() -> tuple[socket.socket, str]:
    """A listening socket that never answers (connections wait in its backlog): (socket, URL)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/live.ts"
