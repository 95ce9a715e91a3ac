"""Exporting a trained model to ONNX, with a dynamic batch dimension."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from facecheck.card import ModelCard
from facecheck.config import PreprocessConfig
from facecheck.data.transforms import input_size
from facecheck.errors import CheckpointError, FacecheckError
from facecheck.extras import require
from facecheck.models import FaceClassifier

INPUT_NAME, OUTPUT_NAME = "images", "logits"
MAX_CARD_BYTES = 1_000_000
METADATA_KEY = "facecheck"


def export_onnx(
    model: FaceClassifier,
    preprocess: PreprocessConfig,
    path: str | Path,
    opset: int = 17,
    card: ModelCard | None = None,
) -> Path:
    """Write ``model`` (normalised ``(B, 3, S, S)`` input -> ``(B, 2)`` logits) as ONNX.

    ``card`` (the model card) is stored in the file's metadata, so
    that the ``.onnx`` file alone can be served with the right preprocessing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    size = input_size(preprocess)
    example = torch.zeros(2, 3, size, size)
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
    if card is not None:
        write_card(path, card)
    return path


def write_card(path: Path, card: ModelCard) -> None:
    require("onnx", "export")
    import onnx

    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(card.to_dict())
    onnx.save(graph, str(path))


def read_onnx_card(path: Path) -> ModelCard:
    """The facecheck card of an exported ``.onnx`` file (parsing protobuf runs no code), validated."""
    require("onnx", "export")
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a usable ONNX file"
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    for entry in graph.metadata_props:
        if entry.key == METADATA_KEY:
            if len(entry.value) > MAX_CARD_BYTES:
                raise CheckpointError(f"{path}: its model card is implausibly large")
            try:
                raw = json.loads(entry.value)
            except (json.JSONDecodeError, RecursionError):
                raise CheckpointError(f"{path}: its model card is not valid JSON") from None
            return ModelCard.from_dict(raw, str(path))
    raise CheckpointError(f"{path} was not exported by facecheck (no preprocessing metadata); use `facecheck export`")


def quantize_int8(fp32_path: Path, out_path: Path, calibration: list[torch.Tensor]) -> Path:
    """Static int8 quantisation (ONNX Runtime, QDQ, per-channel weights) calibrated on real images."""
    require("onnxruntime", "export")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise FacecheckError("int8 quantisation needs calibration images (--calibration DIR)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: t.unsqueeze(0).numpy()} for t in calibration])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    prepared = out_path.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)
    write_card(out_path, read_onnx_card(fp32_path))
    return out_path
