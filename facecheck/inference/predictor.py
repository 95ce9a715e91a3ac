"""Prediction with a trained model: the same preprocessing it was trained with, one result per input."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from facecheck.card import ModelCard
from facecheck.checkpoint import load_model, resolve_checkpoint_path
from facecheck.choices import BACKENDS
from facecheck.data.discovery import iter_images
from facecheck.data.images import load_image, to_rgb
from facecheck.data.presets import eval_transform
from facecheck.device import resolve_device
from facecheck.errors import CheckpointError, DataError, InputError, InputNotFoundError, InputTypeError
from facecheck.inference.engines import (
    OnnxEngine,
    OpenVinoEngine,
    TorchEngine,
    cached_onnx_export,
    resolve_backend,
)
from facecheck.inference.export import read_card
from facecheck.inference.outputs import mean_over_views, p_fake_of
from facecheck.models import FaceClassifier

ImageInput = str | Path | Image.Image | np.ndarray
NO_FACE = "no face"
# More inputs than this get a progress bar (on stderr) even when stderr is not a terminal.
FEW_IMAGES = 8


def expand_image_inputs(images: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    """One input or a sequence of them, with folders replaced by the image files below them (sorted).

    Misuse raises before any work: a path that does not exist (:class:`InputNotFoundError`), an object
    that is no path, PIL image or uint8 array (:class:`InputTypeError`), a malformed array or a folder
    without images (:class:`InputError`).
    """
    single = isinstance(images, (str, Path, Image.Image, np.ndarray))
    if not single and (not isinstance(images, Iterable) or isinstance(images, (bytes, bytearray))):
        raise InputTypeError(
            f"predict takes a path, a PIL image, a uint8 array or a list of them, not {type(images).__name__}"
        )
    expanded: list[ImageInput] = []
    for item in [images] if single else images:
        if isinstance(item, (str, Path)):
            path = Path(item).expanduser()
            if path.is_dir():
                found = iter_images(path)
                if not found:
                    raise InputError(f"no images (jpg, jpeg, png, webp, bmp) found in folder {path}")
                expanded.extend(found)
                continue
            if not path.exists():
                raise InputNotFoundError(f"file not found: {path}")
            expanded.append(path if path != Path(item) else item)  # "~/x.jpg" is read where it points
        elif isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (3, 4)):
                shape = "x".join(map(str, item.shape))
                raise InputError(
                    f"arrays must be uint8 shaped (H, W), (H, W, 3) or (H, W, 4), not {item.dtype} {shape}"
                )
            expanded.append(item)
        elif isinstance(item, Image.Image):
            expanded.append(item)
        else:
            raise InputTypeError(f"cannot predict on an object of type {type(item).__name__}")
    return expanded


def show_progress(count: int) -> bool:
    """Whether the CLI shows a progress bar (on stderr, so machine output on stdout stays clean) for ``count``
    inputs: on a terminal, or for more than a few inputs (a log then shows that the batch is moving)."""
    return count > FEW_IMAGES or sys.stderr.isatty()


def _has_face(image: Image.Image) -> bool | None:
    """Whether MTCNN finds a face; None when the face detector is not installed (the check is then skipped)."""
    from facecheck.data.faces import detect_faces
    from facecheck.errors import WeightsError

    try:
        return bool(detect_faces(image))
    except (WeightsError, ModuleNotFoundError):
        return None


Engine = Callable[[torch.Tensor], np.ndarray]


@dataclass
class Prediction:
    """One input's result: ``p_fake`` in [0, 1] and its label, or ``error``."""

    path: str | None
    p_fake: float | None = None
    label: str | None = None
    error: str | None = None
    # Said beside the verdict, e.g. that no face was found (the label is then "no face").
    notice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("path",)}


class Detector:
    """A trained real-vs-fake classifier ready to predict; calling it is the same as :meth:`predict`.

    >>> detector = facecheck.load("runs/demo")
    >>> [p.p_fake for p in detector.predict(["face.jpg", "photos/"])]
    >>> detector("face.jpg")[0].label
    """

    def __init__(
        self,
        model: FaceClassifier | None,
        card: ModelCard,
        device: str = "auto",
        engine: Engine | None = None,
        tta: str | None = None,
        face_check: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        # None for a model loaded from an exported .onnx file (no PyTorch weights: no Grad-CAM).
        self.model = model.eval() if model is not None else None
        if engine is None and model is None:
            raise DataError("a Detector needs a model or an inference engine")
        self.engine: Engine = engine or TorchEngine(model, self.device)
        self.card = card
        self.class_names: list[str] = list(card.class_names)
        self.threshold: float = card.threshold
        # Temperature scaling fitted on validation data: p_fake = softmax(logits / T).
        self.temperature: float = card.temperature
        self.preprocess = card.preprocess
        # Test-time augmentation: the checkpoint's own setting unless overridden.
        self.tta = self.preprocess.tta if tta is None else tta
        self.transform = eval_transform(self.preprocess, self.tta)
        # One (3, s, s) tensor per image: for Grad-CAM and int8 calibration, which need plain batches.
        self.single_view_transform = eval_transform(self.preprocess, "none")
        self.min_size = card.min_image_size
        # Look for a face (MTCNN) first and answer "no face" without one; default: as the card says.
        self.face_check = bool(card.scope.get("face_check", False)) if face_check is None else face_check
        self.source = "<in memory>"

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: str = "auto",
        backend: str = "torch",
        tta: str | None = None,
        face_check: bool | None = None,
    ) -> Detector:
        """Load a run folder, checkpoint or exported ``.onnx`` file; ``None``: the model shipped with facecheck.

        ``backend``: ``torch``; ``onnx`` (ONNX Runtime) or ``openvino`` run an
        ONNX export of the weights on the CPU; ``auto`` the fastest of them that is installed
        (:data:`facecheck.inference.engines.AUTO_ORDER`). ``tta``: test-time augmentation
        (none, flip, five-crop, five-crop-flip); default: the model's own.
        """
        if backend not in BACKENDS:
            raise DataError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        backend = resolve_backend(backend, resolve_device(device))
        if path is None:
            from facecheck.inference.release import DEFAULT_MODEL, load_release, release

            model, card = load_release()
            engine = None
            if backend in ("onnx", "openvino"):
                weights = release().weights
                exported = cached_onnx_export(weights, model, card.preprocess)
                engine = OnnxEngine(exported) if backend == "onnx" else OpenVinoEngine(exported)
            detector = cls(model, card, device, engine, tta, face_check)
            detector.source = f"shipped model {DEFAULT_MODEL}"
            return detector
        if Path(path).suffix == ".onnx":
            onnx_path = Path(path).expanduser()
            if not onnx_path.is_file():
                raise CheckpointError(f"model not found: {onnx_path}")
            engine_class = OpenVinoEngine if backend == "openvino" else OnnxEngine
            detector = cls(None, read_card(onnx_path), device, engine_class(onnx_path), tta, face_check)
            detector.source = str(onnx_path)
            return detector
        checkpoint_path = resolve_checkpoint_path(path)
        model, card = load_model(checkpoint_path)
        engine = None
        if backend in ("onnx", "openvino"):
            exported = cached_onnx_export(checkpoint_path, model, card.preprocess)
            engine = OnnxEngine(exported) if backend == "onnx" else OpenVinoEngine(exported)
        detector = cls(model, card, device, engine, tta, face_check)
        detector.source = str(checkpoint_path)
        return detector

    @property
    def backend(self) -> str:
        return self.engine.name

    @property
    def model_name(self) -> str:
        return self.card.model_name

    def _to_image(self, item: ImageInput) -> Image.Image:
        # Inputs were checked by expand_image_inputs: what fails here is the file or its preprocessing.
        if isinstance(item, (str, Path)):
            return load_image(item, self.min_size)
        if isinstance(item, Image.Image):
            return to_rgb(item)
        return to_rgb(Image.fromarray(item))

    def predict_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """Calibrated ``p_fake`` of a preprocessed ``(B, 3, H, W)`` batch, or ``(B, V, 3, H, W)`` views averaged."""
        return p_fake_of(mean_over_views(self.engine, batch), self.temperature)

    def predict(
        self, images: ImageInput | Iterable[ImageInput], batch_size: int = 32, progress: bool = False
    ) -> list[Prediction]:
        """Predict each image: paths, folders (every image file below them, sorted), PIL images or uint8 arrays.

        Misuse raises before any work (see :func:`expand_image_inputs`): a missing path, an object of another
        type, a malformed array, a folder without images. A file that exists but cannot be read or
        preprocessed (corrupt, truncated, too small) gets ``error`` set in its result instead, and never
        stops the others. ``progress``: a bar on stderr (see :func:`show_progress` for the CLI's choice).
        """
        items = expand_image_inputs(images)
        results = [Prediction(str(item) if isinstance(item, (str, Path)) else None) for item in items]
        bar = tqdm(total=len(items), desc="predicting", unit="img", disable=not progress, leave=False, file=sys.stderr)
        for start in range(0, len(items), batch_size):
            indices = range(start, min(start + batch_size, len(items)))
            prepared = [self._prepare(items[index], results[index]) for index in indices]
            slots = [index for index, tensor in zip(indices, prepared, strict=True) if tensor is not None]
            if slots:
                batch = _stack([tensor for tensor in prepared if tensor is not None])
                for index, p_fake in zip(slots, self.predict_tensor(batch), strict=True):
                    if not math.isfinite(float(p_fake)):  # damaged weights or card: an error, never a verdict
                        results[index].error = f"{results[index].path or 'image'}: {NOT_A_NUMBER}"
                        continue
                    results[index].p_fake = float(p_fake)
                    no_face = results[index].notice is not None
                    results[index].label = NO_FACE if no_face else self.card.decide(float(p_fake), self.threshold)
            bar.update(len(indices))
        bar.close()
        return results

    def _prepare(self, item: ImageInput, result: Prediction) -> torch.Tensor | None:
        """The model's input views of one item, or None with ``result.error`` set; notes a missing face."""
        try:
            image = self._to_image(item)
            found = _has_face(image) if self.face_check else True
            if found is False:
                result.notice = "no face found: the verdict of a face detector means nothing here"
            return self.transform(image)
        except DataError as exc:
            message, where = str(exc), result.path
            prefixed = where is None or message.startswith(where)
            result.error = message if prefixed else f"{where}: {message}"
            return None

    __call__ = predict


NOT_A_NUMBER = "the model's score is not a number (NaN): its weights or card are damaged; retrain or re-export it"


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One batch of prepared inputs, made without torch's thread pool: a copy that large wakes its threads,
    which then spin against the inference engine's own on a small CPU (as in :class:`ToViews`)."""
    if len(tensors) == 1:
        return tensors[0][None]
    return torch.from_numpy(np.stack([tensor.numpy() for tensor in tensors]))
