"""Input pipelines in one place: training and evaluation transforms built from a PreprocessConfig.

Training, evaluation, prediction and serving all take their transforms from
here, and checkpoints store the PreprocessConfig, so inference always rebuilds
the evaluation pipeline the model was trained with.

Every pipeline is: source steps (deterministic, per image: JPEG
normalisation, face cropping) -> Resize (or, with ``resize: none``, a centre
crop/pad that keeps native pixels) -> random augmentation and random crop
(training only) -> tensor, Normalize -> views (evaluation: the centre crop,
or several crops and flips whose logits are averaged). The decode cache
stores images after the resize step, so it applies exactly the source steps
and resize of :func:`source_and_resize`.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from facecheck.choices import AUGMENTATIONS, TTA_MODES
from facecheck.config import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from facecheck.errors import ConfigError

__all__ = ["AUGMENTATIONS"]


class NormalizeJpeg:
    """Re-encode an RGB image as JPEG at one quality, so that every input carries the same compression.

    Removes the shortcut of a class saved at another quality (see `facecheck data inspect`).
    """

    def __init__(self, quality: int) -> None:
        self.quality = quality

    def __call__(self, image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=self.quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            decoded.load()
            return decoded if decoded.mode == "RGB" else decoded.convert("RGB")  # no copy of what is RGB already

    def __repr__(self) -> str:
        return f"NormalizeJpeg(quality={self.quality})"


def source_steps(cfg: PreprocessConfig) -> list:
    """Deterministic per-image steps that come before resizing: JPEG normalisation, then face cropping."""
    steps: list = [NormalizeJpeg(cfg.normalize_jpeg)] if cfg.normalize_jpeg else []
    if cfg.face_crop:
        from facecheck.data.faces import FaceCrop

        steps.append(FaceCrop(cfg.face_margin, cfg.no_face))
    return steps


def source_signature(cfg: PreprocessConfig) -> str:
    """Identifies the output of the source steps and Resize, for cache keys."""
    if cfg.face_crop:  # a change of face detector changes the crops
        from facecheck.data.faces import DETECTOR_VERSION

        face = f"face{cfg.face_margin}-{cfg.no_face}-{DETECTOR_VERSION}"
    else:
        face = "noface"
    resize = "" if cfg.resize == "square" else f"-{cfg.resize}"
    return f"jpeg{cfg.normalize_jpeg or 0}-{face}-size{side(cfg)}{resize}"


class ShrinkToFit:
    """Native pixels for images up to ``size``; larger ones are shrunk first (antialiased) so that their short
    side is ``size``, then centre-cropped. A 1024 px generator image or a 4000 px phone photo is then judged
    as a whole, not from a central patch, while images of the model's own size are never resampled."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.crop = T.CenterCrop(size)

    def __call__(self, image: Image.Image) -> Image.Image:
        short = min(image.size)
        if short > self.size:
            scale = self.size / short
            width, height = (max(self.size, round(side * scale)) for side in image.size)
            image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return self.crop(image)

    def __repr__(self) -> str:
        return f"ShrinkToFit(size={self.size})"


def resize_step(cfg: PreprocessConfig) -> T.Resize | T.CenterCrop | ShrinkToFit:
    if cfg.resize == "none":
        # Native pixels: larger images lose their borders, smaller ones get a black frame.
        return T.CenterCrop(side(cfg))
    if cfg.resize == "fit":
        return ShrinkToFit(side(cfg))
    return T.Resize((side(cfg), side(cfg)))


# A picture this many times larger than the model's input (or this many times smaller) is out of its scope.
FAR_LARGER, FAR_SMALLER = 4, 2


def size_notice(cfg: PreprocessConfig, size: tuple[int, int]) -> str | None:
    """What the resize step does to a picture of ``size`` (width, height) that the user should know: that only
    its centre is judged, or that it is far larger or smaller than what the model sees; None when nothing."""
    if cfg.face_crop:
        return None  # the face crop is what gets judged, whatever the picture's size
    width, height = size
    s = side(cfg)
    picture = f"this {width}x{height} px picture"
    if max(width, height) < s / FAR_SMALLER:
        how = "padded with black" if cfg.resize in ("none", "fit") else "enlarged"
        return f"{picture} is far smaller than the model's {s} px input ({how}): the verdict means little"
    if cfg.resize == "none" and max(width, height) > s:
        return (
            f"only the central {min(width, s)}x{min(height, s)} px of {picture} were judged (the model reads native "
            f"pixels); crop the face to about {s} px to have it judged"
        )
    if min(width, height) >= FAR_LARGER * s:
        return (
            f"{picture} was shrunk to {s} px, far below its own size: fine detail is lost and a small face is "
            "judged on a few pixels: crop the face first"
        )
    return None


def size_warning(cfg: PreprocessConfig, sizes: list[tuple[int, int]]) -> str | None:
    """For a data set of pictures of ``sizes``: how many :func:`size_notice` would speak about, with the first
    one's words (training and evaluation say it once, not per image); None when none."""
    notices = [notice for notice in (size_notice(cfg, size) for size in sizes) if notice]
    if not notices:
        return None
    hint = "; preprocess.resize=fit shrinks larger pictures whole instead" if cfg.resize == "none" else ""
    return f"{len(notices)} of {len(sizes)} images are far from what the model sees, e.g. {notices[0]}{hint}"


def source_and_resize(cfg: PreprocessConfig) -> T.Compose:
    return T.Compose([*source_steps(cfg), resize_step(cfg)])


def normalisation(cfg: PreprocessConfig) -> tuple[list[float], list[float]]:
    """``(mean, std)``; a run fills them from its model's registry entry, a bare config gets ImageNet's."""
    return list(cfg.mean or IMAGENET_MEAN), list(cfg.std or IMAGENET_STD)


def input_size(cfg: PreprocessConfig) -> int:
    """Side of the square the model sees."""
    return cfg.crop_size or side(cfg)


def side(cfg: PreprocessConfig) -> int:
    """The image size; a run resolves an open one from its model's registry entry before building anything."""
    if cfg.image_size is None:
        raise ConfigError("preprocess.image_size is not set (a run takes it from the model's registry entry)")
    return cfg.image_size


class Views(torch.nn.Module):
    """Evaluation views of a normalised ``(3, S, S)`` image.

    ``none``: the centre crop (or the image), ``(3, s, s)``. Otherwise a
    ``(V, 3, s, s)`` stack that scoring flattens, scores, and averages per
    image: ``flip`` adds the mirror image, ``five-crop`` takes the four corners
    and the centre (as CNNDetection evaluates), ``five-crop-flip`` both.
    """

    def __init__(self, crop_size: int | None, tta: str) -> None:
        super().__init__()
        if tta not in TTA_MODES:
            raise ConfigError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA_MODES)}")
        if "five-crop" in tta and crop_size is None:
            raise ConfigError(f"--tta {tta} needs a model trained on crops (preprocess.crop_size)")
        self.crop_size, self.tta = crop_size, tta

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = self.crop_size
        if "five-crop" in self.tta:
            views = list(v2.functional.five_crop(image, [size, size]))
        else:
            views = [v2.functional.center_crop(image, [size, size]) if size else image]
        if "flip" in self.tta:
            views += [v.flip(-1) for v in views]
        return views[0] if self.tta == "none" else torch.stack(views)


def eval_views(cfg: PreprocessConfig, tta: str | None = None) -> Views:
    return Views(cfg.crop_size, cfg.tta if tta is None else tta)


class ToViews:
    """``ToTensor``, ``Normalize`` and :class:`Views` in one step, computed in NumPy for the common views.

    The numbers are the same as torchvision's (the same float32 operations in the same order; tested). Why
    not torch: its small element-wise ops wake its thread pool, whose spinning threads then compete with the
    inference engine's own threads; on 2 cores a file-to-verdict took about 3 ms longer that way
    (``benchmarks/speed.py``'s file-* variants). Five-crop views, and crops larger than the image, go
    through :class:`Views` itself.
    """

    def __init__(self, mean: list[float], std: list[float], views: Views) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.views = views

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        # As ToTensor then Normalize: divide by 255, subtract the mean, divide by the std, all in float32.
        # Channels first from the start and in place: broadcasting over a last axis of 3 and the temporaries
        # made it 6x slower (2.0 against 0.33 ms for 256x256 here), for the same numbers.
        chw = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")
        chw /= np.float32(255)
        chw -= self.mean[:, None, None]
        chw /= self.std[:, None, None]
        tta, size = self.views.tta, self.views.crop_size
        height, width = chw.shape[1:]
        if tta not in ("none", "flip") or (size is not None and (size > height or size > width)):
            return self.views(torch.from_numpy(np.ascontiguousarray(chw)))
        if size is not None:  # torchvision's centre crop: offsets rounded half to even
            top, left = round((height - size) / 2.0), round((width - size) / 2.0)
            chw = chw[:, top : top + size, left : left + size]
        if tta == "none":
            return torch.from_numpy(np.ascontiguousarray(chw))
        return torch.from_numpy(np.stack([chw, chw[:, :, ::-1]]))

    def __repr__(self) -> str:
        return f"ToViews(mean={self.mean.tolist()}, std={self.std.tolist()}, tta={self.views.tta!r})"


class RandomDownUp(v2.Transform):
    """Shrink by a random factor in ``scale`` (antialiased) and bring back to the original size.

    What a picture goes through between a camera or a generator and a user (thumbnails, re-uploads, small
    face crops enlarged for display) erases the finest traces in real and fake pictures alike; a detector
    that leans on them calls every low-resolution real face fake.
    """

    def __init__(self, scale: tuple[float, float] = (0.25, 1.0)) -> None:
        super().__init__()
        self.scale = scale

    def make_params(self, flat_inputs: list) -> dict:
        factor = float(torch.empty(1).uniform_(*self.scale))
        bicubic = bool(torch.rand(1) < 0.5)
        return {"factor": factor, "bicubic": bicubic}

    def transform(self, inpt: Any, params: dict) -> Any:
        height, width = v2.functional.get_size(inpt)
        small = [max(8, round(height * params["factor"])), max(8, round(width * params["factor"]))]
        up = v2.InterpolationMode.BICUBIC if params["bicubic"] else v2.InterpolationMode.BILINEAR
        shrunk = v2.functional.resize(inpt, small, antialias=True)
        return v2.functional.resize(shrunk, [height, width], interpolation=up, antialias=True)


class FaceViews:
    """The evaluation pipeline of a face-crop model, split where the faces are found.

    ``eval_transform`` is JPEG normalisation, the largest face's crop, resize and views in one go; this does the
    same in two steps, so that one face detection serves the face check, every face's crop (per-face verdicts)
    and the picture's verdict: ``views(normalised(image), face)`` equals ``eval_transform`` for the largest face.
    """

    def __init__(self, cfg: PreprocessConfig, tta: str | None = None) -> None:
        self.normalise = NormalizeJpeg(cfg.normalize_jpeg) if cfg.normalize_jpeg else None
        self.margin = cfg.face_margin
        self.rest = T.Compose([resize_step(cfg), ToViews(*normalisation(cfg), eval_views(cfg, tta))])

    def normalised(self, image: Image.Image) -> Image.Image:
        """The picture as the face detector and the crops see it (JPEG-normalised as in training)."""
        return self.normalise(image) if self.normalise else image

    def views(self, normalised: Image.Image, face: Any | None) -> torch.Tensor:
        """The model's input for one face (a :class:`facecheck.data.faces.Face`), or the whole picture (None)."""
        from facecheck.data.faces import crop_box

        if face is not None:
            normalised = normalised.crop(crop_box(face, normalised.size, self.margin))
        return self.rest(normalised)


def random_steps(cfg: PreprocessConfig) -> list:
    """Training-only augmentation, for PIL images or uint8 tensors alike (torchvision v2)."""
    steps: list = []
    if cfg.augment == "degrade":
        # What the road from a generator or a camera to a user does to any picture, applied to both classes:
        # colour and tone changes, downscaling and enlarging, blur, then JPEG re-compression (last, as a
        # re-upload would). Each step with probability robust_prob (JPEG: always half the time at least).
        p = cfg.robust_prob
        steps += [
            v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)], p=p),
            v2.RandomGrayscale(0.05),
            v2.RandomApply([RandomDownUp((0.25, 1.0))], p=p),
            v2.RandomApply([v2.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0))], p=p / 2),
            v2.RandomApply([v2.JPEG(quality=(30, 100))], p=max(p, 0.5)),
        ]
    if cfg.augment == "jpeg":
        # JPEG re-compression only: robustness to re-saved photos without blur, which erases generator traces.
        steps.append(v2.RandomApply([v2.JPEG(quality=(30, 100))], p=cfg.robust_prob))
    if cfg.augment == "robust":
        # As CNNDetection (Wang et al., CVPR 2020): blur and JPEG re-compression, each with probability robust_prob.
        steps += [
            v2.RandomApply([v2.GaussianBlur(kernel_size=9, sigma=(0.1, 3.0))], p=cfg.robust_prob),
            v2.RandomApply([v2.JPEG(quality=(30, 100))], p=cfg.robust_prob),
        ]
    if cfg.augment in ("report", "jpeg", "robust", "degrade"):
        if cfg.hflip_prob > 0:
            steps.append(v2.RandomHorizontalFlip(cfg.hflip_prob))
        if cfg.rotation_degrees > 0:
            steps.append(v2.RandomRotation(cfg.rotation_degrees))
    return steps


def crop_steps(cfg: PreprocessConfig) -> list:
    """Training crops at native resolution: a random crop_size window, after the other augmentations."""
    return [v2.RandomCrop(cfg.crop_size)] if cfg.crop_size else []


def train_transform(cfg: PreprocessConfig) -> T.Compose:
    """The report's training pipeline (Resize, flip, rotation, ToTensor, Normalize) plus the source steps."""
    return T.Compose(
        [
            source_and_resize(cfg),
            *random_steps(cfg),
            *crop_steps(cfg),
            T.ToTensor(),
            T.Normalize(*normalisation(cfg)),
        ]
    )


def eval_transform(cfg: PreprocessConfig, tta: str | None = None) -> T.Compose:
    """The same pipeline without the random steps, ending in the evaluation views."""
    return T.Compose([source_and_resize(cfg), ToViews(*normalisation(cfg), eval_views(cfg, tta))])


def train_tensor_transform(cfg: PreprocessConfig) -> v2.Compose:
    """The training pipeline for already resized uint8 CHW tensors (from the decode cache)."""
    return v2.Compose(
        [
            *random_steps(cfg),
            *crop_steps(cfg),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(*normalisation(cfg)),
        ]
    )


def eval_tensor_transform(cfg: PreprocessConfig, tta: str | None = None) -> v2.Compose:
    """The evaluation pipeline for already resized uint8 CHW tensors."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(*normalisation(cfg)), eval_views(cfg, tta)])
