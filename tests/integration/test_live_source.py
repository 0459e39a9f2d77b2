"""A live camera over HTTP (MJPEG, as IP cameras serve it) read by OpenCV, with reconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from framestream.services.probes import free_port
from streams.ingest.cameras import UrlSource
from streams.ingest.sources import LiveStreamSource

pytestmark = pytest.mark.integration

FRAMES_PER_CONNECTION = 4


def jpeg(level: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", np.full((96, 128, 3), level, np.uint8))
    assert ok
    return buffer.tobytes()


class MjpegCamera(ThreadingHTTPServer):
    """Serves a few frames per connection as multipart/x-mixed-replace, then hangs up."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.connections = 0
        super().__init__(("127.0.0.1", port), _MjpegHandler)


class _MjpegHandler(BaseHTTPRequestHandler):
    server: MjpegCamera

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.server.connections += 1
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for index in range(FRAMES_PER_CONNECTION):
            body = jpeg(40 * (index + 1))
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body))
            self.wfile.write(body + b"\r\n")
            self.wfile.flush()
            time.sleep(0.02)


@contextmanager
def serve(port: int) -> Iterator[MjpegCamera]:
    server = MjpegCamera(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_source(port: int) -> LiveStreamSource:
    config = UrlSource(
        kind="url",
        url=f"http://127.0.0.1:{port}/stream.mjpg",
        reconnect_initial_s=0.1,
        reconnect_max_s=0.4,
        timeout_s=5,
    )
    return LiveStreamSource(config)


def take(source: LiveStreamSource, count: int) -> list[np.ndarray]:
    frames = source.frames()
    try:
        return [next(frames).image for _ in range(count)]
    finally:
        frames.close()
        source.close()


def test_reads_frames_and_reconnects_when_the_stream_ends() -> None:
    port = free_port()
    with serve(port) as server:
        source = url_source(port)
        images = take(source, 2 * FRAMES_PER_CONNECTION + 2)
        assert server.connections >= 3
        assert source.reconnects >= 2
    assert all(image.shape == (96, 128, 3) for image in images)
    # Frames arrive in the order the camera sent them on each connection.
    levels = [round(image.mean()) for image in images[:FRAMES_PER_CONNECTION]]
    assert levels == sorted(levels) and levels[0] < levels[-1]


def test_keeps_retrying_until_the_camera_comes_up() -> None:
    port = free_port()
    source = url_source(port)
    frames = source.frames()
    got: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: got.append(next(frames).image), daemon=True)
    reader.start()
    time.sleep(1.0)  # nothing listens yet: the source backs off and retries
    assert not got and source.reconnects >= 2
    with serve(port):
        reader.join(timeout=15)
    source.close()
    frames.close()
    assert len(got) == 1 and got[0].shape == (96, 128, 3)


def test_reconnects_back_off_exponentially_and_report_each_loss() -> None:
    """Nothing listens: every open fails at once, and the waits between attempts double up to the cap."""
    from streams.ingest.sources import StreamEvents

    attempts: list[float] = []
    losses: list[str] = []
    config = UrlSource(
        kind="url", url=f"http://127.0.0.1:{free_port()}/x.mjpg", reconnect_initial_s=0.1, reconnect_max_s=0.4
    )
    events = StreamEvents(on_lost=losses.append, on_reconnect=lambda: attempts.append(time.monotonic()))
    source = LiveStreamSource(config, events=events)
    frames = source.frames()
    reader = threading.Thread(target=lambda: next(frames, None), daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while len(attempts) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    source.close()
    reader.join(timeout=10)
    assert len(attempts) >= 6 and len(losses) >= 6 and "cannot open" in losses[0]
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)][:5]
    # Waits of 0.1, 0.2, 0.4, 0.4, 0.4 s, each +-10 % jitter (plus a failed open each, a few ms).
    for gap, wait in zip(gaps, (0.1, 0.2, 0.4, 0.4, 0.4), strict=True):
        assert 0.9 * wait <= gap < wait + 0.5, gaps
