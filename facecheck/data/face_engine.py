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

    def __init__(self, net: nn.Module, compiled: Any) -> None:
        super().__init__()
        self.net = net  # facenet reads the stage's dtype from its first parameter
        self.compiled = compiled  # called only under facecheck.data.faces' detector lock: one call at a time

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.compiled(np.ascontiguousarray(batch.numpy(), dtype=np.float32))
        return tuple(torch.from_numpy(np.array(outputs[index])) for index in range(len(self.compiled.outputs)))


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
    return CompiledStage(net, core.compile_model(model, "CPU", config))


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
