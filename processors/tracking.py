"""Multi-object tracking per camera: ByteTrack (``trackers`` 2.6.1) plus the scene analytics and
track rules, with the whole camera state as one JSON-able value for the track stage's table.

    tracker = SceneTracker(rule_set, TrackerConfig(frame_rate=10))
    step = tracker.update(frame_detections, state=None, tracked_at=utc_now())
    step.tracks, step.alerts, step.state  # produce the first two, then store the state

Restarts: the state holds the ByteTrack object itself (pickled, zlib, base64; read back with an
unpickler that admits only the tracker's own classes and numpy arrays), its id counter included,
and the last frame it consumed. A frame at or before that one is a replay whose outputs were
already delivered (the stage stores the state only after delivery): it is skipped. A frame
after it runs from exactly the state the previous run left, and ByteTrack is deterministic, so
a frame processed twice (outputs delivered, state not yet stored) gives the same ids twice.
A frame whose sequence went back but whose capture time moved on is a camera that restarted
its numbering: the state starts anew, with a new generation in its track ids.
"""

from __future__ import annotations

import base64
import importlib.metadata
import io
import math
import pickle
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import supervision as sv
from pydantic import BaseModel, ConfigDict
from trackers import ByteTrackTracker

from processors.nms import class_aware_nms
from processors.rules import CountWindow, TrackRuleEvaluator
from processors.scene import FrameInfo, Observation, SceneAnalyzer, TrackScene
from schemas.alerts import Alert
from schemas.detections import FrameDetections
from schemas.rules import RuleSet
from schemas.tracks import FrameTracks

TRACKERS_VERSION = "2.6.1"  # the pickled state is this version's objects; another version starts anew
STATE_VERSION = 1
# Exactly what a pickled ByteTrackTracker of 2.6.1 references: a class or function outside this set
# (e.g. one of trackers' download helpers) is refused, so a forged changelog record runs nothing.
_ALLOWED_GLOBALS = {
    ("trackers.core.bytetrack.tracker", "ByteTrackTracker"),
    ("trackers.core.bytetrack.tracklet", "ByteTrackTracklet"),
    ("trackers.utils.iou", "IoU"),
    ("trackers.utils.kalman_filter", "KalmanFilter"),
    ("trackers.utils.motion_models", "KalmanMotionModel"),
    ("trackers.utils.motion_models", "ScalableProcessNoise"),
    ("trackers.utils.state_representations", "XYXYStateEstimator"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's settings in seconds and scores; checked here so a bad value fails at start."""

    frame_rate: float = 10.0  # nominal fps: scales the Kalman step between frames
    lost_track_s: float = 2.0  # a track unseen this long (capture time) is dropped
    activation_score: float = 0.5  # an unmatched detection at or above it starts a track
    high_score: float = 0.5  # first association stage at or above, second (recovery) below
    match_iou: float = 0.1  # least IoU between a prediction and a detection to match
    duplicate_iou: float = 0.7  # boxes of different classes overlapping this much are one object (one track)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ValueError(f"frame_rate must be > 0, got {self.frame_rate}")
        if not (math.isfinite(self.lost_track_s) and self.lost_track_s > 0):
            raise ValueError(f"lost_track_s must be > 0, got {self.lost_track_s}")
        for name in ("activation_score", "high_score", "match_iou", "duplicate_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")

    def new_tracker(self) -> ByteTrackTracker:
        return ByteTrackTracker(
            lost_track_buffer=max(1, round(self.lost_track_s * 30)),  # counted in 30 fps frames
            frame_rate=self.frame_rate,
            track_activation_threshold=self.activation_score,
            minimum_consecutive_frames=1,  # every activated detection has an id from its first frame
            minimum_iou_threshold=self.match_iou,
            high_conf_det_threshold=self.high_score,
        )


class TrackerState(BaseModel):
    """One camera's tracking state: the value stored per camera in the track stage's table."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = STATE_VERSION
    trackers_version: str = TRACKERS_VERSION
    generation: int  # capture time (epoch ms) of the frame this state started on: part of every track id
    last_seq: int
    last_captured_at: float
    tracker: str  # the pickled ByteTrackTracker
    tracks: dict[str, TrackScene] = {}
    counts: dict[str, CountWindow] = {}


@dataclass(frozen=True)
class TrackStep:
    tracks: FrameTracks | None  # None: a replayed frame, skipped
    alerts: list[Alert]
    state: TrackerState
    outcome: Literal["tracked", "replayed", "restarted"]


class _TrackerUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"tracker state may not reference {module}.{name}")


def dump_tracker(tracker: ByteTrackTracker) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(tracker, protocol=5), 6)).decode("ascii")


def load_tracker(text: str) -> ByteTrackTracker:
    """The tracker of a stored state; raises ``ValueError`` when it is not one."""
    try:
        tracker = _TrackerUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load()
    except (pickle.UnpicklingError, zlib.error, ValueError, EOFError, AttributeError, ImportError) as error:
        raise ValueError(f"unreadable tracker state: {error}") from error
    if not isinstance(tracker, ByteTrackTracker):
        raise ValueError(f"tracker state holds a {type(tracker).__name__}, not a ByteTrackTracker")
    return tracker


def check_trackers_version() -> None:
    installed = importlib.metadata.version("trackers")
    if installed != TRACKERS_VERSION:
        raise RuntimeError(f"processors/tracking.py was written for trackers=={TRACKERS_VERSION}, found {installed}")


class SceneTracker:
    """Tracks, scene events and track alerts for any number of cameras, one frame at a time."""

    def __init__(self, rule_set: RuleSet, config: TrackerConfig | None = None) -> None:
        check_trackers_version()
        self.config = config or TrackerConfig()
        self.scene = SceneAnalyzer(rule_set.lines, rule_set.zones)
        self.rules = TrackRuleEvaluator(rule_set)
        self._live: dict[str, tuple[str, ByteTrackTracker]] = {}  # camera -> (its stored blob, that tracker)

    def update(self, frame: FrameDetections, state: TrackerState | None, *, tracked_at: datetime) -> TrackStep:
        """The frame's tracks and alerts and the camera's next state; ``state`` is not modified."""
        captured = frame.captured_at.timestamp()
        outcome: Literal["tracked", "restarted"] = "tracked"
        if state is not None and frame.frame_seq <= state.last_seq:
            if captured <= state.last_captured_at:
                return TrackStep(None, [], state, "replayed")
            state, outcome = None, "restarted"  # the camera numbers its frames from the start again
        if state is not None and state.trackers_version != TRACKERS_VERSION:
            state, outcome = None, "restarted"
        if state is None:
            state = self._fresh(frame)
        tracker = self._tracker(frame.camera_id, state)
        observations = self._track(tracker, frame, state.generation)
        info = FrameInfo(frame.camera_id, frame.frame_seq, frame.captured_at, frame.width, frame.height)
        alive = {
            _track_id(frame.camera_id, state.generation, t.tracker_id) for t in tracker.tracks if t.tracker_id >= 0
        }
        step = self.scene.observe(info, observations, state.tracks, alive)
        tracks = FrameTracks(
            event_id=frame.event_id,
            camera_id=frame.camera_id,
            frame_seq=frame.frame_seq,
            captured_at=frame.captured_at,
            tracked_at=tracked_at,
            width=frame.width,
            height=frame.height,
            objects=tuple(step.objects),
            crossings=tuple(step.crossings),
            visits=tuple(step.visits),
            occupancy=tuple(step.occupancy),
        )
        judged = self.rules.evaluate(tracks, step.scenes, state.counts, raised_at=tracked_at)
        blob = dump_tracker(tracker)
        self._live[frame.camera_id] = (blob, tracker)
        new_state = TrackerState(
            generation=state.generation,
            last_seq=frame.frame_seq,
            last_captured_at=captured,
            tracker=blob,
            tracks=judged.scenes,
            counts=judged.counts,
        )
        return TrackStep(tracks, judged.alerts, new_state, outcome)

    def _fresh(self, frame: FrameDetections) -> TrackerState:
        generation = round(frame.captured_at.timestamp() * 1000)
        blob = dump_tracker(self.config.new_tracker())
        return TrackerState(generation=generation, last_seq=-1, last_captured_at=0.0, tracker=blob)

    def _tracker(self, camera_id: str, state: TrackerState) -> ByteTrackTracker:
        """The live tracker when it is the stored state's, else the stored one (after a restart, or a
        failed delivery that left the table behind the live object)."""
        live = self._live.get(camera_id)
        if live is not None and live[0] == state.tracker:
            return live[1]
        return load_tracker(state.tracker)

    def _track(self, tracker: ByteTrackTracker, frame: FrameDetections, generation: int) -> list[Observation]:
        """Track ids by detection. The detector's NMS is per class, so one object may come as two boxes
        (a dog that is also a 'person'); ByteTrack is class-agnostic and would start a second track on
        the copy, so only the best-scored of boxes overlapping ``duplicate_iou`` is tracked."""
        count = len(frame.detections)
        boxes = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in frame.detections], dtype=np.float64)
        scores = np.array([d.score for d in frame.detections], dtype=np.float64)
        kept = np.sort(
            class_aware_nms(boxes, scores, np.zeros(count, dtype=np.int32), self.config.duplicate_iou, count)
        )
        detections = sv.Detections(
            xyxy=boxes.reshape(-1, 4)[kept],
            confidence=scores[kept],
            class_id=np.array([d.class_id for d in frame.detections], dtype=int)[kept],
            data={"index": kept},
        )
        result = tracker.update(detections, timestamp=frame.captured_at.timestamp())
        _confirm_new_tracks(tracker, result)
        owner = {int(i): int(t) for i, t in zip(result.data.get("index", []), result.tracker_id, strict=True)}
        observations = []
        for index, detection in enumerate(frame.detections):
            number = owner.get(index, -1)
            box = detection.box
            observations.append(
                Observation(
                    track_id=_track_id(frame.camera_id, generation, number) if number >= 0 else None,
                    detection_id=detection.detection_id,
                    class_name=detection.class_name,
                    score=detection.score,
                    box=(box.x1, box.y1, box.x2, box.y2),
                )
            )
        return observations


def _confirm_new_tracks(tracker: ByteTrackTracker, result: sv.Detections) -> None:
    """Give a track started on this frame its id now, not on its second sighting.

    trackers 2.6.1 spawns a tracklet with ``tracker_id`` -1 and numbers it when it is matched
    again, even with ``minimum_consecutive_frames=1``: the first detection of every object would
    carry no id. Relies on 2.6.1's ``tracks``, ``tracker_id`` and ``_allocate_tracker_id``
    (``check_trackers_version`` pins it). Spawned tracklets start at their detection's box."""
    unnumbered = [index for index, number in enumerate(result.tracker_id) if number < 0]
    if not unnumbered:
        return
    spawned = [t for t in tracker.tracks if t.tracker_id < 0 and t.time_since_update == 0]
    for index in unnumbered:
        box = result.xyxy[index]
        tracklet = next((t for t in spawned if np.allclose(t.get_state_bbox(), box, atol=1e-6)), None)
        if tracklet is not None:
            tracklet.tracker_id = tracker._allocate_tracker_id()
            result.tracker_id[index] = tracklet.tracker_id
            spawned.remove(tracklet)


def _track_id(camera_id: str, generation: int, number: int) -> str:
    return f"{camera_id}:{generation}:{number}"
