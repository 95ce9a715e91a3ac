"""Exporting a trained model to ONNX, with a dynamic batch dimension."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from facecheck.config import PreprocessConfig
from facecheck.errors import FacecheckError
from facecheck.models import FaceClassifier

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_onnx(model: FaceClassifier, preprocess: PreprocessConfig, path: str | Path, opset: int = 17) -> Path:
    """Write ``model`` (normalised ``(B, 3, S, S)`` input -> ``(B, 2)`` logits) as ONNX."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, 3, preprocess.image_size, preprocess.image_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:  # noqa: BLE001 - exporter errors are many and version-specific
        raise FacecheckError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return path
