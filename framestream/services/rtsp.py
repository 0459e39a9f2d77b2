"""A local RTSP camera: GStreamer's RTSP server streaming H.264 (``infra/rtsp/rtsp_server.py``).

    with RtspCamera(log_path=Path("var/logs/rtsp.log"), paths=("/a", "/b")) as camera:
        camera.url("/a")          # rtsp://127.0.0.1:<port>/a
        camera.stop(); camera.start()   # the camera goes away and comes back on the same port

The server runs with the system Python (``/usr/bin/python3``), where Debian's python3-gi and
the GStreamer packages live; ``scripts/setup.sh`` installs them. ``rtsp_unavailable()`` says
what is missing when they are not there.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from framestream.child_process import REPO_ROOT, ChildProcess, ChildProcessFailed
from framestream.services.probes import LOCALHOST, free_port

SERVER_SCRIPT = REPO_ROOT / "infra" / "rtsp" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
# The Debian packages the server needs (scripts/setup.sh installs them).
DEBIAN_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-plugins-ugly",
)
_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "missing = [e for e in ('videotestsrc', 'x264enc', 'h264parse', 'rtph264pay') if not Gst.ElementFactory.find(e)];"
    "print(' '.join(missing))"
)


def rtsp_unavailable() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists() and shutil.which("python3") is None:
        return "no system python3"
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {SYSTEM_PYTHON}: {error}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer RTSP server not importable ({last}); install: apt-get install {' '.join(DEBIAN_PACKAGES)}"
    if result.stdout.strip():
        return f"GStreamer elements missing: {result.stdout.strip()}; install: {' '.join(DEBIAN_PACKAGES)}"
    return None


class RtspCamera:
    """The RTSP server as a child process on a fixed port, restartable on that port."""

    def __init__(
        self,
        log_path: Path,
        *,
        paths: Sequence[str] = ("/cam",),
        port: int | None = None,
        width: int = 640,
        height: int = 360,
        fps: int = 10,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.paths = tuple(paths)
        self.ready_timeout_s = ready_timeout_s
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--host", LOCALHOST]
        command += ["--width", str(width), "--height", str(height), "--fps", str(fps)]
        for path in self.paths:
            command += ["--path", path]
        self.process = ChildProcess(command, log_path=log_path, grace_s=5.0)

    def url(self, path: str | None = None) -> str:
        return f"rtsp://{LOCALHOST}:{self.port}{path or self.paths[0]}"

    def start(self) -> RtspCamera:
        """Start the server and wait until it listens (it prints ``ready`` for every mount)."""
        self.process.start()
        deadline = time.monotonic() + self.ready_timeout_s
        while self.process.log_since_start().count("ready rtsp://") < len(self.paths):
            self.process.raise_if_exited()
            if time.monotonic() > deadline:
                self.process.stop()
                raise ChildProcessFailed(
                    f"RTSP server not ready after {self.ready_timeout_s:.0f}s; see {self.process.log_path}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        """The camera dies at once (power cut, crash): no RTSP TEARDOWN, connections just drop."""
        self.process.kill()

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
