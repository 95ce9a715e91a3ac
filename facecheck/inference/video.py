"""Videos: sample frames evenly (PyAV), score each, and give a video-level score.

The video score is the mean of the frame scores, as DeepfakeBench does for
video-level evaluation. Frames go through the model's own preprocessing, so a
model trained on face crops is fed face crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facecheck.errors import DataError
from facecheck.extras import require

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def is_video_path(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class VideoPrediction:
    path: str
    p_fake: float | None = None
    label: str | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    n_frames: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "p_fake": self.p_fake,
            "label": self.label,
            "n_frames": self.n_frames,
            "frames": self.frames,
        }


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


def predict_video(detector: Any, path: Path, frames: int = 16) -> VideoPrediction:
    """Per-frame scores and their mean; an unreadable video gives ``error`` rather than an exception."""
    result = VideoPrediction(str(path))
    try:
        sampled, total = sample_frames(Path(path), frames)
    except DataError as exc:
        result.error = str(exc)
        return result
    predictions = detector.predict([image for _, _, image in sampled])
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
    # The same rule as every frame's verdict (the uncertain band included).
    result.label = detector.card.decide(result.p_fake, detector.threshold)
    return result
