"""Face detection (MTCNN from facenet-pytorch) and cropping, the same at training and inference.

The MTCNN weights ship inside the ``facenet-pytorch==2.6.0`` wheel; their
sha256 digests are checked before they are loaded. That package cannot be a
dependency of facecheck (it pins torch < 2.3), so it is installed by hand
(``pip install --no-deps facenet-pytorch==2.6.0 requests``, as ``make`` does);
without it :func:`face_detector_problem` says why and a prediction says that no
face check was made. Detections are cached on disk keyed by the image's pixels
and the detector's identity (package version and weights), and the cache is read
only once the detector is known to be there, so an answer never depends on what
another install left in the cache.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facecheck.data.parallel import map_pictures
from facecheck.errors import DataError, WeightsError
from facecheck.files import file_sha256
from facecheck.paths import cache_folder

# Digests of the files in the facenet-pytorch 2.6.0 wheel (measured on its PyPI wheel).
MTCNN_WEIGHTS = {
    "pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
# v2: large images are searched on a copy of at most DETECT_SIDE px (see detect_faces).
# v3: faces are looked for from SEARCH_MIN_FACE px up, not facenet's default 20.
DETECTOR_VERSION = "mtcnn-facenet-pytorch-2.6.0-v3"
DETECT_SIDE = 1024
# Faces smaller than this (pixels, shorter side) are not judged on their own, except the largest face of a picture
# (facecheck.inference.predictor.judged_faces).
MIN_FACE_SIDE = 32
# MTCNN scans an image pyramid whose finest level finds faces from its min_face_size up (facenet's default: 20
# px), and that level costs as much as all the coarser ones. facecheck judges faces from MIN_FACE_SIDE px, so the
# search starts one level coarser: 20 / 0.709 (facenet's scale factor) = 28.2 px, the same levels as facenet's
# default without its finest. On the shipped model's test splits (3,901 pictures): 4 verdicts changed, 2 pictures
# lost their only (small) face, ROC AUC per source the same to 0.001 (benchmarks/face_search_size.py).
SEARCH_MIN_FACE = 20 / 0.709
INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0 requests"
NO_FACE_POLICIES = ("keep", "skip", "fail")
MIN_FACE_PROBABILITY = 0.9


class NoFaceError(DataError):
    """No face was found and the policy says not to use the whole image."""


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # left, top, right, bottom in pixels
    probability: float

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


_detector_lock = threading.RLock()
_detector = None
# Which engine runs MTCNN's networks (see facecheck.data.face_engine); set when the detector is first built.
detector_engine: str | None = None
# Same-size pictures searched in one call (PNet's pyramid levels batched).
DETECT_BATCH = 32
DETECT_PIXELS = 32 * 256 * 256


_verified: dict[Path, str] = {}  # weights folder -> the detector identity, once its files have been checked


def _weights_dir() -> Path:
    return _installed_weights_dir()


@functools.lru_cache(maxsize=1)  # asked before every picture; an exception (not installed) is not remembered
def _installed_weights_dir() -> Path:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the face detector (MTCNN from facenet-pytorch) is not installed: {INSTALL_HINT}")
    if importlib.util.find_spec("requests") is None:  # facenet_pytorch imports it at import time
        raise WeightsError(f"the face detector needs the package requests, not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def detector_identity() -> str:
    """What detections are cached under: the detector's version and its verified weights.

    Raises :class:`WeightsError` when the detector is missing or its weights do not verify.
    """
    folder = _weights_dir()
    if folder not in _verified:
        verify_mtcnn_weights()
        _verified[folder] = DETECTOR_VERSION + "|" + "|".join(MTCNN_WEIGHTS.values())
    return _verified[folder]


def face_detector_problem() -> str | None:
    """None when faces can be looked for here; otherwise why not, in one line with the fix."""
    try:
        detector_identity()
    except WeightsError as exc:
        return str(exc)
    return None


def verify_mtcnn_weights() -> Path:
    folder = _weights_dir()
    for name, expected in MTCNN_WEIGHTS.items():
        path = folder / name
        if not path.is_file():
            raise WeightsError(f"MTCNN weights missing: {path}")
        actual = file_sha256(path)
        if actual != expected:
            raise WeightsError(f"{path} does not match facenet-pytorch 2.6.0's file (sha256 {actual[:12]}...)")
    return folder


def _get_detector(fast: bool = False):  # facenet_pytorch has no type information
    """The one MTCNN of this process; ``fast``: its networks compiled for this CPU (inference asks for it;
    training keeps PyTorch's, because OpenVINO's threads in a process that then forks DataLoader workers have
    crashed it). Both answer the same to about 1e-4 px."""
    global _detector, detector_engine
    with _detector_lock:
        if _detector is None:
            verify_mtcnn_weights()
            # facenet-pytorch calls torch.load on the files just verified; torch >= 2.6 loads with
            # weights_only=True by default, so even a swapped file could not run code.
            from facenet_pytorch import MTCNN

            from facecheck.data.face_engine import answer_batches_as_single_pictures

            answer_batches_as_single_pictures()
            _detector = MTCNN(keep_all=True, device="cpu", min_face_size=SEARCH_MIN_FACE)
            detector_engine = "torch"
        if fast and detector_engine == "torch":
            import torch

            from facecheck.data.face_engine import speed_up

            detector_engine = speed_up(_detector, "|".join(MTCNN_WEIGHTS.values()), torch.get_num_threads())
        return _detector


def _cache_path(image: Image.Image, searched: Image.Image | None = None) -> Path:
    """Where the faces of ``image`` are cached: keyed by the detector, the picture's size and the pixels the
    detector sees (``searched``, its copy of at most DETECT_SIDE px; the picture itself when that small)."""
    # The identity raises when there is no detector: a detection cached by another install is never used.
    digest = hashlib.sha256(f"{detector_identity()}|{image.size}".encode())
    digest.update((image if searched is None else searched).tobytes())  # RGB bytes, as numpy's uint8 array has them
    key = digest.hexdigest()
    return cache_folder("faces") / key[:2] / f"{key}.json"


def detect_faces(image: Image.Image, use_cache: bool = True) -> list[Face]:
    """Faces in an RGB image, most probable first (cached by pixel content and detector identity).

    Raises :class:`WeightsError` when the face detector is not installed (see :func:`face_detector_problem`).
    """
    return detect_faces_batch([image], use_cache)[0]


def detect_faces_batch(images: list[Image.Image], use_cache: bool = True, fast: bool = False) -> list[list[Face]]:
    """:func:`detect_faces` of each image; those not in the cache are searched together, a batch per size.

    MTCNN's image pyramid costs time and memory with the pixel count: it runs on a copy whose long side is at
    most DETECT_SIDE, and the boxes are scaled back to the image. Pictures of one size (a folder of 256 px
    photos) share each pyramid level's network call. ``fast``: see :func:`_get_detector`.
    """
    detector_identity()  # no detector here: fail before anything is read from the cache
    if not images:
        return []
    found: list[list[Face] | None] = [None] * len(images)
    scales = [min(1.0, DETECT_SIDE / max(image.size)) for image in images]

    def copy_and_key(index: int) -> tuple[Image.Image, Path | None]:
        small = _detection_copy(images[index], scales[index])
        return small, _cache_path(images[index], small) if use_cache else None

    # Resampling a large photo to its searched copy and hashing its pixels: on every core.
    smalls, paths = (list(column) for column in zip(*map_pictures(copy_and_key, range(len(images))), strict=True))
    for index, path in enumerate(paths):
        if path is not None and path.is_file():
            try:
                found[index] = [Face(tuple(f["box"]), f["probability"]) for f in json.loads(path.read_text())]
            except (ValueError, KeyError):
                path.unlink(missing_ok=True)
    missing = [index for index, faces in enumerate(found) if faces is None]
    by_size: dict[tuple[int, int], list[int]] = {}
    for index in missing:
        by_size.setdefault(smalls[index].size, []).append(index)
    detector = _get_detector(fast) if missing else None
    for size, group in by_size.items():
        # A batch's pyramid and summed-area tables grow with its pixels: at most DETECT_PIXELS of pictures a call.
        per_call = max(1, min(DETECT_BATCH, DETECT_PIXELS // (size[0] * size[1])))
        for start in range(0, len(group), per_call):
            chunk = group[start : start + per_call]
            # facenet's MTCNN.detect keeps state between calls: one batch at a time. facecheck's own stages
            # (``fast``) keep none, and their compiled networks have a request per thread: batches searched
            # at once overlap one's NumPy work with another's networks.
            with _detector_lock if not fast else contextlib.nullcontext():
                boxes, probabilities = _search(detector, [smalls[index] for index in chunk], fast)
            for index, image_boxes, image_probabilities in zip(chunk, boxes, probabilities, strict=True):
                found[index] = _faces(image_boxes, image_probabilities, scales[index])
                if paths[index] is not None:
                    _write_cache(paths[index], found[index])
    return [faces if faces is not None else [] for faces in found]


def _search(detector: Any, pictures: list[Image.Image], fast: bool) -> tuple[list[Any], list[Any]]:
    """facenet's boxes and probabilities for each of ``pictures`` (one size); ``fast``: the same answer from
    :func:`facecheck.data.face_engine.detect_batch`, which resamples crops and pyramid levels in one pass."""
    if not fast:
        return detector.detect(pictures)
    from facecheck.data.face_engine import detect_batch

    found = detect_batch(detector, np.stack([np.asarray(picture) for picture in pictures]))
    return [boxes if len(boxes) else None for boxes, _ in found], [probabilities for _, probabilities in found]


def _detection_copy(image: Image.Image, scale: float) -> Image.Image:
    if scale == 1.0:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)


def _faces(boxes: Any, probabilities: Any, scale: float) -> list[Face]:
    """MTCNN's answer for one image as faces above MIN_FACE_PROBABILITY, in the image's pixels, surest first."""
    faces = []
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=float) / scale
        for box, probability in zip(boxes, probabilities, strict=True):
            if probability is not None and float(probability) >= MIN_FACE_PROBABILITY:
                faces.append(Face(tuple(float(v) for v in box), float(probability)))
    faces.sort(key=lambda f: -f.probability)
    return faces


def _write_cache(path: Path, faces: list[Face]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps([{"box": f.box, "probability": f.probability} for f in faces]))
    temporary.replace(path)


def crop_box(face: Face, size: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """A square around ``face`` grown by ``margin`` (fraction of the box side) on each side, inside the image."""
    left, top, right, bottom = face.box
    side = max(right - left, bottom - top) * (1 + 2 * margin)
    side = min(side, size[0], size[1])
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    x0 = round(min(max(centre_x - side / 2, 0), size[0] - side))
    y0 = round(min(max(centre_y - side / 2, 0), size[1] - side))
    return x0, y0, x0 + round(side), y0 + round(side)


class FaceCrop:
    """Pipeline step: crop the largest face (with margin); no face -> the whole image, skip or fail."""

    def __init__(self, margin: float = 0.2, no_face: str = "keep") -> None:
        if no_face not in NO_FACE_POLICIES:
            raise DataError(f"no-face policy must be one of {', '.join(NO_FACE_POLICIES)}")
        self.margin = margin
        self.no_face = no_face

    def faces(self, image: Image.Image) -> list[Face]:
        return detect_faces(image)

    def __call__(self, image: Image.Image) -> Image.Image:
        faces = self.faces(image)
        if not faces:
            if self.no_face == "keep":
                return image
            raise NoFaceError("no face found")
        largest = max(faces, key=lambda f: f.area)
        return image.crop(crop_box(largest, image.size, self.margin))

    def __repr__(self) -> str:
        return f"FaceCrop(margin={self.margin}, no_face={self.no_face})"


@dataclass
class CropSummary:
    written: int = 0
    already_done: int = 0
    no_face: int = 0
    unreadable: int = 0
    faces: int = 0


def crop_folder(
    source: Path,
    target: Path,
    *,
    margin: float = 0.2,
    size: int | None = None,
    all_faces: bool = False,
    no_face: str = "skip",
    progress: bool = True,
) -> CropSummary:
    """Write face crops of every image below ``source`` to the same relative paths below ``target``.

    Safe to stop and rerun: finished outputs are kept and detections come from the cache.
    """
    from tqdm import tqdm

    from facecheck.data.discovery import iter_images
    from facecheck.data.images import load_image

    if no_face not in NO_FACE_POLICIES:
        raise DataError(f"no-face policy must be one of {', '.join(NO_FACE_POLICIES)}")
    source, target = source.resolve(), target.resolve()
    if target == source or target.is_relative_to(source):
        raise DataError("--out must lie outside the source folder (never write beside the data)")
    images = iter_images(source)
    if not images:
        raise DataError(f"no images found below {source}")
    summary = CropSummary()
    bar = tqdm(images, desc="cropping faces", unit="img", disable=not progress)
    for path in bar:
        relative = path.relative_to(source)
        first = target / relative.with_suffix(".png")
        if first.exists() or (all_faces and first.with_name(f"{first.stem}_face0.png").exists()):
            summary.already_done += 1
            continue
        try:
            image = load_image(path)
        except DataError:
            summary.unreadable += 1
            continue
        faces = sorted(detect_faces(image), key=lambda f: -f.area)
        if not faces:
            if no_face == "fail":
                raise NoFaceError(f"{path}: no face found (rerun with --no-face skip or keep; finished crops are kept)")
            summary.no_face += 1
            if no_face == "skip":
                continue
            crops = [image]
        else:
            chosen = faces if all_faces else faces[:1]
            crops = [image.crop(crop_box(face, image.size, margin)) for face in chosen]
            summary.faces += len(crops)
        first.parent.mkdir(parents=True, exist_ok=True)
        for index, crop in enumerate(crops):
            if size:
                crop = crop.resize((size, size), Image.Resampling.BILINEAR)
            name = first if len(crops) == 1 and not all_faces else first.with_name(f"{first.stem}_face{index}.png")
            temporary = name.with_suffix(".tmp.png")
            crop.save(temporary)  # PNG: cropping must not add a compression of its own
            temporary.replace(name)
        summary.written += 1
        bar.set_postfix(no_face=summary.no_face)
    return summary
