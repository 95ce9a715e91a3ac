"""Exporting a trained model to ONNX, with a dynamic batch dimension."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from facecheck.config import PreprocessConfig, TrainConfig
from facecheck.data.presets import input_size
from facecheck.errors import CheckpointError, ConfigError, FacecheckError
from facecheck.extras import require
from facecheck.models import FaceClassifier

INPUT_NAME, OUTPUT_NAME = "images", "logits"
METADATA_KEY = "facecheck"


def checkpoint_card(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Everything of a checkpoint but its tensors: enough to preprocess, calibrate and describe the model."""
    return {k: v for k, v in checkpoint.items() if k not in ("state_dict", "train_state")}


def export_onnx(
    model: FaceClassifier,
    preprocess: PreprocessConfig,
    path: str | Path,
    opset: int = 17,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (normalised ``(B, 3, S, S)`` input -> ``(B, 2)`` logits) as ONNX.

    ``card`` (see :func:`checkpoint_card`) is stored in the file's metadata, so
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


def write_card(path: Path, card: dict[str, Any]) -> None:
    require("onnx", "export")
    import onnx

    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(card)
    onnx.save(graph, str(path))


def read_card(path: Path) -> dict[str, Any]:
    """The facecheck card of an exported ``.onnx`` file (parsing protobuf runs no code), checked."""
    require("onnx", "export")
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a usable ONNX file"
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None
    for entry in graph.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                card = json.loads(entry.value)
            except ValueError:
                raise CheckpointError(f"{path}: its facecheck metadata is not valid JSON") from None
            if isinstance(card, dict) and card.get("format") == "facecheck-checkpoint":
                return check_card(card, path)
    raise CheckpointError(f"{path} was not exported by facecheck (no preprocessing metadata); use `facecheck export`")


def check_card(card: dict[str, Any], path: Path) -> dict[str, Any]:
    """Reject a card (possibly crafted) whose values would make predictions meaningless or fail later."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: its facecheck metadata has {what}")

    for key in ("threshold", "temperature"):
        value = card.get(key, 0.5 if key == "threshold" else 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"a {key} that is not a finite number")
    if not 0 <= card.get("threshold", 0.5) <= 1:
        raise bad("a threshold outside [0, 1]")
    if card.get("temperature", 1.0) <= 0:
        raise bad("a temperature that is not positive")
    names = card.get("class_names")
    if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise bad("no list of two class names")
    if not isinstance(card.get("model_name"), str):
        raise bad("no model name")
    config = card.get("config")
    if not (isinstance(config, dict) and isinstance(config.get("data"), dict)):
        raise bad("no training config")
    min_size = config["data"].get("min_image_size", 1)
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise bad("a minimum image size that is not a positive whole number")
    try:
        TrainConfig.from_dict({"preprocess": card.get("preprocess")})
    except ConfigError as exc:
        raise bad(f"unusable preprocessing ({exc})") from None
    return card


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
    write_card(out_path, read_card(fp32_path))
    return out_path
