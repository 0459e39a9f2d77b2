"""``framestream bench ingest``: ingest CPU per camera, and the most cameras one core sustains.

    framestream bench ingest --cameras 8 --resolution 720p --fps 10
    framestream bench ingest --resolution 1080p --fps 5 --find-max --json var/bench/ingest-1080p.json
    framestream bench ingest --source synthetic --cameras 16     # encoding only, no decoding

Simulates N cameras in this process, one thread each, exactly as ``framestream ingest`` runs
them up to the producer: the camera's source, fps sampling, resize/JPEG encoding/image
statistics (``encode_frame``), the record headers and the health accounting. The default source
is a looping H.264 clip per camera at the chosen resolution and fps (made once with GStreamer's
x264 under var/bench/, or OpenCV's MPEG-4 writer without GStreamer), so every frame is decoded
as from an RTSP camera; ``--source synthetic`` generates frames instead (no decoding).

No broker: the Kafka produce call is left out (librdkafka copies the ~100-300 kB JPEG into its
queue and batches; its cost is small beside decoding and encoding, and a broker on the same two
cores would distort the figure). The 16-camera integration test runs the same path through a
real broker (tests/integration/test_ingest_scale.py).

CPU: this process's user + system time over the measured window (after a warm-up) per frame
produced, times the target fps: cores per camera. ``--find-max`` pins the process to one core
(``sched_setaffinity``) and searches the camera count upward (doubling, then bisecting) until a
camera falls behind: achieved fps under 85 % of the target, or the median frame age over one
frame interval. Also printed: 1 / CPU per camera, the cameras a fully used core would take by CPU
time alone -- on a shared, busy machine the search stops early (the pinned core is shared too)
while CPU time per camera barely moves. Repeat with ``--repeat`` and read the medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from framestream.bench.report import percentile, write_json
from framestream.settings import REPO_ROOT, Settings
from processors.camera_health import FrameProduced
from processors.sampling import FpsSampler
from streams.ingest.cameras import Camera, FileSource, SyntheticSource
from streams.ingest.frames import encode_frame
from streams.ingest.health import IngestHealth
from streams.ingest.producer import SAMPLING_MARGIN
from streams.ingest.sources import open_source

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
BITRATE_KBPS = {"720p": 2000, "1080p": 4000}  # typical of IP cameras
CLIP_SECONDS = 10
CLIP_DIR = REPO_ROOT / "var" / "bench"
# A camera keeps up while it achieves this share of its target fps. Not 100 %: a stream at exactly
# the target rate loses a few frames to the sampler whenever scheduling jitter brings one in early.
KEEP_UP_FPS = 0.85
# Pinned to one core and behind while using less than this much of it: the core was busy elsewhere.
STARVED_BELOW_CORES = 0.8
_GST_CLIP = """
import sys, gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
width, height, fps, frames, kbps, path = sys.argv[1:]
pipeline = Gst.parse_launch(
    f"videotestsrc num-buffers={frames} pattern=smpte horizontal-speed=6 "
    f"! video/x-raw,width={width},height={height},framerate={fps}/1 ! videoconvert "
    f"! x264enc bitrate={kbps} key-int-max={fps} tune=zerolatency speed-preset=veryfast "
    f"! h264parse ! mp4mux ! filesink location={path}"
)
pipeline.set_state(Gst.State.PLAYING)
message = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipeline.set_state(Gst.State.NULL)
sys.exit(0 if message is not None and message.type == Gst.MessageType.EOS else 1)
"""


@dataclass
class CameraStats:
    produced_at: list[float] = field(default_factory=list)
    ages_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Trial:
    cameras: int
    target_fps: float
    wall_s: float
    cpu_s: float
    fps_by_camera: tuple[float, ...]
    age_p50_ms: float
    age_p95_ms: float

    @property
    def cpu_ms_per_frame(self) -> float:
        frames = sum(self.fps_by_camera) * self.wall_s
        return self.cpu_s * 1000 / frames if frames else float("nan")

    @property
    def cpu_per_camera(self) -> float:
        """Cores one camera takes at its target fps: CPU per frame x target fps. Per frame, so a
        trial starved by other processes (fewer frames, less CPU) still gives the right cost."""
        return self.cpu_ms_per_frame * self.target_fps / 1000

    @property
    def min_fps(self) -> float:
        return min(self.fps_by_camera)

    @property
    def cores_used(self) -> float:
        return self.cpu_s / self.wall_s

    def starved(self) -> bool:
        """Fell behind while this process got well under a core: other processes had the CPU."""
        return not self.keeps_up() and self.cores_used < STARVED_BELOW_CORES

    def keeps_up(self) -> bool:
        return self.min_fps >= KEEP_UP_FPS * self.target_fps and self.age_p50_ms <= 1000 / self.target_fps


def next_count(passed: int | None, failed: int | None, limit: int) -> int | None:
    """The next camera count to try: doubling until one fails, then bisecting; None when found."""
    if failed is None:
        candidate = 1 if passed is None else passed * 2
        return candidate if candidate <= limit else None
    low = passed or 0
    return None if failed - low <= 1 else (low + failed) // 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="framestream bench ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=8, help="cameras at once (without --find-max)")
    parser.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="720p")
    parser.add_argument("--fps", type=float, default=10.0, help="each camera's target fps (5-15)")
    parser.add_argument(
        "--stream-fps", type=int, default=None, help="the cameras' own frame rate (default: --fps); above it, sampled"
    )
    parser.add_argument("--source", choices=("h264", "synthetic"), default="h264")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window of each trial")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    parser.add_argument("--jpeg-quality", type=int, default=85)
    parser.add_argument("--find-max", action="store_true", help="pin to one core; search the most cameras it sustains")
    parser.add_argument("--max-cameras", type=int, default=64, help="upper bound of the search")
    parser.add_argument("--repeat", type=int, default=1, help="trials per count (medians are reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def make_clip(resolution: str, fps: int) -> Path:
    """A looping H.264 clip (GStreamer x264), or MPEG-4 from OpenCV where GStreamer is missing."""
    width, height = RESOLUTIONS[resolution]
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    h264 = CLIP_DIR / f"ingest-{resolution}-{fps}fps.h264.mp4"
    if h264.exists():
        return h264
    command = ["/usr/bin/python3", "-c", _GST_CLIP, str(width), str(height), str(fps), str(fps * CLIP_SECONDS)]
    try:
        done = subprocess.run([*command, str(BITRATE_KBPS[resolution]), str(h264)], capture_output=True, timeout=180)
        if done.returncode == 0 and h264.exists():
            return h264
    except (OSError, subprocess.TimeoutExpired):
        pass
    h264.unlink(missing_ok=True)
    mpeg4 = CLIP_DIR / f"ingest-{resolution}-{fps}fps.mpeg4.mp4"
    if not mpeg4.exists():
        print("GStreamer x264 not available: the clip is MPEG-4 from OpenCV (cheaper to decode than H.264)")
        writer = cv2.VideoWriter(str(mpeg4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
        for index in range(fps * CLIP_SECONDS):
            image = np.ascontiguousarray(np.broadcast_to(np.roll(ramp, index * 8, axis=1), (height, width, 3)))
            writer.write(image)
        writer.release()
    return mpeg4


def make_cameras(args: argparse.Namespace, count: int, clip: Path | None) -> list[Camera]:
    width, height = RESOLUTIONS[args.resolution]
    cameras = []
    for index in range(count):
        if clip is not None:
            source = FileSource(kind="file", path=clip, loop=True)
        else:
            source = SyntheticSource(kind="synthetic", width=width, height=height, seed=index)
        cameras.append(Camera(id=f"bench-{index}", source=source, fps=args.fps, jpeg_quality=args.jpeg_quality))
    return cameras


def run_camera(camera: Camera, stop: threading.Event, stats: CameraStats, health: IngestHealth) -> None:
    """What a camera thread of ``CameraIngest`` does, up to (not including) ``Producer.produce``."""
    source = open_source(camera, lambda *unused: None, stop)
    sampler = FpsSampler(camera.fps)
    paced = source.rate_fps is not None and source.rate_fps <= camera.fps * SAMPLING_MARGIN
    needs_sampling = not paced and not source.sample_before_decoding(sampler.keep, lambda: None)
    frames = source.frames()
    try:
        for seq, captured in enumerate(frames):
            if needs_sampling and not sampler.keep(captured.captured_at.timestamp()):
                continue
            encoded = encode_frame(camera, captured, seq)
            encoded.meta.to_headers()
            now = time.time()
            health.observe(camera.id, FrameProduced(captured.captured_at.timestamp(), now))
            stats.produced_at.append(now)
            stats.ages_ms.append((now - captured.captured_at.timestamp()) * 1000)
    finally:
        frames.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_trial(args: argparse.Namespace, count: int, clip: Path | None) -> Trial:
    cameras = make_cameras(args, count, clip)
    stop = threading.Event()
    stats = {camera.id: CameraStats() for camera in cameras}
    health = IngestHealth(cameras, "bench", report_every_s=3600)
    threads = [
        threading.Thread(target=run_camera, args=(camera, stop, stats[camera.id], health), daemon=True)
        for camera in cameras
    ]
    for thread in threads:
        thread.start()
    time.sleep(args.warmup)
    start, cpu_start = time.time(), cpu_seconds()
    time.sleep(args.seconds)
    end, cpu_end = time.time(), cpu_seconds()
    stop.set()
    for thread in threads:
        thread.join()
    fps = []
    ages: list[float] = []
    for camera_stats in stats.values():
        inside = [i for i, t in enumerate(camera_stats.produced_at) if start <= t < end]
        fps.append(len(inside) / (end - start))
        ages.extend(camera_stats.ages_ms[i] for i in inside)
    return Trial(
        cameras=count,
        target_fps=args.fps,
        wall_s=end - start,
        cpu_s=cpu_end - cpu_start,
        fps_by_camera=tuple(fps),
        age_p50_ms=percentile(ages, 0.5),
        age_p95_ms=percentile(ages, 0.95),
    )


def median_trial(args: argparse.Namespace, count: int, clip: Path | None) -> Trial:
    trials = [run_trial(args, count, clip) for _ in range(args.repeat)]
    trials.sort(key=lambda trial: trial.cpu_per_camera)
    trial = trials[len(trials) // 2]
    print(
        f"  {count:>3} cameras: {trial.cpu_per_camera * 100:5.1f} % of a core per camera "
        f"({trial.cpu_ms_per_frame:5.1f} CPU-ms per frame), "
        f"fps min {trial.min_fps:5.2f} / {args.fps:g}, frame age p50 {trial.age_p50_ms:6.1f} ms "
        f"p95 {trial.age_p95_ms:6.1f} ms, {trial.cores_used:4.2f} cores used  {_verdict(trial)}",
        flush=True,
    )
    return trial


def find_max(args: argparse.Namespace, clip: Path | None) -> tuple[int, list[Trial]]:
    """The most cameras one core keeps up with, and every trial on the way."""
    passed: int | None = None
    failed: int | None = None
    trials = []
    while (count := next_count(passed, failed, args.max_cameras)) is not None:
        trial = median_trial(args, count, clip)
        trials.append(trial)
        if trial.keeps_up():
            passed = count
        else:
            failed = count
    return passed or 0, trials


def main(argv: list[str], settings: Settings) -> int:
    args = parse_args(argv)
    if args.find_max:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})  # before any camera thread: they inherit it
        cv2.setNumThreads(1)
    stream_fps = args.stream_fps or round(args.fps)
    clip = make_clip(args.resolution, stream_fps) if args.source == "h264" else None
    what = f"{args.resolution} at {args.fps:g} fps from {clip.name if clip else 'synthetic frames'}"
    figures: dict[str, object] = {
        "resolution": args.resolution,
        "fps": args.fps,
        "stream_fps": stream_fps if clip else args.fps,
        "source": args.source,
    }
    if args.find_max:
        print(f"bench ingest: the most cameras one core sustains, {what}")
        best, trials = find_max(args, clip)
        per_camera = statistics.median(trial.cpu_per_camera for trial in trials)
        print(
            f"one core sustains {best} cameras; ingest CPU per camera {per_camera * 100:.1f} % of a core (median), "
            f"{1 / per_camera:.1f} cameras per core by CPU time"
        )
        figures |= {
            "cameras_per_core": best,
            "cameras_per_core_by_cpu": 1 / per_camera,
            "cpu_per_camera_cores": per_camera,
            "trials": [_trial(t) for t in trials],
        }
    else:
        print(f"bench ingest: {args.cameras} cameras, {what}, {os.cpu_count()} cores")
        trial = median_trial(args, args.cameras, clip)
        print(
            f"ingest CPU per camera {trial.cpu_per_camera * 100:.1f} % of a core: "
            f"about {1 / trial.cpu_per_camera:.0f} cameras per fully used core"
        )
        figures |= {"cameras": args.cameras, "cpu_per_camera_cores": trial.cpu_per_camera, "trials": [_trial(trial)]}
    if args.json is not None:
        write_json(args.json, figures)
    return 0


def _verdict(trial: Trial) -> str:
    if trial.keeps_up():
        return "keeps up"
    return "FALLS BEHIND (starved: other processes had the core)" if trial.starved() else "FALLS BEHIND"


def _trial(trial: Trial) -> dict[str, object]:
    return {
        "cameras": trial.cameras,
        "cpu_per_camera_cores": round(trial.cpu_per_camera, 4),
        "cpu_ms_per_frame": round(trial.cpu_ms_per_frame, 2),
        "min_fps": round(trial.min_fps, 2),
        "frame_age_p50_ms": round(trial.age_p50_ms, 1),
        "frame_age_p95_ms": round(trial.age_p95_ms, 1),
        "cores_used": round(trial.cores_used, 3),
        "keeps_up": trial.keeps_up(),
        "starved": trial.starved(),
    }
