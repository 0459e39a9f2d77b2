"""A real RTSP server streaming H.264 (GStreamer's gst-rtsp-server), for tests and demos.

Runs with the system Python, where Debian's python3-gi and gir1.2-gst-rtsp-server-1.0 live
(installed by scripts/setup.sh), not with the project's virtualenv::

    /usr/bin/python3 infra/rtsp/rtsp_server.py --port 8554 --path /cam --width 640 --height 360 --fps 10

Serves a live test pattern (a bouncing ball) encoded by x264 with
zero-latency tuning and a key frame every second, over RTSP with TCP-interleaved transport only,
so a client that does not ask for TCP gets no media. Prints ``ready rtsp://...`` once listening
and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def pipeline(width: int, height: int, fps: int) -> str:
    return (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 "
        "! videoconvert "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=1000 "
        "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", action="append", help="mount point, e.g. /cam (repeatable; default /cam)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    paths = args.path or ["/cam"]
    for path in paths:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(pipeline(args.width, args.height, args.fps))
        factory.set_shared(True)  # every client of a mount sees the same live stream
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    for path in paths:
        print(f"ready rtsp://{args.host}:{args.port}{path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
