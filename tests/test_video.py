"""Video input: even frame sampling, per-frame and video-level scores, clear errors."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.cli import main
from facecheck.inference.predictor import Detector
from facecheck.inference.video import predict_video, sample_frames

from .conftest import quick_config


def write_video(path: Path, frames: int, size: int = 64) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            pixels = np.full((size, size, 3), (index * 12) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    return tmp_path / "m.pt"


def test_frames_are_sampled_evenly(tmp_path: Path):
    frames, total = sample_frames(write_video(tmp_path / "v.mp4", 21), 5)
    assert total == 21
    assert [index for index, _, _ in frames] == [0, 5, 10, 15, 20]
    assert frames[2][1] == pytest.approx(1.0)


def test_video_score_is_the_mean_of_frame_scores(tmp_path: Path, model_file: Path):
    detector = Detector.load(model_file)
    result = predict_video(detector, write_video(tmp_path / "v.mp4", 12), frames=4)
    assert result.error is None and len(result.frames) == 4
    assert result.p_fake == pytest.approx(np.mean([f["p_fake"] for f in result.frames]))
    assert result.label == ("fake" if result.p_fake >= 0.5 else "real")


def test_bad_videos_get_clear_errors_and_never_stop_a_batch(tmp_path: Path, model_file: Path, capsys):
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 300)
    with av.open(str(tmp_path / "empty.mp4"), "w") as container:  # a video stream with no frames
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    good = write_video(tmp_path / "ok.mp4", 6)
    code = main(["predict", "--model", str(model_file), str(tmp_path / "junk.mp4"), str(tmp_path / "empty.mp4"),
                 str(good), "--format", "json", "--frames", "3"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert "unreadable video" in rows[0]["error"] or "no video stream" in rows[0]["error"]
    assert any(words in rows[1]["error"] for words in ("no frames", "no video stream"))
    assert rows[2]["n_frames"] == 6 and len(rows[2]["frames"]) == 3


def test_video_verdict_uses_the_cards_uncertain_band(tmp_path: Path, model_file: Path):
    """A video whose mean score lies inside the band is `uncertain`, as each such frame would be."""
    detector = Detector.load(model_file)
    video = write_video(tmp_path / "v.mp4", 8)
    p_fake = predict_video(detector, video, frames=4).p_fake
    detector.card = detector.card.with_values(threshold=p_fake, uncertain_band=(p_fake - 0.01, p_fake + 0.01))
    assert predict_video(detector, video, frames=4).label == "uncertain"
