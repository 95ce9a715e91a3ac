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


def test_a_video_without_a_face_in_any_frame_says_so(tmp_path: Path, model_file: Path):
    """Grey frames and a face check: the video's verdict is "no face", with the frames' reason, never real/fake."""
    from facecheck.data.faces import face_detector_problem

    if face_detector_problem():
        pytest.skip(face_detector_problem())
    detector = Detector.load(model_file, face_check=True)
    result = predict_video(detector, write_video(tmp_path / "v.mp4", 8), frames=3)
    assert result.label == "no face" and result.notice.startswith("no face found in any sampled frame")
    assert result.to_dict()["notice"] == result.notice and result.p_fake is not None


def test_faces_are_linked_into_tracks_and_the_most_suspicious_steady_track_decides():
    from facecheck.inference.predictor import FaceResult
    from facecheck.inference.video import iou, link_tracks

    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    left = lambda p: FaceResult((0, 0, 50, 50), 0.99, p, None)  # noqa: E731
    right = lambda p: FaceResult((100, 0, 150, 50), 0.99, p, None)  # noqa: E731
    moved = FaceResult((104, 2, 154, 52), 0.99, 0.9, None)  # the right face, a little further on
    frames = [[left(0.1), right(0.8)], [left(0.2), moved], [left(0.3)], [right(0.7)]]
    tracks = link_tracks(frames)
    assert [t.frames for t in tracks] == [[0, 1, 2], [0, 1, 3]]  # a face missed in a frame continues its track
    assert tracks[0].p_fake == pytest.approx(0.2) and tracks[1].p_fake == pytest.approx(0.8)
