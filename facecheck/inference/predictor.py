"""Prediction with a trained model: the same preprocessing it was trained with, one result per input."""

from __future__ import annotations

import functools
import sys
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
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
from facecheck.config import PreprocessConfig
from facecheck.data.discovery import iter_images
from facecheck.data.faces import MIN_FACE_SIDE, Face
from facecheck.data.images import header_pixels, load_image, to_rgb
from facecheck.data.parallel import map_pictures
from facecheck.data.transforms import FaceViews, eval_transform, size_notice
from facecheck.device import resolve_device
from facecheck.errors import CheckpointError, DataError, InputError, InputNotFoundError, InputTypeError
from facecheck.files import file_sha256
from facecheck.inference.engines import (
    DEFAULT_CHECK_MARGIN,
    OnnxEngine,
    OpenVinoEngine,
    TorchEngine,
    cached_onnx_export,
    resolve_backend,
    resolve_engine_precision,
)
from facecheck.inference.outputs import mean_over_views, near_decisions, p_fake_of
from facecheck.inference.protocol import ReadsItsCard
from facecheck.models import FaceClassifier
from facecheck.provenance import Provenance, read_provenance

ImageInput = str | Path | Image.Image | np.ndarray
NO_FACE = "no face"
# Batches prepared (decoded, searched for faces, cropped) while the engine scores the current one.
PREPARE_AHEAD = 2
# A batch holds at most this many pixels of pictures (but at least two pictures): a batch of large photos
# is then a few photos, so that decoding the next ones overlaps the face search of these (and 32 photos of
# 12 MP are not held at once). 32 photos of 256 px are 2.1 MP; 4000 px photos go two by two, 1024 px ones
# ten by ten (in one process 175 against 213 ms a 4000 px photo, 47 against 58 ms a 1024 px one, than 16 or
# 32 at a time: docs/results.md, issue 27's fourth session).
BATCH_PIXELS = 8_000_000
SHIPPED_PREFIX = "shipped model "  # a detector's source when it is a model shipped with facecheck
NO_FACE_NOTICE = "no face found: the verdict of a face detector means nothing here"


def no_face_check_notice(problem: str) -> str:
    """The notice beside every verdict when the card promises a face check that cannot be made here."""
    return f"not checked for a face ({problem}): the verdict assumes a face photo"


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


Engine = Callable[[torch.Tensor], np.ndarray]


# At most MAX_FACES faces of one picture are judged (the largest ones; see judged_faces for the smallest).
MAX_FACES = 16


@dataclass
class FaceResult:
    """One face of a picture: where it is, how sure the face detector was, and its own verdict."""

    box: tuple[int, int, int, int]  # left, top, right, bottom, in the picture's pixels
    confidence: float  # the face detector's probability that this is a face
    p_fake: float | None = None
    label: str | None = None


@dataclass
class Prediction:
    """One input's result: ``p_fake`` in [0, 1] and its label, or ``error``.

    For a model that judges faces (``preprocess.face_crop``), ``faces`` lists every face found (largest first)
    with its own ``p_fake`` and label; the picture's ``p_fake`` and label are those of the most suspicious face,
    ``decided_by`` (its index in ``faces``). A picture without a face has ``faces == []`` and the label
    ``no face`` when the face check is on.
    """

    path: str | None
    p_fake: float | None = None
    label: str | None = None
    error: str | None = None
    # Said beside the verdict, e.g. that no face was found (the label is then "no face").
    notice: str | None = None
    faces: list[FaceResult] | None = None
    decided_by: int | None = None
    # What the file declares about itself (C2PA, IPTC source type, EXIF, generator text): beside the verdict, never
    # part of it. Read for path inputs; see facecheck.provenance.
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("path",)}


class Detector(ReadsItsCard):
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
        # bf16-checked: the float32 engine for inputs near a decision, and how near (see predict_tensor).
        self.exact_engine: Engine | None = None
        self.check_margin = DEFAULT_CHECK_MARGIN
        # Everything about reading the model's output (threshold, temperature, band, preprocessing) stays on
        # its card; a threshold of the user's is an argument of predict, never written into the detector.
        self.card = card
        # Test-time augmentation: the checkpoint's own setting unless overridden.
        self.tta = self.preprocess.tta if tta is None else tta
        self.transform = eval_transform(self.preprocess, self.tta)
        # A face-crop model: one detection per picture serves the face check, each face's crop and the verdict.
        self.face_views = FaceViews(self.preprocess, self.tta) if self.preprocess.face_crop else None
        # One (3, s, s) tensor per image: for Grad-CAM and int8 calibration, which need plain batches.
        self.single_view_transform = eval_transform(self.preprocess, "none")
        # Look for a face (MTCNN) first and answer "no face" without one; default: as the card says.
        self.face_check = bool(card.scope.get("face_check", False)) if face_check is None else face_check
        if face_check:  # asked for by name: without the detector that is an error, not a silent skip
            from facecheck.data.faces import detector_identity

            detector_identity()
        self.source = "<in memory>"

    @property
    def face_check_problem(self) -> str | None:
        """Why the face check this detector should make cannot be made here (None: it can, or is not asked for)."""
        if not (self.face_check or self.face_views is not None):
            return None
        from facecheck.data.faces import face_detector_problem

        return face_detector_problem()

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: str = "auto",
        backend: str = "torch",
        tta: str | None = None,
        face_check: bool | None = None,
        precision: str = "auto",
    ) -> Detector:
        """Load a run folder, checkpoint or exported ``.onnx`` file; ``None``: the model shipped with facecheck.

        ``backend``: ``torch``; ``onnx`` (ONNX Runtime) or ``openvino`` run an
        ONNX export of the weights on the CPU; ``auto`` the fastest of them that is installed
        (:data:`facecheck.inference.engines.AUTO_ORDER`). ``tta``: test-time augmentation
        (none, flip, five-crop, five-crop-flip); default: the model's own. ``precision``: the network's,
        ``fp32``, ``bf16`` (OpenVINO on a CPU with native bf16), ``bf16-checked`` (bf16, float32 again near a
        decision) or ``auto``: the bf16 kind the model's card makes its default where this engine and CPU run
        it natively, else fp32 (:func:`facecheck.inference.engines.resolve_engine_precision`).
        """
        if backend not in BACKENDS:
            raise DataError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        backend = resolve_backend(backend, resolve_device(device))
        resolve_engine_precision(precision, backend)  # a bad choice fails before any loading
        checked_by: list[Engine] = []  # bf16-checked: the float32 engine that scores near-decision inputs again

        def compiled(exported: Path, card: ModelCard) -> Engine:
            if backend == "onnx":
                return OnnxEngine(exported)
            chosen = resolve_engine_precision(precision, backend, card_default_precisions(card))
            if chosen == "bf16-checked":
                checked_by.append(OpenVinoEngine(exported, precision="fp32"))
                return OpenVinoEngine(exported, precision="bf16")
            return OpenVinoEngine(exported, precision=chosen)

        detector = cls._load(path, device, backend, tta, face_check, compiled)
        if checked_by:
            detector.exact_engine = checked_by[0]
            margin = measured_engines(detector.card).get("bf16_check_margin", DEFAULT_CHECK_MARGIN)
            detector.check_margin = float(margin)
        return detector

    @classmethod
    def _load(
        cls,
        path: str | Path | None,
        device: str,
        backend: str,
        tta: str | None,
        face_check: bool | None,
        compiled: Callable[[Path, ModelCard], Engine],
    ) -> Detector:
        """:meth:`load` once the engine's precision is settled: ``compiled`` builds an ONNX engine for a card."""
        from facecheck.inference.release import shipped_name

        shipped = shipped_name(path)
        if shipped is not None:
            from facecheck.inference.release import load_release, release

            model, card = load_release(shipped) if path is not None else load_release()
            engine = None
            if backend in ("onnx", "openvino"):
                weights = (release(shipped) if path is not None else release()).weights
                engine = compiled(cached_onnx_export(weights, model, card.preprocess), card)
            detector = cls(model, card, device, engine, tta, face_check)
            detector.source = f"{SHIPPED_PREFIX}{shipped}"
            return detector
        if Path(path).suffix == ".onnx":
            from facecheck.inference.cards import load_card

            onnx_path = Path(path).expanduser()
            if not onnx_path.is_file():
                raise CheckpointError(f"model not found: {onnx_path}")
            card = load_card(onnx_path)
            engine = compiled(onnx_path, card) if backend == "openvino" else OnnxEngine(onnx_path)
            detector = cls(None, card, device, engine, tta, face_check)
            detector.source = str(onnx_path)
            return detector
        checkpoint_path = resolve_checkpoint_path(path)
        model, card = load_model(checkpoint_path)
        engine = None
        if backend in ("onnx", "openvino"):
            engine = compiled(cached_onnx_export(checkpoint_path, model, card.preprocess), card)
        detector = cls(model, card, device, engine, tta, face_check)
        detector.source = str(checkpoint_path)
        return detector

    @property
    def backend(self) -> str:
        return self.engine.name

    @property
    def precision(self) -> str:
        """What the network runs in: ``fp32``, ``bf16``, or ``bf16-checked`` (float32 again near decisions)."""
        if self.exact_engine is not None:
            return "bf16-checked"
        return getattr(self.engine, "precision", "fp32")

    @functools.cached_property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights file this detector was loaded from (None for one built in memory)."""
        if self.source.startswith(SHIPPED_PREFIX):
            from facecheck.inference.release import release

            return release(self.source.removeprefix(SHIPPED_PREFIX)).weights_sha256
        path = Path(self.source)
        return file_sha256(path) if path.is_file() else None

    @property
    def temperature(self) -> float:
        """Temperature scaling fitted on validation data: p_fake = softmax(logits / T)."""
        return self.card.temperature

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.card.preprocess

    @property
    def min_size(self) -> int:
        return self.card.min_image_size

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

    def predict_tensor(self, batch: torch.Tensor, threshold: float | None = None) -> np.ndarray:
        """Calibrated ``p_fake`` of a preprocessed ``(B, 3, H, W)`` batch, or ``(B, V, 3, H, W)`` views averaged.

        bf16-checked (``exact_engine`` set): the inputs whose bf16 p_fake lies within ``check_margin`` of a
        decision point (the card's, or ``threshold``) are scored again in float32, so that their verdicts are
        float32's.
        """
        p_fake = p_fake_of(mean_over_views(self.engine, batch), self.temperature)
        if self.exact_engine is not None:
            near = near_decisions(p_fake, self.card.decision_points(threshold), self.check_margin)
            if near.any():
                again = batch[torch.from_numpy(np.flatnonzero(near))]
                p_fake[near] = p_fake_of(mean_over_views(self.exact_engine, again), self.temperature)
        return p_fake

    def predict(
        self,
        images: ImageInput | Iterable[ImageInput],
        batch_size: int = 32,
        progress: bool = False,
        threshold: float | None = None,
        provenance: bool = True,
    ) -> list[Prediction]:
        """Predict each image: paths, folders (every image file below them, sorted), PIL images or uint8 arrays.

        ``batch_size``: at most this many pictures are decoded, searched and scored together (and, from two
        on, at most BATCH_PIXELS of them); the next batches are prepared while the engine scores one.
        ``threshold``: decide at this p_fake instead of the card's own (the ``uncertain`` band, fitted around
        the card's threshold, is then dropped).

        Misuse raises before any work (see :func:`expand_image_inputs`): a missing path, an object of another
        type, a malformed array, a folder without images. A file that exists but cannot be read or
        preprocessed (corrupt, truncated, too small) gets ``error`` set in its result instead, and never
        stops the others. ``progress``: a bar on stderr (see :func:`show_progress` for the CLI's choice).
        ``provenance``: read what each file (path) declares about itself (:mod:`facecheck.provenance`) into
        its result; evaluation, which only needs scores, turns it off.
        """
        items = expand_image_inputs(images)
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1 (got {batch_size})")
        results = [Prediction(str(item) if isinstance(item, (str, Path)) else None) for item in items]
        for item, result in zip(items, results, strict=True):
            if provenance and isinstance(item, (str, Path)):
                result.provenance = read_provenance(item)  # never raises: problems go to its own error
        bar = tqdm(total=len(items), desc="predicting", unit="img", disable=not progress, leave=False, file=sys.stderr)
        batches = picture_batches(items, batch_size)

        def prepare(indices: range) -> list[list[torch.Tensor]]:
            return self._prepare_batch([items[i] for i in indices], [results[i] for i in indices])

        def score(indices: range, prepared: list[list[torch.Tensor]]) -> None:
            # Each picture gives one input, or one per face for a face-crop model.
            tensors = [tensor for views in prepared for tensor in views]
            if tensors:
                scores = iter(self.predict_tensor(_stack(tensors), threshold).tolist())
                for index, views in zip(indices, prepared, strict=True):
                    if views:
                        self._decide(results[index], [next(scores) for _ in views], threshold)
            bar.update(len(indices))

        if len(batches) == 1:  # nothing to overlap: no worker thread to start (batch-1 latency)
            score(batches[0], prepare(batches[0]))
        elif batches:
            # The next batches are decoded, searched for faces and cropped while the engine runs this one
            # (decoding, MTCNN and the engines release the GIL); scores are those of one batch after another.
            # Two at once: one's single-threaded NumPy steps fill the core the other's networks leave idle.
            with ThreadPoolExecutor(max_workers=PREPARE_AHEAD, thread_name_prefix="facecheck-prepare") as pool:
                upcoming = deque(pool.submit(prepare, batch) for batch in batches[:PREPARE_AHEAD])
                for number, indices in enumerate(batches):
                    prepared = upcoming.popleft().result()
                    if number + PREPARE_AHEAD < len(batches):
                        upcoming.append(pool.submit(prepare, batches[number + PREPARE_AHEAD]))
                    score(indices, prepared)
        bar.close()
        return results

    def _decide(self, result: Prediction, scores: list[float], threshold: float | None) -> None:
        """The picture's verdict from its inputs' scores: the most suspicious face decides."""
        if any(not np.isfinite(score) for score in scores):  # never a verdict from a broken number
            result.error = f"{result.path or 'image'}: the model gave no finite score (NaN): its card is unusable"
            result.faces = None
            return
        if result.faces:
            for face, p_fake in zip(result.faces, scores, strict=True):
                face.p_fake, face.label = p_fake, self.card.decide(p_fake, threshold)
            result.decided_by = int(np.argmax(scores))
        result.p_fake = max(scores)
        no_face = NO_FACE_NOTICE in (result.notice or "")  # other notices (size, no face check) keep the verdict
        result.label = NO_FACE if no_face else self.card.decide(result.p_fake, threshold)

    def _prepare_batch(self, items: list[ImageInput], results: list[Prediction]) -> list[list[torch.Tensor]]:
        """The model's input views of each item (one per judged face for a face-crop model), or none with
        ``result.error`` set. The pictures that need a face search are searched together (see
        :func:`facecheck.data.faces.detect_faces_batch`).

        ``result.notice`` says what limits the verdict: no face, no face check possible here, a picture far
        from the size the model judges (see :func:`facecheck.data.transforms.size_notice`).
        """

        def picture(item: ImageInput) -> Image.Image | DataError:
            try:
                image = self._to_image(item)
                # A face-crop model searches and crops the picture as training saw it (JPEG-normalised). The
                # whole picture, even a large one: searched un-normalised, MTCNN's boxes move a few pixels,
                # and p_fake with them (by up to 0.07 on 4000 px scenes, benchmarks/scoring_speed.py).
                return self.face_views.normalised(image) if self.face_views is not None else image
            except DataError as exc:
                return exc

        pictures: list[Image.Image | None] = []
        for result, decoded in zip(results, map_pictures(picture, items), strict=True):  # on every core
            if isinstance(decoded, DataError):
                _set_error(result, decoded)
            pictures.append(None if isinstance(decoded, DataError) else decoded)
        searched = [index for index, picture in enumerate(pictures) if picture is not None]
        found = self._find_faces([pictures[index] for index in searched])
        faces_of = dict(zip(searched, found, strict=True)) if found is not None else {}
        prepared: list[list[torch.Tensor]] = []
        for index, (picture, result) in enumerate(zip(pictures, results, strict=True)):
            if picture is None:
                prepared.append([])
                continue
            try:
                if self.face_views is not None:
                    prepared.append(self._face_inputs(picture, faces_of.get(index), result))
                else:
                    prepared.append(self._picture_input(picture, faces_of.get(index), result))
            except DataError as exc:
                _set_error(result, exc)
                prepared.append([])
        return prepared

    def _find_faces(self, pictures: list[Image.Image]) -> list[list[Face]] | None:
        """The faces of each picture, or None when this detector does not look for faces or cannot here."""
        if not pictures or not (self.face_views is not None or self.face_check) or self.face_check_problem:
            return None
        from facecheck.data.faces import detect_faces_batch

        return detect_faces_batch(pictures, fast=True)

    def _picture_input(self, image: Image.Image, faces: list[Face] | None, result: Prediction) -> list[torch.Tensor]:
        """A whole-picture model's input; with the face check on, "no face" when MTCNN found none."""
        notices = []
        # True: a face, or no check asked for; False: no face; None: the check could not be made here.
        found = True if not self.face_check else (None if faces is None else bool(faces))
        if found is False:
            notices.append(NO_FACE_NOTICE)
        elif found is None:
            notices.append(no_face_check_notice(self.face_check_problem or "no face detector"))
        sized = size_notice(self.preprocess, image.size)
        if sized and found is not False:
            notices.append(sized)
        result.notice = "; ".join(notices) or None
        return [self.transform(image)]

    def _face_inputs(self, normalised: Image.Image, faces: list[Face] | None, result: Prediction) -> list[torch.Tensor]:
        """A face-crop model's inputs: one per judged face, or the whole picture (no face, or no detector here)."""
        from facecheck.data.faces import NoFaceError

        assert self.face_views is not None
        if faces is None:  # no face detector here: the whole picture, as training judged faceless ones
            problem = self.face_check_problem or "no face detector"
            result.notice = f"{no_face_check_notice(problem)}; the whole picture was judged, not its faces"
            return [self.face_views.views(normalised, None)]
        judged = judged_faces(faces)
        result.faces = [FaceResult(tuple(round(v) for v in f.box), round(f.probability, 4)) for f in judged]
        if judged:
            return [self.face_views.views(normalised, face) for face in judged]
        if self.face_check:
            result.notice = NO_FACE_NOTICE
        elif self.preprocess.no_face != "keep":
            raise NoFaceError("no face found (the model judges faces only)")
        return [self.face_views.views(normalised, None)]  # the whole picture, as in training

    __call__ = predict


def picture_batches(items: list[ImageInput], batch_size: int) -> list[range]:
    """``items`` in order, cut into batches of at most ``batch_size`` items and (from two on) BATCH_PIXELS
    pixels, the files' sizes read from their headers."""
    batches: list[range] = []
    start = pixels = 0
    for index, item in enumerate(items):
        count = _pixels(item) if batch_size > 2 else 0
        held = index - start
        if held >= batch_size or (held >= 2 and pixels + count > BATCH_PIXELS):
            batches.append(range(start, index))
            start, pixels = index, 0
        pixels += count
    if start < len(items):
        batches.append(range(start, len(items)))
    return batches


def _pixels(item: ImageInput) -> int:
    if isinstance(item, (str, Path)):
        return header_pixels(item)
    if isinstance(item, Image.Image):
        return item.width * item.height
    return int(np.prod(np.shape(item)[:2]))


def measured_engines(card: ModelCard) -> dict[str, Any]:
    """What the model's card measured of engines and precisions (benchmarks/release_model.py --engines)."""
    return (card.scope.get("measured") or {}).get("engines") or {}


def card_default_precisions(card: ModelCard) -> set[str]:
    """The lower precisions the model's card makes its default: measured to keep its verdicts and to run faster
    (benchmarks/precision_holds.py, benchmarks/release_model.py --engines)."""
    engines = measured_engines(card)
    return {name for name, key in (("bf16", "bf16_default"), ("bf16-checked", "bf16_checked_default"))
            if engines.get(key) is True}  # fmt: skip


def judged_faces(found: list[Face]) -> list[Face]:
    """The faces of a picture that get a verdict, largest first: the largest always, others from
    MIN_FACE_SIDE px up, at most MAX_FACES (``Prediction.faces`` and per-face Grad-CAM count in this order)."""
    ordered = sorted(found, key=lambda f: -f.area)
    return [f for i, f in enumerate(ordered) if i == 0 or min(_sides(f.box)) >= MIN_FACE_SIDE][:MAX_FACES]


def _sides(box: tuple[float, ...]) -> tuple[float, float]:
    return box[2] - box[0], box[3] - box[1]


def _set_error(result: Prediction, exc: DataError) -> None:
    """A file that cannot be read or preprocessed: its result says why (with its path), the others go on."""
    message, where = str(exc), result.path
    prefixed = where is None or message.startswith(where)
    result.error = message if prefixed else f"{where}: {message}"


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One batch of prepared inputs, made without torch's thread pool: a copy that large wakes its threads,
    which then spin against the inference engine's own on a small CPU (as in :class:`ToViews`)."""
    if len(tensors) == 1:
        return tensors[0][None]
    return torch.from_numpy(np.stack([tensor.numpy() for tensor in tensors]))
