"""Videos: sample frames evenly (PyAV), score each, and give a video-level score.

The video score is the mean of the frame scores, as DeepfakeBench does for
video-level evaluation. Frames go through the model's own preprocessing, so a
model trained on face crops is fed face crops. A model that judges faces also
links each frame's faces into tracks (a face continues the track whose last box
it overlaps most, intersection over union at least ``TRACK_IOU``); each track
gets the mean of its faces' scores and its verdict, and the most suspicious
track seen in at least two sampled frames (any, with one frame sampled) decides
the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facecheck.errors import DataError
from facecheck.extras import require
from facecheck.inference.protocol import AnyDetector

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def is_video_path(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


TRACK_IOU = 0.3


@dataclass
class FaceTrack:
    """One face followed through the sampled frames."""

    frames: list[int] = field(default_factory=list)  # indices into the sampled frames
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    p_fake: float | None = None
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "boxes": self.boxes, "p_fake": self.p_fake, "label": self.label}


@dataclass
class VideoPrediction:
    path: str
    p_fake: float | None = None
    label: str | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    n_frames: int = 0
    error: str | None = None
    tracks: list[FaceTrack] | None = None
    decided_by: int | None = None  # the track that decided the verdict

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        result = {
            "path": self.path,
            "p_fake": self.p_fake,
            "label": self.label,
            "n_frames": self.n_frames,
            "frames": self.frames,
        }
        if self.tracks is not None:
            result["tracks"] = [track.to_dict() for track in self.tracks]
            result["decided_by"] = self.decided_by
        return result


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link_tracks(per_frame: list[list[Any]]) -> list[FaceTrack]:
    """Faces (with ``box`` and ``p_fake``) of successive frames linked greedily by box overlap."""
    tracks: list[FaceTrack] = []
    for frame, faces in enumerate(per_frame):
        open_tracks = [t for t in tracks if t.frames[-1] < frame]  # a face missed in a frame may come back
        taken: set[int] = set()
        for face in faces:
            if face.p_fake is None:
                continue
            overlaps = [(iou(face.box, t.boxes[-1]), i) for i, t in enumerate(open_tracks) if i not in taken]
            best = max(overlaps, default=(0.0, -1))
            if best[0] >= TRACK_IOU:
                taken.add(best[1])
                track = open_tracks[best[1]]
            else:
                track = FaceTrack()
                tracks.append(track)
            track.frames.append(frame)
            track.boxes.append(tuple(face.box))
            track.scores.append(face.p_fake)
    for track in tracks:
        track.p_fake = float(np.mean(track.scores))
    return tracks


def sample_frames(path: Path, count: int) -> tuple[list[tuple[int, float, Image.Image]], int]:
    """``count`` frames spread evenly over the video as ``(index, seconds, image)``, and the frame total."""
    require("av", "video")
    import av

    if count < 1:
        raise DataError("--frames must be at least 1")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            # Counting packets is cheap (no decoding) and exact where the header's count is missing.
            total = sum(1 for packet in container.demux(stream) if packet.size)
        if total == 0:
            raise DataError(f"{path}: the video has no frames")
        wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        frames = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    seconds = float(frame.time) if frame.time is not None else float("nan")
                    frames.append((index, seconds, frame.to_image().convert("RGB")))
                if len(frames) == len(wanted):
                    break
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable video ({str(exc)[:160]})") from None
    if not frames:
        raise DataError(f"{path}: no frame could be decoded")
    return frames, total


def predict_video(
    detector: AnyDetector, path: Path, frames: int = 16, threshold: float | None = None
) -> VideoPrediction:
    """Per-frame scores and their mean (and face tracks); an unreadable video gives ``error``, no exception.

    ``threshold``: decide at this p_fake instead of the card's own (as :meth:`Detector.predict`)."""
    result = VideoPrediction(str(path))
    try:
        sampled, total = sample_frames(Path(path), frames)
    except DataError as exc:
        result.error = str(exc)
        return result
    predictions = detector.predict([image for _, _, image in sampled], threshold=threshold)
    scores = []
    for (index, seconds, _), prediction in zip(sampled, predictions, strict=True):
        entry: dict[str, Any] = {"index": index, "time_s": None if np.isnan(seconds) else round(seconds, 3)}
        if prediction.error is None:
            entry["p_fake"] = prediction.p_fake
            scores.append(prediction.p_fake)
        else:
            entry["error"] = prediction.error.split(": ", 1)[-1]
        result.frames.append(entry)
    result.n_frames = total
    if not scores:
        result.error = f"{path}: no sampled frame could be scored ({result.frames[0].get('error')})"
        return result
    result.p_fake = float(np.mean(scores))
    if any(p.faces is not None for p in predictions):
        result.tracks = link_tracks([p.faces or [] for p in predictions])
        for track in result.tracks:
            track.label = detector.card.decide(track.p_fake, threshold)
        # A face seen once among many sampled frames is more likely a false detection than a person.
        steady = [i for i, t in enumerate(result.tracks) if len(t.frames) >= min(2, len(sampled))]
        if steady:
            result.decided_by = max(steady, key=lambda i: result.tracks[i].p_fake)
            result.p_fake = result.tracks[result.decided_by].p_fake
    # The same rule as every frame's verdict (the uncertain band included).
    result.label = detector.card.decide(result.p_fake, threshold)
    return result
