"""Pseudo-fakes from real images: masks, self-blending, re-synthesis and the seeded maker."""

import itertools
import math

import numpy as np
import pytest
import torch

from facecheck.data.pseudo_fakes import (
    PSEUDO_FAKE_KINDS,
    PseudoFakeMaker,
    default_face_box,
    face_mask,
    pseudo_fake_seed,
    resynthesize,
    self_blend,
    self_blend_with_mask,
)
from facecheck.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_thread():
    # As in a DataLoader worker: these small per-image ops crawl when several threads share busy cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_image(height: int, width: int) -> torch.Tensor:
    """Smooth colour waves: no detail finer than a few pixels, like a photograph's skin and background."""
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    channels = [
        128 + 60 * torch.sin(2 * math.pi * x / 53) * torch.cos(2 * math.pi * y / 71),
        110 + 50 * torch.cos(2 * math.pi * (x + y) / 67),
        140 + 40 * torch.sin(2 * math.pi * (x - 0.5 * y) / 59),
    ]
    return torch.stack(channels).round().clamp(0, 255).to(torch.uint8)


def textured_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    noise = torch.randint(-20, 21, (3, height, width), generator=generator(seed))
    return (smooth_image(height, width).int() + noise).clamp(0, 255).to(torch.uint8)


def grown(box: tuple[float, float, float, float], by: float) -> tuple[float, float, float, float]:
    """The box grown on each side by ``by`` times its longer side."""
    left, top, right, bottom = box
    margin = by * max(right - left, bottom - top)
    return (left - margin, top - margin, right + margin, bottom + margin)


def outside(height: int, width: int, box: tuple[float, float, float, float]) -> torch.Tensor:
    """Boolean (H, W): pixel centres outside the box."""
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    left, top, right, bottom = box
    return (x < left) | (x > right) | (y < top) | (y > bottom)


# Five MTCNN-style points (eyes, nose, mouth corners) as fractions of the face box.
LANDMARK_FRACTIONS = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])


def landmarks_in(box: tuple[float, float, float, float]) -> np.ndarray:
    left, top, right, bottom = box
    return np.array([left, top]) + LANDMARK_FRACTIONS * np.array([right - left, bottom - top])


@pytest.mark.parametrize("size", [(256, 256), (32, 32), (33, 47), (61, 40), (97, 200)])
def test_outputs_keep_dtype_and_shape(size):
    image = textured_image(*size)
    maker = PseudoFakeMaker(PSEUDO_FAKE_KINDS, seed=1)
    outputs = [
        self_blend(image, generator(0)),
        resynthesize(image, generator(0)),
        *(maker(image, epoch=0, index=i) for i in range(4)),
    ]
    for out in outputs:
        assert out.dtype == torch.uint8
        assert out.shape == image.shape
    mask = face_mask(*size, None, None, generator(0))
    assert mask.dtype == torch.float32 and mask.shape == size


@pytest.mark.parametrize("use_landmarks", [False, True])
def test_face_mask_is_soft_inside_and_zero_far_outside_the_box(use_landmarks):
    height, width = 180, 240
    rng = np.random.default_rng(0)
    for seed in range(30):
        left, top = rng.uniform(0, 120), rng.uniform(0, 80)
        box = (left, top, left + rng.uniform(40, 110), top + rng.uniform(50, 100))
        landmarks = landmarks_in(box) if use_landmarks else None
        mask = face_mask(height, width, box, landmarks, generator(seed))
        assert mask.shape == (height, width)
        assert float(mask.min()) >= 0 and float(mask.max()) <= 1
        assert not mask[outside(height, width, grown(box, 0.5))].any(), f"seed {seed}: mask far outside the box"
        cx, cy = round((box[0] + box[2]) / 2), round((box[1] + box[3]) / 2)
        assert float(mask[cy, cx]) > 0.9, f"seed {seed}: box centre not in the mask"
        # soft: values strictly between 0 and 1 along the boundary, not a hard cut
        assert ((mask > 0.05) & (mask < 0.95)).any()


def test_face_mask_outline_differs_between_draws():
    masks = [face_mask(128, 128, (30, 20, 98, 110), None, generator(seed)) for seed in range(4)]
    for a, b in itertools.pairwise(masks):
        assert (a - b).abs().max() > 0.2


def test_face_mask_stays_inside_the_image_for_boxes_at_the_border():
    height, width = 100, 120
    for box in [(-15.0, -10.0, 50.0, 60.0), (80.0, 50.0, 140.0, 115.0), (0.0, 0.0, 40.0, 30.0)]:
        for seed in range(5):
            mask = face_mask(height, width, box, None, generator(seed))
            assert mask.shape == (height, width)
            assert float(mask.min()) >= 0 and float(mask.max()) <= 1
            visible = (max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height))
            cx, cy = round((visible[0] + visible[2]) / 2), round((visible[1] + visible[3]) / 2)
            assert float(mask[cy, cx]) > 0.9
            far_y = height - 1 if cy < height / 2 else 0  # the image corner away from the box
            far_x = width - 1 if cx < width / 2 else 0
            assert float(mask[far_y, far_x]) == 0
    # a box that misses the image falls back to the default face box, never to an empty mask
    mask = face_mask(height, width, (500.0, 500.0, 600.0, 600.0), None, generator(0))
    assert float(mask[height // 2, width // 2]) > 0.9


def test_boxes_larger_than_the_image_still_leave_a_blend_boundary():
    # Tight face crops: the detector's box reaches past the image on every side.
    image = textured_image(120, 100, seed=6)
    box = (-20.0, -30.0, 125.0, 150.0)
    for seed in range(8):
        out, weight = self_blend_with_mask(image, generator(seed), box=box)
        assert float(weight[60, 50]) > 0.2
        corners = weight[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert float(corners.max()) == 0
        assert torch.equal(out[:, 0, 0], image[:, 0, 0])


def test_default_box_is_the_central_face_of_a_crop():
    left, top, right, bottom = default_face_box(200, 100)
    assert (left, right) == pytest.approx((20, 80))
    assert (top, bottom) == pytest.approx((30, 170))
    mask = face_mask(200, 100, None, None, generator(0))
    assert float(mask[100, 50]) > 0.9
    assert float(mask[0, 0]) == 0 and float(mask[199, 99]) == 0


def test_landmarks_shape_the_mask():
    box = (20.0, 20.0, 220.0, 220.0)
    # all five points in the box's upper-left quarter: the face is there, not in the lower right
    landmarks = np.array([[50, 50], [80, 50], [65, 65], [55, 80], [75, 80]], dtype=float)
    for seed in range(10):
        with_points = face_mask(240, 240, box, landmarks, generator(seed))
        ellipse = face_mask(240, 240, box, None, generator(seed))
        assert float(with_points[65, 65]) > 0.9
        assert float(ellipse[160, 160]) > 0.9
        assert float(with_points[160, 160]) == 0
    # points in a line have no hull: the box's ellipse is used, exactly as without landmarks
    in_a_line = np.array([[50, 50], [60, 60], [70, 70], [80, 80], [90, 90]], dtype=float)
    assert torch.equal(face_mask(240, 240, box, in_a_line, generator(3)), face_mask(240, 240, box, None, generator(3)))


@pytest.mark.parametrize("size", [(128, 128), (75, 130), (32, 32)])
def test_self_blend_changes_pixels_only_inside_the_mask(size):
    image = textured_image(*size, seed=2)
    changed_somewhere = False
    for seed in range(8):
        out, weight = self_blend_with_mask(image, generator(seed))
        assert weight.shape == size and float(weight.min()) >= 0 and float(weight.max()) <= 1
        zero = weight == 0
        assert zero.any()
        assert torch.equal(out[:, zero], image[:, zero])
        changed_somewhere |= bool((out != image)[:, weight > 0.2].any())
        # the public function gives the same image from the same generator state
        assert torch.equal(self_blend(image, generator(seed)), out)
    assert changed_somewhere


def test_self_blend_leaves_the_image_outside_the_grown_box_alone():
    image = textured_image(160, 200, seed=3)
    box = (60.0, 40.0, 130.0, 120.0)
    far = outside(160, 200, grown(box, 0.5))
    for seed in range(10):
        out = self_blend(image, generator(seed), box=box, landmarks=landmarks_in(box))
        assert torch.equal(out[:, far], image[:, far])
        assert (out != image).any()


def test_maker_is_deterministic_per_seed_epoch_and_index():
    image = textured_image(96, 80, seed=4)
    maker = PseudoFakeMaker(PSEUDO_FAKE_KINDS, seed=7)
    again = PseudoFakeMaker(PSEUDO_FAKE_KINDS, seed=7)
    for index in range(6):
        first = maker(image, epoch=2, index=index)
        assert torch.equal(first, again(image, epoch=2, index=index))
        assert not torch.equal(first, maker(image, epoch=2, index=index + 1))
        assert not torch.equal(first, maker(image, epoch=3, index=index))
        assert not torch.equal(first, PseudoFakeMaker(PSEUDO_FAKE_KINDS, seed=8)(image, epoch=2, index=index))


def test_maker_uses_no_global_random_state():
    image = textured_image(64, 64, seed=5)
    maker = PseudoFakeMaker(PSEUDO_FAKE_KINDS, seed=0)
    torch.manual_seed(1)
    np.random.seed(1)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first = [maker(image, epoch=0, index=i) for i in range(6)]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    torch.manual_seed(2)
    assert all(torch.equal(a, maker(image, epoch=0, index=i)) for i, a in enumerate(first))


def test_seed_mixing_is_stable_across_versions():
    # Resumed runs rely on this exact value: changing the mixing changes every pseudo-fake.
    assert pseudo_fake_seed(0, 0, 1) != pseudo_fake_seed(0, 1, 0)
    assert 0 <= pseudo_fake_seed(123, 4, 10**9) < 2**63
    assert pseudo_fake_seed(0, 0, 0) == 330515261729838185


def test_resynthesis_stays_close_but_not_equal():
    image = smooth_image(128, 112)
    for seed in range(24):
        out = resynthesize(image, generator(seed))
        mse = float(((out.float() - image.float()) ** 2).mean())
        assert mse > 0, f"seed {seed}: output equals the input"
        psnr = 10 * math.log10(255**2 / mse)
        assert 24 < psnr < 60, f"seed {seed}: PSNR {psnr:.1f} dB"


def test_resynthesis_keeps_flat_colours():
    # Every upsampler's weights sum to 1 per output pixel: a flat image comes back unchanged.
    flat = torch.empty(3, 45, 62, dtype=torch.uint8)
    flat[0], flat[1], flat[2] = 200, 90, 31
    for seed in range(24):
        assert torch.equal(resynthesize(flat, generator(seed)), flat), f"seed {seed}"


def test_maker_applies_only_the_kinds_asked_for():
    flat = torch.full((3, 64, 64), 120, dtype=torch.uint8)
    resynth_only = PseudoFakeMaker(["resynth"], seed=0)
    sbi_only = PseudoFakeMaker(["sbi"], seed=0)
    both = PseudoFakeMaker(PSEUDO_FAKE_KINDS, seed=0)
    # re-synthesis keeps a flat image as it is; self-blending recolours the face
    assert all(torch.equal(resynth_only(flat, epoch=0, index=i), flat) for i in range(8))
    assert all(not torch.equal(sbi_only(flat, epoch=0, index=i), flat) for i in range(8))
    unchanged = [torch.equal(both(flat, epoch=0, index=i), flat) for i in range(40)]
    assert 5 < sum(unchanged) < 35  # both kinds are drawn


def test_unknown_kinds_are_rejected_with_the_valid_ones_named():
    with pytest.raises(ConfigError, match=r"'faceswap'.*sbi, resynth"):
        PseudoFakeMaker(["sbi", "faceswap"], seed=0)
    with pytest.raises(ConfigError, match="sbi, resynth"):
        PseudoFakeMaker([], seed=0)
    assert PseudoFakeMaker("sbi", seed=0).kinds == ("sbi",)


def test_non_uint8_images_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        self_blend(torch.rand(3, 64, 64), generator(0))
    with pytest.raises(ValueError, match="uint8"):
        resynthesize(torch.zeros(64, 64, 3, dtype=torch.uint8), generator(0))
