"""The scoring pipeline (issue 27): batched face search, compiled MTCNN stages, predict's overlapped batches.

Each fast path is checked against the reference it replaces: facenet-pytorch's MTCNN one picture at a time,
and predict one picture per batch with nothing overlapped.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facecheck.data import face_engine
from facecheck.data import faces as faces_module
from facecheck.inference.predictor import Detector

from .conftest import SHARED_DATA

DFDC = SHARED_DATA / "dfdc-faces"


def test_last_stage_nms_keeps_each_pictures_faces_apart():
    # Picture 0 has a face at 150..230 (x and y); picture 1 a face reaching past its top-left corner (-80..20).
    # facenet's shift by index x (largest coordinate + 1) = 231 puts picture 1's box at 151..251: over picture 0's.
    boxes = torch.tensor([[150.0, 150.0, 230.0, 230.0], [-80.0, -80.0, 20.0, 20.0]])
    scores = torch.tensor([0.95, 0.99])
    images = torch.tensor([0, 1])
    from facenet_pytorch.models.utils.detect_face import nms_numpy

    shifted = (boxes + images[:, None] * (boxes.max() + 1)).numpy()
    assert len(nms_numpy(shifted, scores.numpy(), 0.7, "Min")) == 1  # the defect: one face suppressed
    kept = face_engine.nms_each_image(boxes, scores, images, 0.7, "Min")
    assert sorted(kept.tolist()) == [0, 1]
    # Inside one picture it is facenet's NMS: the weaker of two overlapping boxes goes.
    same = face_engine.nms_each_image(boxes[[0, 0]] + torch.tensor([[0.0], [2.0]]), scores, torch.tensor([3, 3]),
                                      0.7, "Min")  # fmt: skip
    assert same.tolist() == [1]


def test_crops_and_pyramid_levels_from_summed_area_tables_are_interpolate_bit_for_bit():
    """The fast face search resamples every RNet/ONet crop and pyramid level from one summed-area table per
    picture; facenet calls interpolate(mode="area") once per box. Same float32 numbers, not just close."""
    from torch.nn.functional import interpolate

    generator = np.random.default_rng(0)
    pictures = generator.integers(0, 256, (2, 301, 407, 3), dtype=np.uint8)
    tables = face_engine.summed_area_tables(pictures)
    as_float = torch.from_numpy(pictures).permute(0, 3, 1, 2).float()
    for height, width in ((181, 245), (129, 174), (13, 18), (301, 407), (400, 500)):  # down, equal and up
        expected = interpolate(as_float, size=(height, width), mode="area")
        assert torch.equal(face_engine.area_resize(tables, height, width), expected)
    top = np.array([0, 0, 290, 17, 120, 5])
    left = np.array([0, 3, 400, 250, 9, 390])
    bottom = np.array([301, 1, 301, 200, 143, 6])  # whole picture, one row, a corner, wide, tall, tiny
    right = np.array([407, 60, 407, 407, 20, 407])
    for side in (24, 48):
        # Boxes of both pictures in one call, interleaved, as a batch's boxes come.
        pictures = np.array([1, 0, 1, 0, 1, 1])
        crops = face_engine.area_crops(tables, pictures, top, bottom, left, right, side)
        for index, (picture, y0, y1, x0, x1) in enumerate(zip(pictures, top, bottom, left, right, strict=True)):
            expected = interpolate(as_float[picture : picture + 1, :, y0:y1, x0:x1], size=(side, side), mode="area")
            assert torch.equal(crops[index], expected[0]), (side, index)


COMPARE_STAGES = """
import sys, torch
from facenet_pytorch import MTCNN
from facecheck.data import face_engine, faces
faces.verify_mtcnn_weights()
reference = MTCNN(keep_all=True, device="cpu")
generator = torch.Generator().manual_seed(0)
worst = 0.0
for attempt in range(2):  # converted, then read back from the cache
    for name, side in (("pnet", 61), ("rnet", 24), ("onet", 48)):
        network = getattr(reference, name).eval()
        compiled = face_engine.compile_stage(name, network, "test-digest", threads=1)
        # 9 boxes: RNet and ONet pad them to 10 (padded_count); their answers must not depend on it.
        batch = torch.rand(9, 3, side, side + (7 if name == "pnet" else 0), generator=generator) * 2 - 1
        with torch.no_grad():
            expected = network(batch)
        got = compiled(batch)
        assert len(got) == len(expected), name
        for a, b in zip(got, expected):
            assert a.shape == b.shape, name
            worst = max(worst, float((a - b).abs().max()))
print(worst)
"""


def test_box_batches_are_padded_to_a_few_sizes_by_at_most_a_quarter():
    sizes = [face_engine.padded_count(count) for count in range(1, 5000)]
    assert all(count <= size <= max(count + 1, count * 1.25) for count, size in enumerate(sizes, start=1))
    assert len(set(sizes)) <= 4 * 13 and sizes[:8] == list(range(1, 9))


def test_compiled_stages_answer_as_the_pytorch_networks(tmp_path: Path):
    """In a process of its own: OpenVINO's threads in the test process crash later tests that fork (conftest)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("openvino", reason="OpenVINO not installed: the compiled MTCNN stages are not used here")
    environment = {**os.environ, "FACECHECK_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", COMPARE_STAGES], capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5
    # Converted once per stage, no temporary file left.
    kept = sorted(p.name.split("-")[0] + p.suffix for p in (tmp_path / "cache" / "mtcnn").iterdir())
    assert kept == [
        ".facecheck",
        *(f"{name}{suffix}" for name in ("onet", "pnet", "rnet") for suffix in (".bin", ".xml")),
    ]


@pytest.mark.shared_data
@pytest.mark.skipif(not DFDC.is_dir(), reason=f"real data not present: {DFDC} is missing")
def test_a_batch_finds_the_faces_each_picture_finds_alone():
    """Tight 224 px face crops (boxes past the edges): where facenet's own batches found other faces."""
    from facenet_pytorch import MTCNN

    faces_module.verify_mtcnn_weights()
    paths = sorted((DFDC / "real").iterdir())[:12] + sorted((DFDC / "fake").iterdir())[:12]
    pictures = [Image.open(path).convert("RGB") for path in paths]
    reference = MTCNN(keep_all=True, device="cpu")
    alone = [faces_module._faces(*reference.detect(picture), 1.0) for picture in pictures]
    together = faces_module.detect_faces_batch(pictures, use_cache=False, fast=True)
    assert sum(len(f) for f in alone) >= len(pictures)
    # facecheck's own stages (one gather per picture for the crops) against facenet's detect on the same
    # networks and the same batch: the same boxes, to the last bit.
    batch = np.stack([np.asarray(picture) for picture in pictures])
    facenet_boxes, facenet_probabilities = reference.detect(pictures)
    for (boxes, probabilities), expected, expected_probabilities in zip(
        face_engine.detect_batch(reference, batch), facenet_boxes, facenet_probabilities, strict=True
    ):
        if expected is None:
            assert len(boxes) == 0
            continue
        order = np.argsort(-probabilities, kind="stable")  # facenet's detect puts the largest box first
        expected_order = np.argsort(-np.asarray(expected_probabilities, dtype=np.float32), kind="stable")
        assert np.array_equal(boxes[order], np.asarray(expected)[expected_order])
    for expected, got in zip(alone, together, strict=True):
        assert len(got) == len(expected)
        for a, b in zip(expected, got, strict=True):
            assert np.allclose(a.box, b.box, atol=0.01) and abs(a.probability - b.probability) < 1e-4


def test_predict_scores_do_not_depend_on_batching(trained_run, tmp_path: Path):
    """Overlapped batches (the next one prepared while the engine runs) against one picture at a time; an
    unreadable file in the middle keeps its place and its error."""
    run, data = trained_run
    files = sorted(data.rglob("*.png"))[:9]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    inputs = [*files[:4], broken, *files[4:]]
    detector = Detector.load(run)
    one_by_one = [detector.predict(path, batch_size=1, provenance=False)[0] for path in inputs]
    batched = detector.predict(inputs, batch_size=3, provenance=False)
    assert [p.path for p in batched] == [str(path) for path in inputs]
    assert batched[4].error is not None and batched[4].p_fake is None and "broken.png" in batched[4].error
    for single, together in zip(one_by_one, batched, strict=True):
        assert together.error == single.error
        if single.p_fake is not None:
            assert together.p_fake == pytest.approx(single.p_fake, abs=1e-6)
            assert together.label == single.label


@pytest.mark.shared_data
@pytest.mark.skipif(not DFDC.is_dir(), reason=f"real data not present: {DFDC} is missing")
def test_batches_searched_at_once_find_what_they_find_one_after_another():
    """predict prepares two batches at once: their face searches (compiled stages with an infer request per
    thread, no detector lock) run at the same time and must answer as they do one after another."""
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted((DFDC / "real").iterdir())[:16] + sorted((DFDC / "fake").iterdir())[:16]
    pictures = [Image.open(path).convert("RGB") for path in paths]
    groups = [pictures[start::4] for start in range(4)]
    alone = [faces_module.detect_faces_batch(group, use_cache=False, fast=True) for group in groups]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            together = list(pool.map(lambda group: faces_module.detect_faces_batch(group, use_cache=False, fast=True),
                                     groups))  # fmt: skip
            assert together == alone
    assert sum(len(faces) for group in alone for faces in group) >= len(pictures)


def test_batches_of_large_photos_hold_few_photos(tmp_path: Path):
    """predict cuts its inputs by count and by pixels (read from the files' headers): 4000 px photos go two
    by two, 256 px ones by the batch size; order kept; a file whose header cannot be read counts as small."""
    from facecheck.inference.predictor import BATCH_PIXELS, picture_batches

    small = tmp_path / "small.png"
    Image.new("RGB", (256, 256)).save(small)
    large = tmp_path / "large.jpg"
    Image.new("RGB", (4000, 3000)).save(large, quality=50)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert 32 * 256 * 256 <= BATCH_PIXELS < 4000 * 3000  # 32 small photos fit; a large one alone does not

    assert picture_batches([small] * 70, 32) == [range(0, 32), range(32, 64), range(64, 70)]
    assert picture_batches([large] * 5, 32) == [range(0, 2), range(2, 4), range(4, 5)]
    assert picture_batches([small, small, large, large, small, broken], 32) == [range(0, 2), range(2, 4), range(4, 6)]
    arrays = [np.zeros((3000, 4000, 3), dtype=np.uint8)] * 3
    assert picture_batches(arrays, 32) == [range(0, 2), range(2, 3)]
    assert picture_batches([large] * 3, 1) == [range(0, 1), range(1, 2), range(2, 3)]


def test_predict_refuses_a_batch_size_under_one(trained_run):
    from facecheck.errors import InputError

    run, data = trained_run
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        Detector.load(run).predict(sorted(data.rglob("*.png"))[:2], batch_size=0)
