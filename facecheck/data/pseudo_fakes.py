"""Pseudo-fakes made on the fly from real face images, for detectors that generalise to unseen fake kinds.

A detector trained on one generator's fakes learns that generator's fingerprint. Pseudo-fakes
made from the real images themselves carry only traces that many kinds of fakes share, so a
detector trained on them (beside, or instead of, real fakes) has nothing else to latch on to:

* ``sbi``, self-blended images, after Shiohara & Yamasaki, "Detecting Deepfakes with
  Self-Blended Images", CVPR 2022. A slightly altered copy of the face (colour, sharpness, scale
  and position) is blended back onto the untouched original inside a soft, randomly shaped face
  mask: the blending boundary and the mismatch between inside and outside are what face swaps
  leave behind.
* ``resynth``, re-synthesis, after the observation behind NPR (Tan et al., "Rethinking the
  Up-Sampling Operations in CNN-based Generative Network for Generalizable Deepfake Detection",
  CVPR 2024) that generator upsampling layers tie neighbouring pixels together. The image is
  halved and brought back by a randomly initialised upsampler (a transposed convolution, or
  nearest / bilinear upsampling followed by a random 3x3 convolution); the whole image or only the
  face region takes the result.

Everything takes and returns uint8 ``(3, H, W)`` tensors, any size from 32 pixels up, square or
not, and draws every random number from the ``torch.Generator`` it is given (no global random
state), so :class:`PseudoFakeMaker` can reproduce an image from ``(seed, epoch, index)`` alone.
They are made of small per-image tensor ops, a few milliseconds for 256x256 on one CPU thread;
run them on one intra-op thread (as DataLoader workers and :class:`PseudoFakeMaker` do).

Boxes are ``(left, top, right, bottom)`` in pixels, as :class:`facecheck.data.faces.Face` gives
them; landmarks are MTCNN's five ``(x, y)`` points (eyes, nose, mouth corners) as a ``(5, 2)``
array. Without a box the face is taken to fill the central 60% x 70% of the image
(:func:`default_face_box`): training images are face crops.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from facecheck.errors import ConfigError

PSEUDO_FAKE_KINDS: tuple[str, ...] = ("sbi", "resynth")

Box = tuple[float, float, float, float]

# Self-blending: ranges of the changes to the source copy, on the 0-255 scale where it matters.
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # full blends twice as likely as each partial one
RGB_SHIFT = 20.0  # per channel, +-
BRIGHTNESS = (0.9, 1.1)
CONTRAST = (0.9, 1.1)
SATURATION = (0.8, 1.2)
HUE_DEGREES = 10.0  # +-, a rotation of the YIQ chroma plane
BLUR_SIGMA = (0.4, 1.2)  # Gaussian blur of the source, half the time ...
SHARPEN_AMOUNT = (0.2, 1.0)  # ... an unsharp mask (sigma 1) the other half
SCALE = (0.95, 1.05)  # per axis, about the face centre
SHIFT = 0.03  # +- fraction of the image side, per axis

# Face mask: outline = the face shape scaled by DILATION and perturbed by cosines of orders 2-5.
DILATION = (0.9, 1.1)
OUTLINE_ORDERS = (2, 3, 4, 5)
OUTLINE_AMPLITUDE = 0.05  # each order's amplitude is uniform in [0, this]
OUTLINE_TABLE_SIZE = 1024  # angular steps of the tabulated outline
MASK_SIGMA = (0.015, 0.06)  # softness: Gaussian sigma as a fraction of the face size
LANDMARK_SCALE = (1.9, 2.4)  # five points span the eyes to the mouth; the face reaches the brows and chin
LANDMARK_BOX_LIMIT = 1.2  # a landmark mask never leaves the box's ellipse grown this much

MAX_BOX_FRACTION = 0.8  # of the image side: larger boxes are narrowed so the blend keeps a boundary

# The default face of a face crop: the central 60% of the width and 70% of the height.
DEFAULT_FACE_WIDTH, DEFAULT_FACE_HEIGHT = 0.6, 0.7

# Rows: Y, I, Q from R, G, B (NTSC). Hue is a rotation of the (I, Q) plane, which keeps the luma.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA = _RGB_TO_YIQ[0]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (), generator=generator))


def _check_image(image: torch.Tensor) -> None:
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 (3, H, W) image tensor, got {image.dtype} {tuple(image.shape)}")
    if min(image.shape[1:]) < 8:
        raise ValueError(f"image too small for pseudo-fakes: {tuple(image.shape[1:])}")


def _to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


def default_face_box(height: int, width: int) -> Box:
    """The face of a face crop: the central 60% of the width and 70% of the height."""
    dx, dy = width * (1 - DEFAULT_FACE_WIDTH) / 2, height * (1 - DEFAULT_FACE_HEIGHT) / 2
    return (dx, dy, width - dx, height - dy)


def _fit_extent(low: float, high: float, size: int) -> tuple[float, float]:
    """An extent no longer than MAX_BOX_FRACTION of the side: narrowed about its centre, kept inside the image."""
    limit = MAX_BOX_FRACTION * size
    if high - low <= limit:
        return low, high
    centre = min(max((low + high) / 2, limit / 2), size - limit / 2)
    return centre - limit / 2, centre + limit / 2


def _usable_box(box: Box | None, height: int, width: int) -> Box:
    """The box, at least a pixel wide and high and at most 80% of the image's side; the default one when
    none is given or it misses the image.

    Tight face crops give detector boxes as large as the image or larger: a mask filling the whole
    image would blend without a boundary, a mere colour change, so such boxes are narrowed.
    """
    if box is None:
        return default_face_box(height, width)
    left, top, right, bottom = (float(v) for v in box)
    right, bottom = max(right, left + 1), max(bottom, top + 1)
    if right <= 0 or bottom <= 0 or left >= width or top >= height:
        return default_face_box(height, width)
    left, right = _fit_extent(left, right, width)
    top, bottom = _fit_extent(top, bottom, height)
    return (left, top, right, bottom)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Vertices of the convex hull of a few 2-D points, counter-clockwise (monotone chain)."""
    ordered = sorted({(float(x), float(y)) for x, y in points})
    if len(ordered) < 3:
        return np.asarray(ordered, dtype=float).reshape(-1, 2)

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def chain(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.asarray(chain(ordered) + chain(ordered[::-1]), dtype=float).reshape(-1, 2)


def _hull_gauge(landmarks: np.ndarray | None, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Centre, unit outward normals and centre-to-edge distances of the landmarks' hull, or None if unusable."""
    if landmarks is None:
        return None
    points = np.asarray(landmarks, dtype=float).reshape(-1, 2)
    if len(points) < 3 or not np.isfinite(points).all():
        return None
    hull = _convex_hull(points)
    if len(hull) < 3:
        return None
    centre = hull.mean(axis=0)
    left, top, right, bottom = box
    if not (left <= centre[0] <= right and top <= centre[1] <= bottom):
        return None  # landmarks of another face than the box's: trust the box
    edges = np.roll(hull, -1, axis=0) - hull
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    if (lengths < 1e-6).any():
        return None
    normals = normals / lengths
    distances = ((hull - centre) * normals).sum(axis=1)
    normals[distances < 0] *= -1  # outward, whatever the hull's orientation
    distances = np.abs(distances)
    if distances.min() < 0.5:  # flat hull (points in a line): no area to enlarge
        return None
    return centre, normals, distances


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _separable_blur(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (C, H, W) tensor, edges replicated (so a region touching the border stays full there)."""
    kernel = _gaussian_kernel(sigma).tolist()
    radius = len(kernel) // 2
    _, height, width = pixels.shape
    padded = F.pad(pixels[None], (radius, radius, radius, radius), mode="replicate")[0]
    # Shifted multiply-adds: several times faster on CPU than a depthwise conv2d for these small kernels.
    rows = padded[:, :, :width] * kernel[0]
    for tap in range(1, len(kernel)):
        rows.add_(padded[:, :, tap : tap + width], alpha=kernel[tap])
    out = rows[:, :height] * kernel[0]
    for tap in range(1, len(kernel)):
        out.add_(rows[:, tap : tap + height], alpha=kernel[tap])
    return out


def face_mask(
    height: int,
    width: int,
    box: Box | None,
    landmarks: np.ndarray | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """A soft, randomly shaped face mask: float32 ``(height, width)`` in [0, 1], 1 inside the face.

    The shape is the convex hull of the landmarks enlarged 1.9-2.4x about its centre, corners
    rounded, cut to the box's ellipse grown 1.2x; or, without usable landmarks, an ellipse
    filling the box. The box is the default face box when ``box`` is None or misses the image;
    a box wider or taller than 80% of the image is narrowed to 80%, so that the blend keeps a
    boundary inside the image. The outline is scaled by 0.9-1.1 and perturbed radially by
    cosines of orders 2-5 (amplitude up to 5% each), then blurred by a Gaussian of sigma 1.5-6%
    of the face size, so the boundary is soft and differently shaped every time. The mask is
    zero further than half the box's longer side outside the box.
    """
    box = _usable_box(box, height, width)
    left, top, right, bottom = box
    face_size = math.sqrt((right - left) * (bottom - top))
    sigma = max(1.0, _uniform(generator, *MASK_SIGMA) * face_size)
    dilation = _uniform(generator, *DILATION)
    orders = torch.tensor(OUTLINE_ORDERS, dtype=torch.float32)
    amplitudes = torch.rand(len(OUTLINE_ORDERS), generator=generator) * OUTLINE_AMPLITUDE
    phases = torch.rand(len(OUTLINE_ORDERS), generator=generator) * (2 * math.pi)
    hull = _hull_gauge(landmarks, box)
    hull_scale = _uniform(generator, *LANDMARK_SCALE) if hull is not None else 1.0

    # The blurred mask is smooth at the scale of sigma: draw it on a grid `factor` times coarser
    # (sigma still >= 2 grid cells) and upsample, which costs a fraction of the full-size work.
    factor = max(1, min(int(sigma / 2), min(height, width) // 16))
    rows, cols = math.ceil(height / factor), math.ceil(width / factor)
    # Centres of the coarse cells in full-size pixel coordinates (as bilinear upsampling places them).
    ys = torch.arange(rows, dtype=torch.float32) * factor + (factor - 1) / 2
    xs = torch.arange(cols, dtype=torch.float32) * factor + (factor - 1) / 2
    # Edges ramp over about one cell instead of stepping, so the coarse grid leaves no staircase.
    ramp = 2 * factor / face_size

    # Gauge: a pixel's "radius" in the shape, 1 on the unperturbed outline.
    box_cx, box_cy = (left + right) / 2, (top + bottom) / 2
    box_dy = ((ys - box_cy) / ((bottom - top) / 2))[:, None]
    box_dx = ((xs - box_cx) / ((right - left) / 2))[None, :]
    ellipse = torch.sqrt(box_dy**2 + box_dx**2)
    if hull is None:
        gauge, angle = ellipse, torch.atan2(box_dy, box_dx)
    else:
        centre, normals, distances = hull
        dy = (ys - float(centre[1]))[:, None]
        dx = (xs - float(centre[0]))[None, :]
        weights = torch.from_numpy(normals / (distances[:, None] * hull_scale)).float()  # (edges, 2)
        # A 4-norm over the edges instead of their maximum: the hull with rounded corners, more face-like.
        per_edge = (dx[..., None] * weights[:, 0] + dy[..., None] * weights[:, 1]).clamp(min=0)
        gauge = per_edge.pow(4).sum(dim=-1).pow(0.25)
        angle = torch.atan2(dy, dx)
    # The perturbed outline radius as a function of the angle, tabulated once and looked up per pixel.
    table_angles = torch.linspace(-math.pi, math.pi, OUTLINE_TABLE_SIZE + 1)
    table = dilation * (1 + (amplitudes * torch.cos(orders * table_angles[:, None] + phases)).sum(dim=-1))
    outline = table[((angle + math.pi) * (OUTLINE_TABLE_SIZE / (2 * math.pi))).round().long()]
    hard = ((outline - gauge) / ramp + 0.5).clamp(0, 1)
    if hull is not None:
        hard = torch.minimum(hard, ((LANDMARK_BOX_LIMIT - ellipse) / ramp + 0.5).clamp(0, 1))

    soft = _separable_blur(hard[None], sigma / factor)
    if factor > 1:
        soft = F.interpolate(soft[None], scale_factor=factor, mode="bilinear", align_corners=False)[0]
    return soft[0, :height, :width].clamp(0, 1).contiguous()


def _colour_jitter(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Hue, saturation, brightness, contrast and per-channel shift, folded into one affine colour map."""
    angle = math.radians(_uniform(generator, -HUE_DEGREES, HUE_DEGREES))
    rotation = torch.eye(3, dtype=torch.float64)
    rotation[1:, 1:] = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ
    saturation = _uniform(generator, *SATURATION)
    matrix = (saturation * torch.eye(3, dtype=torch.float64) + (1 - saturation) * _LUMA[None, :]) @ matrix
    matrix = matrix * _uniform(generator, *BRIGHTNESS)
    # Contrast pulls towards the mean grey of the image as changed so far.
    contrast = _uniform(generator, *CONTRAST)
    mean_grey = float(_LUMA @ (matrix @ pixels.mean(dim=(1, 2)).double()))
    offset = (1 - contrast) * mean_grey + (torch.rand(3, generator=generator, dtype=torch.float64) * 2 - 1) * RGB_SHIFT
    matrix = contrast * matrix
    out = torch.einsum("ij,jhw->ihw", matrix.float(), pixels) + offset.float()[:, None, None]
    return out.clamp(0, 255)


def _change_sharpness(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if float(torch.rand((), generator=generator)) < 0.5:
        return _separable_blur(pixels, _uniform(generator, *BLUR_SIGMA))
    amount = _uniform(generator, *SHARPEN_AMOUNT)
    return (pixels + amount * (pixels - _separable_blur(pixels, 1.0))).clamp(0, 255)


def _scale_and_shift(
    pixels: torch.Tensor, box: Box, window: tuple[int, int, int, int], generator: torch.Generator
) -> torch.Tensor:
    """Scale each axis by 0.95-1.05 about the face centre and shift by up to 3% of the side.

    Only the output pixels of ``window`` (top, bottom, left, right) are computed.
    """
    _, height, width = pixels.shape
    scale_x, scale_y = _uniform(generator, *SCALE), _uniform(generator, *SCALE)
    shift_x, shift_y = _uniform(generator, -SHIFT, SHIFT), _uniform(generator, -SHIFT, SHIFT)
    # Normalised coordinates as grid_sample reads them (align_corners=False): u = (2x + 1) / W - 1.
    centre_u = (box[0] + box[2]) / width - 1
    centre_v = (box[1] + box[3]) / height - 1
    top, bottom, left, right = window
    u = (2 * torch.arange(left, right, dtype=torch.float32) + 1) / width - 1
    v = (2 * torch.arange(top, bottom, dtype=torch.float32) + 1) / height - 1
    grid = torch.empty(1, bottom - top, right - left, 2)
    grid[..., 0] = (centre_u + (u - centre_u) / scale_x - 2 * shift_x)[None, :]
    grid[..., 1] = (centre_v + (v - centre_v) / scale_y - 2 * shift_y)[:, None]
    return F.grid_sample(pixels[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def self_blend_with_mask(
    image: torch.Tensor,
    generator: torch.Generator,
    box: Box | None = None,
    landmarks: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`self_blend` and the blend weight of the altered copy per pixel (float32 ``(H, W)``).

    Pixels where the weight is zero are exactly the input's.
    """
    _check_image(image)
    _, height, width = image.shape
    box = _usable_box(box, height, width)
    weight = face_mask(height, width, box, landmarks, generator)
    weight = weight * BLEND_RATIOS[_randint(generator, len(BLEND_RATIOS))]
    out = image.clone()
    rows = torch.nonzero(weight.amax(dim=1)).flatten()
    cols = torch.nonzero(weight.amax(dim=0)).flatten()
    if len(rows) == 0:
        return out, weight
    # The source copy is only needed where the mask reaches: work on that window alone.
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    source = _scale_and_shift(image.float(), box, (top, bottom, left, right), generator)
    source = _colour_jitter(source, generator)
    source = _change_sharpness(source, generator)
    target = image[:, top:bottom, left:right].float()
    # target + w (source - target) equals `w source + (1 - w) target` and is exact where w = 0.
    blended = source.sub_(target).mul_(weight[top:bottom, left:right]).add_(target)
    out[:, top:bottom, left:right] = blended.round_().clamp_(0, 255).to(torch.uint8)
    return out, weight


def self_blend(
    image: torch.Tensor,
    generator: torch.Generator,
    box: Box | None = None,
    landmarks: np.ndarray | None = None,
) -> torch.Tensor:
    """A self-blended image (Shiohara & Yamasaki, CVPR 2022) of a real face: uint8 ``(3, H, W)``.

    The source copy gets a colour change (per-channel shift of +-20 levels, brightness and
    contrast 0.9-1.1, saturation 0.8-1.2, hue +-10 degrees), a sharpness change (Gaussian blur of
    sigma 0.4-1.2 or an unsharp mask of amount 0.2-1.0, even odds), and a scale of 0.95-1.05 per
    axis about the face centre with a shift of up to 3% of the side. It is blended onto the
    untouched image as ``out = m r source + (1 - m r) image`` with ``m`` a :func:`face_mask` and
    ``r`` drawn from (0.25, 0.5, 0.75, 1, 1, 1).
    """
    return self_blend_with_mask(image, generator, box, landmarks)[0]


def _phase_normalised_transposed_kernel(size: int, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random positive (3, 1, size, size) kernels whose taps feeding each output phase sum to 1, per channel."""
    weight = torch.rand(3, 1, size, size, generator=generator) + 0.05
    # In a stride-2 transposed convolution, tap t writes to output rows of parity (t - padding) mod 2.
    parity = (torch.arange(size) - padding) % 2
    phase = parity[:, None] * 2 + parity[None, :]
    for value in range(4):
        taps = phase == value
        weight[..., taps] = weight[..., taps] / weight[..., taps].sum(dim=-1, keepdim=True)
    return weight


def _random_smoothing_kernel(generator: torch.Generator) -> torch.Tensor:
    weight = torch.rand(3, 1, 3, 3, generator=generator)
    weight[..., 1, 1] += 1.0  # centre-heavy: a gentle random blur
    return weight / weight.sum(dim=(-2, -1), keepdim=True)


def _random_mixing_kernel(generator: torch.Generator) -> torch.Tensor:
    """The identity plus a zero-sum random 3x3 perturbation: a mild random blur or sharpen that keeps flat colours."""
    noise = torch.rand(3, 1, 3, 3, generator=generator) * 2 - 1
    noise = noise - noise.mean(dim=(-2, -1), keepdim=True)
    weight = 0.1 * noise
    weight[..., 1, 1] += 1.0
    return weight


def _conv3x3(pixels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 convolution of (1, 3, H, W) with (3, 1, 3, 3) weights, edges replicated (shifted adds)."""
    _, _, height, width = pixels.shape
    padded = F.pad(pixels, (1, 1, 1, 1), mode="replicate")[0]
    taps = weight[:, 0, :, :, None, None]  # (3, 3, 3, 1, 1): broadcast over the pixels
    out = padded[:, :height, :width] * taps[:, 0, 0]
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                out.addcmul_(padded[:, dy : dy + height, dx : dx + width], taps[:, dy, dx])
    return out[None]


UPSAMPLERS = ("transposed", "nearest-conv", "bilinear-conv")


def _upsample(low: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A randomly chosen and initialised 2x upsampler applied to a (1, 3, h, w) tensor: (1, 3, 2h, 2w)."""
    kind = UPSAMPLERS[_randint(generator, len(UPSAMPLERS))]
    if kind == "transposed":
        size = 4 if _randint(generator, 2) else 3
        weight = _phase_normalised_transposed_kernel(size, 1, generator)
        # Replicate one low-resolution pixel around so the border outputs get their full weight, then crop.
        padded = F.pad(low, (1, 1, 1, 1), mode="replicate")
        up = F.conv_transpose2d(padded, weight, stride=2, padding=1, output_padding=4 - size, groups=3)
        return up[..., 2:-2, 2:-2]
    if kind == "nearest-conv":
        return _conv3x3(F.interpolate(low, scale_factor=2, mode="nearest"), _random_smoothing_kernel(generator))
    up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=False)
    return _conv3x3(up, _random_mixing_kernel(generator))


def resynthesize(
    image: torch.Tensor,
    generator: torch.Generator,
    box: Box | None = None,
    landmarks: np.ndarray | None = None,
) -> torch.Tensor:
    """The image re-synthesised through a random upsampler (after NPR, Tan et al., CVPR 2024): uint8 ``(3, H, W)``.

    Halved by 2x2 averaging (odd sides padded by replication), then upsampled by one of: a
    stride-2 transposed convolution (kernel 3 or 4, random positive weights normalised so each
    output phase sums to 1 and flat colours are kept), nearest followed by a random centre-heavy
    3x3 smoothing, or bilinear followed by the identity plus a zero-sum random 3x3 kernel (weights
    within +-0.2). Even odds, then the whole image takes the result, or only the face region
    through a :func:`face_mask`. It stays close to the input (PSNR about 30 dB on photographs).
    """
    _check_image(image)
    _, height, width = image.shape
    pixels = image.float()[None]
    even = F.pad(pixels, (0, width % 2, 0, height % 2), mode="replicate")
    low = (even[..., 0::2, 0::2] + even[..., 1::2, 0::2] + even[..., 0::2, 1::2] + even[..., 1::2, 1::2]) * 0.25
    up = _upsample(low, generator)[0, :, :height, :width]
    if float(torch.rand((), generator=generator)) < 0.5:
        return _to_uint8(up)
    mask = face_mask(height, width, box, landmarks, generator)
    return _to_uint8(pixels[0] + mask * (up - pixels[0]))


def pseudo_fake_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed from (seed, epoch, index): the same in every process and Python version."""
    digest = hashlib.blake2b(f"pseudo-fake/{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class PseudoFakeMaker:
    """Makes a pseudo-fake of one kind, chosen at random among ``kinds``, from a real image.

    Deterministic: the same (seed, epoch, index) gives the same image, so a resumed training run
    sees the same pseudo-fakes; another epoch or index gives another one. Each call runs on one
    intra-op thread and restores the thread count afterwards.
    """

    def __init__(self, kinds: Sequence[str], seed: int) -> None:
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        unknown = [kind for kind in kinds if kind not in PSEUDO_FAKE_KINDS]
        if unknown or not kinds:
            named = ", ".join(repr(kind) for kind in unknown) or "none given"
            raise ConfigError(f"unknown pseudo-fake kind(s): {named}; choose from {', '.join(PSEUDO_FAKE_KINDS)}")
        self.kinds = tuple(dict.fromkeys(kinds))  # a kind named twice is not drawn twice as often
        self.seed = seed

    def generator(self, epoch: int, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(pseudo_fake_seed(self.seed, epoch, index))

    def __call__(
        self,
        image: torch.Tensor,
        *,
        epoch: int,
        index: int,
        box: Box | None = None,
        landmarks: np.ndarray | None = None,
    ) -> torch.Tensor:
        generator = self.generator(epoch, index)
        kind = self.kinds[_randint(generator, len(self.kinds))]
        make = self_blend if kind == "sbi" else resynthesize
        # One intra-op thread while making it (restored after): per-image ops are too small to gain from
        # threads, and on a busy CPU every threaded op waits for a descheduled thread (measured 8x slower).
        threads = torch.get_num_threads()
        if threads == 1:
            return make(image, generator, box, landmarks)
        torch.set_num_threads(1)
        try:
            return make(image, generator, box, landmarks)
        finally:
            torch.set_num_threads(threads)

    def __repr__(self) -> str:
        return f"PseudoFakeMaker(kinds={list(self.kinds)}, seed={self.seed})"
