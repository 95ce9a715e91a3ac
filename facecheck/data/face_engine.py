"""MTCNN's three networks compiled by OpenVINO for this CPU, under facenet-pytorch's own detection algorithm.

facenet-pytorch's ``detect_face`` takes its three stage networks as arguments; here each is swapped for the
same weights compiled by OpenVINO (float32), which runs PNet's image pyramid about four times faster than
eager PyTorch on a 2-core CPU (benchmarks/scoring_speed.py). The algorithm, thresholds and box arithmetic stay
facenet's, and the outputs match PyTorch's to about 1e-6 (tests/test_scoring_pipeline.py). The converted
networks are kept in the facecheck cache (OpenVINO IR) keyed by the weights' digests, so a process reads
them instead of converting again (~2 s). Without OpenVINO, the PyTorch networks run in channels-last
memory format (about twice as fast as the default for PNet's pooling).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from facecheck.paths import cache_folder

# Input shapes: PNet is fully convolutional (any size), RNet and ONet take 24 and 48 px crops.
STAGE_SHAPES = {"pnet": (3, -1, -1), "rnet": (3, 24, 24), "onet": (3, 48, 48)}
EXAMPLE_SIDES = {"pnet": 50, "rnet": 24, "onet": 48}
IR_VERSION = "1"  # bump when the conversion below changes


class CompiledStage(nn.Module):
    """One stage network as an OpenVINO compiled model (facenet calls a stage only with boxes to judge)."""

    def __init__(self, net: nn.Module, compiled: Any, padded: bool = False) -> None:
        super().__init__()
        self.net = net  # facenet reads the stage's dtype from its first parameter
        self.compiled = compiled
        self.padded = padded  # batches padded to a few sizes (RNet and ONet: see padded_count)
        # An infer request per thread: calling the compiled model itself blocks it for every other thread,
        # and two batches' searches run at once (one in NumPy while the other is in a network).
        self._requests = threading.local()

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        inputs = np.ascontiguousarray(batch.numpy(), dtype=np.float32)
        count = len(inputs)
        if self.padded and count:
            # OpenVINO prepares its kernels anew for each input shape it has not seen (~4 ms for RNet): the
            # boxes of a picture come in any number, so they are padded to one of a few sizes.
            padded = np.zeros((padded_count(count), *inputs.shape[1:]), dtype=np.float32)
            padded[:count] = inputs
            inputs = padded
        # The input is read in place; the outputs come back as copies of the request's buffers.
        outputs = request.infer([inputs], share_inputs=True)
        return tuple(torch.from_numpy(outputs[index][:count]) for index in range(len(self.compiled.outputs)))


def padded_count(count: int) -> int:
    """The smallest of 1..8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ... (four sizes per doubling) holding
    ``count``: at most 25% padding, and a few dozen shapes for any number of boxes."""
    size = 1
    while size < count:
        size += max(1, 1 << max(0, size.bit_length() - 3))
    return size


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _ir_path(name: str, weights_digest: str) -> Any:
    import openvino as ov

    key = hashlib.sha256(f"{IR_VERSION}|{ov.__version__}|{torch.__version__}|{weights_digest}".encode()).hexdigest()
    return cache_folder("mtcnn") / f"{name}-{key[:24]}.xml"


def compile_stage(name: str, net: nn.Module, weights_digest: str, threads: int) -> CompiledStage:
    """``net`` (MTCNN's ``name`` stage) compiled by OpenVINO, converted once and read from the cache after."""
    import openvino as ov

    core = ov.Core()
    path = _ir_path(name, weights_digest)
    if path.is_file() and path.with_suffix(".bin").is_file():
        model = core.read_model(str(path))
    else:
        side = EXAMPLE_SIDES[name]
        # OpenVINO traces the network with torch.jit.trace, which warns that it is deprecated: not the user's concern.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = ov.convert_model(
                net.eval(),
                example_input=torch.zeros(2, 3, side, side),
                input=[ov.PartialShape([-1, *STAGE_SHAPES[name]])],
            )
        # Written under a temporary name and renamed: a reader never sees half a file.
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.xml")
        ov.save_model(model, str(temporary), compress_to_fp16=False)
        temporary.with_suffix(".bin").replace(path.with_suffix(".bin"))
        temporary.replace(path)
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    return CompiledStage(net, core.compile_model(model, "CPU", config), padded=name != "pnet")


def nms_each_image(boxes: torch.Tensor, scores: torch.Tensor, image_indices: torch.Tensor, threshold: float,
                   method: str) -> torch.Tensor:  # fmt: skip
    """facenet's last-stage NMS, image by image.

    facenet-pytorch 2.6.0 separates the images of a batch by shifting each image's boxes by its index times
    the largest coordinate, which boxes reaching past the top or left edge (negative coordinates) cross:
    one picture's face then suppressed another picture's, and a batch found other faces than one picture at
    a time (seen on tight 224 px face crops). Image by image, a batch answers exactly as single pictures do.
    """
    from facenet_pytorch.models.utils.detect_face import nms_numpy

    picks = []
    indices = image_indices.cpu().numpy()
    for image in np.unique(indices):
        members = np.flatnonzero(indices == image)
        keep = nms_numpy(boxes[members].cpu().numpy(), scores[members].cpu().numpy(), threshold, method)
        picks.append(members[np.asarray(keep, dtype=np.int64)])
    chosen = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(chosen, dtype=torch.long, device=boxes.device)


def answer_batches_as_single_pictures() -> None:
    """Make facenet's batched detection give each picture the faces it gets alone (see :func:`nms_each_image`)."""
    from facenet_pytorch.models.utils import detect_face

    detect_face.batched_nms_numpy = nms_each_image


def speed_up(detector: Any, weights_digest: str, threads: int) -> str:
    """Swap ``detector``'s (a facenet ``MTCNN``) stage networks for faster ones; returns the engine's name."""
    if openvino_installed():
        for name in STAGE_SHAPES:
            setattr(detector, name, compile_stage(name, getattr(detector, name), weights_digest, threads))
        return "openvino"
    for name in STAGE_SHAPES:
        getattr(detector, name).to(memory_format=torch.channels_last)
    return "torch-channels-last"


def _bins(out_size: int, in_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each output cell's input rows under area resampling, per input size.

    The integer bins of ``torch.nn.functional.adaptive_avg_pool2d`` (``interpolate(mode="area")``): cell ``a``
    of ``out_size`` covers input rows ``[floor(a * n / out), ceil((a + 1) * n / out))`` of ``n``.
    """
    cells = np.arange(out_size, dtype=np.int64)[None, :]
    sizes = np.asarray(in_sizes, dtype=np.int64).reshape(-1, 1)
    return (cells * sizes) // out_size, -((-(cells + 1) * sizes) // out_size)


def summed_area_tables(pictures: np.ndarray) -> np.ndarray:
    """(N, H+1, W+1, 3) exact integer sums of ``pictures`` (N, H, W, 3 uint8) above and left of each point."""
    count, height, width, channels = pictures.shape
    # int32 holds the sum of a whole 1024 x 1024 picture (2.7e8); larger ones need int64.
    dtype = np.int32 if height * width * 255 < 2**31 else np.int64
    tables = np.zeros((count, height + 1, width + 1, channels), dtype=dtype)
    inner = tables[:, 1:, 1:]
    inner[...] = pictures  # then summed in place: ~20% faster than cumsum's converting passes
    np.add.accumulate(inner, axis=1, out=inner)
    np.add.accumulate(inner, axis=2, out=inner)
    return tables


def _cell_means(sums: np.ndarray, row_counts: np.ndarray, col_counts: np.ndarray) -> torch.Tensor:
    # Divided by the cell's height, then its width: the float32 rounding of adaptive_avg_pool2d, bit for bit
    # (integer sums below 2**24 are exact in float32).
    means = sums.astype(np.float32)
    means /= row_counts.astype(np.float32)
    means /= col_counts.astype(np.float32)
    return torch.from_numpy(means)


def _box_sums(tables: np.ndarray, offsets: np.ndarray, row0: np.ndarray, row1: np.ndarray, col0: np.ndarray,
              col1: np.ndarray) -> np.ndarray:  # fmt: skip
    """Sums of the cells ``[row0:row1, col0:col1]`` from summed-area ``tables`` viewed as one row per point.

    ``offsets`` (where each cell's picture starts in that view) and the bounds broadcast to the cells' shape.
    """
    stride = tables.shape[-2]
    flat = tables.reshape(-1, tables.shape[-1])

    def corner(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return flat.take((offsets + rows * stride + cols).reshape(-1), axis=0)

    sums = corner(row1, col1) - corner(row0, col1) - corner(row1, col0)
    sums += corner(row0, col0)
    return sums


def area_resize(tables: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Every picture of ``tables`` resampled to (height, width) as ``interpolate(mode="area")`` does, bit for bit.

    Four gathers from the summed-area tables instead of a pooling pass over every pixel per pyramid level.
    Returns (N, 3, height, width) float32 (channels-last memory, as facenet's pyramid has).
    """
    count, rows, cols, channels = tables.shape
    row0, row1 = (bins[0][None, :, None] for bins in _bins(height, [rows - 1]))
    col0, col1 = (bins[0][None, None, :] for bins in _bins(width, [cols - 1]))
    offsets = (np.arange(count, dtype=np.int64) * rows * cols)[:, None, None]
    sums = _box_sums(tables, offsets, row0, row1, col0, col1).reshape(count, height, width, channels)
    means = _cell_means(sums, (row1 - row0)[..., None], (col1 - col0)[..., None])
    return means.permute(0, 3, 1, 2)


def area_crops(tables: np.ndarray, pictures: np.ndarray, top: np.ndarray, bottom: np.ndarray, left: np.ndarray,
               right: np.ndarray, side: int) -> torch.Tensor:  # fmt: skip
    """Crops ``[top:bottom, left:right]`` of the pictures ``pictures`` (indices into ``tables``) resampled to
    ``side`` px.

    What ``interpolate(crop, (side, side), mode="area")`` answers crop by crop (facenet-pytorch's RNet and ONet
    input, ~50 boxes a picture), bit for bit, from four gathers for all crops. Returns (boxes, 3, side, side).
    """
    row_start, row_end = _bins(side, bottom - top)
    col_start, col_end = _bins(side, right - left)
    offsets = (pictures.astype(np.int64) * tables.shape[1] + top) * tables.shape[2] + left
    sums = _box_sums(
        tables, offsets[:, None, None], row_start[:, :, None], row_end[:, :, None], col_start[:, None, :],
        col_end[:, None, :],
    ).reshape(len(top), side, side, -1)  # fmt: skip
    rows = (row_end - row_start)[:, :, None, None]
    cols = (col_end - col_start)[:, None, :, None]
    return _cell_means(sums, rows, cols).permute(0, 3, 1, 2).contiguous()


def _stage_crops(
    tables: np.ndarray, boxes: torch.Tensor, image_indices: torch.Tensor, side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """facenet's clipped crops of the boxes that have pixels in their picture, resampled to ``side`` px, and
    those boxes' indices in the order of the crops."""
    from facenet_pytorch.models.utils.detect_face import pad

    height, width = tables.shape[1] - 1, tables.shape[2] - 1
    top, bottom, left, right = pad(boxes, width, height)  # 1-based, clipped to the picture (facenet's rule)
    top, left = top.astype(np.int64) - 1, left.astype(np.int64) - 1
    bottom, right = bottom.astype(np.int64), right.astype(np.int64)
    # facenet skips a box with no pixels inside the picture (and then mismatches its scores); here it is dropped.
    usable = np.flatnonzero((bottom > top) & (right > left))
    pictures = image_indices.cpu().numpy()[usable]
    crops = area_crops(tables, pictures, top[usable], bottom[usable], left[usable], right[usable], side)
    return crops, torch.from_numpy(usable.astype(np.int64))


@torch.no_grad()
def detect_batch(detector: Any, pictures: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Faces of each picture in ``pictures`` (N, H, W, 3 uint8), as facenet ``MTCNN.detect`` finds them.

    facenet-pytorch's three-stage algorithm (``detect_face``: PNet over an image pyramid, RNet on 24 px crops,
    ONet on 48 px crops, with its thresholds, NMS and box regression, whose helpers are called here), with
    three changes: the pyramid levels and the 24 and 48 px crops of all boxes come from one summed-area table
    per picture (:func:`area_resize`, :func:`area_crops`; the same float32 numbers) instead of one
    ``interpolate`` call per level and per box (together ~40% of a single-threaded batch of 256 px photos);
    the last NMS runs picture by picture (:func:`nms_each_image`); landmarks are not computed (unused).
    Returns each picture's boxes (n, 4) and probabilities (n,), surest of overlapping boxes kept.
    """
    from facenet_pytorch.models.utils.detect_face import bbreg, generateBoundingBox, rerec
    from torchvision.ops.boxes import batched_nms

    threshold, factor = detector.thresholds, detector.factor
    tables = summed_area_tables(np.ascontiguousarray(pictures))
    height, width = pictures.shape[1:3]
    scale, smallest = 12.0 / detector.min_face_size, min(height, width) * 12.0 / detector.min_face_size
    scales = []
    while smallest >= 12:
        scales.append(scale)
        scale, smallest = scale * factor, smallest * factor

    # Stage 1: PNet over the pyramid, NMS within each level and picture, then within each picture.
    level_boxes, level_indices = [], []
    for scale in scales:
        level = area_resize(tables, int(height * scale + 1), int(width * scale + 1))
        regression, probabilities = detector.pnet((level - 127.5) * 0.0078125)
        found, indices = generateBoundingBox(regression, probabilities[:, 1], scale, threshold[0])
        keep = batched_nms(found[:, :4], found[:, 4], indices, 0.5)
        level_boxes.append(found[keep])
        level_indices.append(indices[keep])
    boxes, image_indices = torch.cat(level_boxes), torch.cat(level_indices)
    keep = batched_nms(boxes[:, :4], boxes[:, 4], image_indices, 0.7)
    boxes, image_indices = boxes[keep], image_indices[keep]
    box_width, box_height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * box_width,
            boxes[:, 1] + boxes[:, 6] * box_height,
            boxes[:, 2] + boxes[:, 7] * box_width,
            boxes[:, 3] + boxes[:, 8] * box_height,
            boxes[:, 4],
        ],
        dim=1,
    )
    boxes = rerec(boxes)

    # Stages 2 and 3: RNet on 24 px crops, ONet on 48 px crops, each keeping boxes above its threshold.
    for stage, side, stage_threshold in ((detector.rnet, 24, threshold[1]), (detector.onet, 48, threshold[2])):
        if len(boxes) == 0:
            break
        crops, order = _stage_crops(tables, boxes, image_indices, side)
        boxes, image_indices = boxes[order], image_indices[order]
        outputs = stage((crops - 127.5) * 0.0078125)
        regression, scores = outputs[0], outputs[-1][:, 1]
        passed = scores > stage_threshold
        boxes = torch.cat((boxes[passed, :4], scores[passed].unsqueeze(1)), dim=1)
        image_indices, regression = image_indices[passed], regression[passed]
        if side == 24:
            keep = batched_nms(boxes[:, :4], boxes[:, 4], image_indices, 0.7)
            boxes = rerec(bbreg(boxes[keep], regression[keep]))
            image_indices = image_indices[keep]
        else:
            boxes = bbreg(boxes, regression)
            keep = nms_each_image(boxes[:, :4], boxes[:, 4], image_indices, 0.7, "Min")
            boxes, image_indices = boxes[keep], image_indices[keep]

    found_boxes = boxes.numpy() if len(boxes) else np.zeros((0, 5), dtype=np.float32)
    indices = image_indices.numpy() if len(boxes) else np.zeros(0, dtype=np.int64)
    return [(found_boxes[indices == i, :4], found_boxes[indices == i, 4]) for i in range(len(pictures))]
