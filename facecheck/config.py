"""Run configuration as data: dataclasses, the named presets, YAML and overrides.

A run is fully described by a :class:`TrainConfig`. Presets are plain
``TrainConfig`` values; a YAML file or ``--set section.key=value`` overrides
change fields on top of a preset, and the effective config is saved with the
run so that it can be reproduced or resumed.
"""

from __future__ import annotations

import math
import reprlib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from facecheck.choices import (
    AUGMENTATIONS,
    BALANCE_MODES,
    DEVICES,
    FPR_SCOPES,
    INPUT_FILTERS,
    NO_FACE_POLICIES,
    PRECISIONS,
    PSEUDO_FAKE_KINDS,
    RESIZE_MODES,
    TTA_MODES,
)
from facecheck.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """Where the images come from and how they are split."""

    # One folder (or manifest), several (each a "source", kept apart in splits and reports),
    # or None for the built-in synthetic set (generated on first use).
    data_dir: str | list[str] | None = None
    test_fraction: float = 0.3
    # Carved out of the training part; 0 reproduces the report's 70/30 exactly.
    val_fraction: float = 0.1
    split_seed: int = 0
    # Cap per class, for quick experiments on a subset (None = all images).
    max_per_class: int | None = None
    # Images smaller than this on either side are skipped with a warning.
    min_image_size: int = 16
    num_workers: int = 0
    # Decode and resize each image once into a memory-mapped uint8 cache that
    # every epoch (and later runs) reuse; augmentations then run on tensors.
    decode_cache: bool = True
    # Inspect the data first: near-duplicate groups stay on one side of the split,
    # and shortcut warnings are printed and stored with the run.
    inspect: bool = True
    # Use this split file (path,label,split; from `facecheck data split` or a run) instead of splitting.
    split_file: str | None = None
    # none: shuffle uniformly; source-class: draw batches so every (source, class) pair weighs the same.
    balance: str = "none"
    # Pseudo-fakes made on the fly from the training reals (sbi: self-blended images; resynth:
    # re-synthesised by random upsamplers), pseudo_fake_ratio of them per real image and epoch.
    pseudo_fakes: list[str] = field(default_factory=list)
    pseudo_fake_ratio: float = 1.0
    # Train on the data's own fakes too; false: reals and pseudo-fakes only (the SBI protocol).
    use_fakes: bool = True
    # Leave out every image whose manifest names one of these generators (leave-one-generator-out).
    exclude_generators: list[str] = field(default_factory=list)

    @property
    def data_dirs(self) -> list[str]:
        if self.data_dir is None:
            return []
        return [self.data_dir] if isinstance(self.data_dir, str) else list(self.data_dir)


@dataclass
class PreprocessConfig:
    """Everything needed to rebuild the exact input pipeline at inference."""

    # Side of the square every image is brought to (see resize); None: the model's own input size
    # (its registry entry), resolved when a run starts and stored.
    image_size: int | None = None
    # square: resample to image_size x image_size (the report); none: keep the native pixels,
    # centre-cropped (or zero-padded) to image_size, so no resampling blurs generator traces.
    resize: str = "square"
    # Train on random crop_size crops of the image_size image and evaluate on the centre crop
    # (or several crops, see tta); None: the whole image.
    crop_size: int | None = None
    # Test-time augmentation, averaged over views: none, flip, five-crop (4 corners + centre,
    # needs crop_size), five-crop-flip. Stored with the model; evaluate/predict --tta overrides.
    tta: str = "none"
    # Normalisation; None: the model's own (its registry entry), resolved when a run starts and stored.
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    hflip_prob: float = 0.5
    rotation_degrees: float = 10.0
    # report: flips and rotations; jpeg: plus random JPEG re-compression; robust: plus random blur and
    # JPEG re-compression; none.
    augment: str = "report"
    # Probability of each random blur / JPEG step of jpeg and robust (CNNDetection compares 0.5 and 0.1).
    robust_prob: float = 0.5
    # Re-encode every input at this JPEG quality before anything else (None: off).
    normalize_jpeg: int | None = None
    # Crop the largest face (MTCNN) with this margin (fraction of the face box on each side).
    face_crop: bool = False
    face_margin: float = 0.2
    # Images without a face: keep (whole image), skip (left out of training; an error in predict) or fail.
    no_face: str = "keep"


@dataclass
class ModelConfig:
    name: str = "seed_cnn"
    pretrained: bool = False
    # Explicit path to pretrained backbone weights (first place looked at).
    weights: str | None = None
    dropout: float = 0.3
    hidden_dim: int = 128
    # Applied to the normalised images before the backbone: none, or npr (neighbouring-pixel residual).
    input_filter: str = "none"
    # Train only the last N backbone blocks (and the head); earlier blocks stay frozen, with no
    # backward pass through them. None: the whole backbone.
    trainable_blocks: int | None = None


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    step_size: int = 5
    gamma: float = 0.5


@dataclass
class ComputeConfig:
    """How the arithmetic runs; none of it changes the recipe being trained."""

    # auto: bf16 autocast on CPUs with native bf16 and AMP on CUDA; fp32 otherwise.
    precision: str = "auto"
    channels_last: bool = True
    # 0: one thread per available core (or OMP_NUM_THREADS when set).
    num_threads: int = 0
    # Compile the training model with TorchInductor (CPU only; see facecheck.compute.compile_model).
    compile: bool = False
    # Several processes (torchrun, --nproc-per-node): BatchNorm statistics of the global batch instead of
    # each process's share. Off by default: it adds an all-reduce to every BatchNorm layer of every step,
    # and per-process statistics over batches of 16 or more train as well; turn it on for small
    # per-process batches, or to match a one-process run closely.
    sync_batchnorm: bool = False


@dataclass
class TrainConfig:
    preset: str = "custom"
    epochs: int = 15
    batch_size: int = 32
    eval_batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    # Train only the head on backbone features computed once (and cached).
    freeze_backbone: bool = False
    # After a frozen-backbone phase: fine-tune the last N backbone blocks too.
    unfreeze_blocks: int = 0
    unfreeze_epochs: int = 3
    unfreeze_lr: float = 1e-4
    # Fit temperature scaling (and the threshold) on the validation split after training.
    calibrate: bool = True
    # Choose the decision threshold for this false-positive rate on validation reals (None: the threshold of
    # best balanced accuracy); pooled over all reals, or held for each real collection (see choices.FPR_SCOPES).
    target_fpr: float | None = None
    target_fpr_scope: str = "pooled"
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)

    @property
    def total_epochs(self) -> int:
        extra = self.unfreeze_epochs if self.freeze_backbone and self.unfreeze_blocks > 0 else 0
        return self.epochs + extra

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        return _build(cls, raw, "")


# EfficientNet-Lite0 with the report's kind of head, and its input pipeline: native 256 px pixels,
# every input re-encoded at JPEG 75, random JPEG re-compression half the time, flips but no rotation,
# scored on the image and its mirror image.
_LITE0 = ModelConfig(name="efficientnet_lite0", pretrained=True, hidden_dim=512, dropout=0.3)
_LITE0_JPEG = PreprocessConfig(
    image_size=256, resize="none", tta="flip", rotation_degrees=0.0, augment="jpeg", robust_prob=0.5, normalize_jpeg=75
)

# The report's two models. Shared pieces are the defaults above; each preset
# states what differs so a reader sees the whole recipe in one place.
PRESETS: dict[str, TrainConfig] = {
    "seed-cnn": TrainConfig(
        preset="seed-cnn",
        # The report resized every image to 256x256 for both models.
        preprocess=PreprocessConfig(image_size=256),
        model=ModelConfig(name="seed_cnn", pretrained=False, hidden_dim=128),
        optim=OptimConfig(lr=1e-3, weight_decay=1e-4, step_size=5, gamma=0.5),
    ),
    "seed-mobilenet": TrainConfig(
        preset="seed-mobilenet",
        preprocess=PreprocessConfig(image_size=256),
        # The report does not give the hidden width; 512 sits between the
        # backbone's 1280 features and the 2 outputs and is a common choice.
        model=ModelConfig(name="mobilenet_v2", pretrained=True, hidden_dim=512, dropout=0.3),
        optim=OptimConfig(lr=1e-3, weight_decay=1e-4, step_size=5, gamma=0.1),
    ),
    # The recommended detector (issue 7): EfficientNet-Lite0 on the native pixels (no
    # resampling: a 256 px image is used as it is, others are centre-cropped or padded to
    # 256), every input re-encoded at JPEG 75 (removes compression shortcuts such as
    # lfw-faceswap's), random JPEG re-compression in training (robust to re-saved photos),
    # flips but no rotation (it resamples away the fine traces); scored on the image and its
    # mirror image. Chosen over crops + blur augmentation by measurement (docs/results.md). The whole
    # backbone is trained: `--set model.trainable_blocks=8` is 4x faster in float32 on a 2-core CPU, but
    # over these 10 epochs it reached ROC AUC 0.961 against 0.973 on ffhq-stylegan (one seed each), so it
    # stays an option, not the default (issue 16, docs/results.md).
    "lite0-native-jpeg": TrainConfig(
        preset="lite0-native-jpeg",
        epochs=10,
        preprocess=_LITE0_JPEG,
        model=_LITE0,
        optim=OptimConfig(lr=1e-3, weight_decay=1e-4, step_size=5, gamma=0.1),
    ),
    # The general-purpose detector (issue 15): trained on several sources at once with batches balanced
    # across (source, class), plus self-blended pseudo-fakes made from the reals (SBI: blending traces;
    # re-synthesis was measured too and left out: on top of SBI it gained nothing on any left-out source,
    # docs/results.md "Which pseudo-fakes and which recipes pay"); EfficientNet-Lite0 with only its last five
    # blocks trained (3x faster steps on a CPU, and less room to memorise one source); images of the
    # model's size or smaller keep their native pixels, larger ones are shrunk to fit (never judged from
    # a central patch); JPEG normalisation and random JPEG as the recommended preset.
    "general-sbi-lite0": TrainConfig(
        preset="general-sbi-lite0",
        epochs=3,
        data=DataConfig(pseudo_fakes=["sbi"], pseudo_fake_ratio=0.5, balance="source-class"),
        preprocess=replace(_LITE0_JPEG, image_size=224, resize="fit"),
        model=replace(_LITE0, trainable_blocks=5),
        optim=OptimConfig(lr=1e-3, weight_decay=1e-4, step_size=2, gamma=0.1),
    ),
    # The shipped detector v2 (issue 24): every source at once, judged face by face. The largest face (MTCNN)
    # with a margin is cropped and resized to the model's 224 px in training and at every use, so framing,
    # background, picture size or painterly style cannot stand in for the generator (no face: the whole picture).
    # Batches balanced over (source, class) and, inside, over generators and real photo collections; training
    # augmentations that destroy what a generator cannot be recognised by (colour, downscale-and-enlarge, blur,
    # JPEG chains) in both classes; SBI pseudo-fakes, the one kind that paid (on unseen face swaps); the last 10
    # blocks trained for 10 epochs. The threshold keeps each real collection's validation false-fake rate at
    # 5% at most (not pooled), so that no kind of real photo carries the cost of another; one view (no flip).
    "general-v2": TrainConfig(
        preset="general-v2",
        epochs=10,
        target_fpr=0.05,
        target_fpr_scope="collection",
        data=DataConfig(
            pseudo_fakes=["sbi"], pseudo_fake_ratio=0.5, balance="source-class-generator", val_fraction=0.15
        ),
        preprocess=PreprocessConfig(
            image_size=224,
            resize="square",
            tta="none",
            rotation_degrees=0.0,
            augment="degrade",
            robust_prob=0.3,
            normalize_jpeg=75,
            face_crop=True,
            face_margin=0.3,
            no_face="keep",
        ),
        model=replace(_LITE0, trainable_blocks=10),
        optim=OptimConfig(lr=1e-3, weight_decay=1e-4, step_size=4, gamma=0.3),
    ),
}
RECOMMENDED_PRESET = "lite0-native-jpeg"
GENERAL_PRESET = "general-v2"


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(list_presets())}")
    return TrainConfig.from_dict(PRESETS[name].to_dict())


# A settings file is a few kB; anything far bigger is a mistake (or an attack on the YAML parser).
MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} kB; is it a settings file?")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc)[:400]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    return raw


def merge(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return ``config`` with nested ``overrides`` applied (unknown keys rejected)."""
    return TrainConfig.from_dict(_deep_update(config.to_dict(), overrides, ""))


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``optim.lr=3e-4`` into ``{"optim": {"lr": 0.0003}}``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = parsed
    return nested


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")


def _deep_update(base: dict[str, Any], new: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in new.items():
        name = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"unknown setting {name!r}; known here: {known}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"setting {name!r} is a section; set its keys as {name}.KEY=VALUE")
            out[key] = _deep_update(base[key], value, f"{name}.")
        else:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"section {prefix.rstrip('.') or 'config'} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(prefix + u for u in unknown)}")
    values = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        hint = hints[f.name]
        name = prefix + f.name
        if isinstance(hint, type) and is_dataclass(hint):
            values[f.name] = _build(hint, raw[f.name], f"{name}.")
        else:
            values[f.name] = _coerce(raw[f.name], hint, name)
    return replace(cls(), **values) if values else cls()


def _shown(value: Any, limit: int = 80) -> str:
    """``repr`` of a value for an error message, bounded (a YAML alias bomb's repr runs to megabytes)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxstring = 2, 4, 4, 4, limit
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last_error: ConfigError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError as exc:
                last_error = exc
        raise last_error or ConfigError(f"bad value for {name}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(v, args[0], name) for v in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} numbers, got {_shown(value)}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args, strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {_shown(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be a whole number, got {_shown(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {_shown(value)}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name} must be text, got {_shown(value)}")
    raise ConfigError(f"{name}: unsupported setting type {hint!r}")


# Inputs cost memory with the square of their side: no model facecheck registers is trained or run above this.
MAX_IMAGE_SIZE = 1024
# Pixels in one batch (batch size x side x side); x 3 channels x 4 bytes is the batch's float32 input, ~3 GB.
MAX_BATCH_PIXELS = 1 << 28


def preprocess_problem(pre: PreprocessConfig) -> str | None:
    """What makes ``pre`` cost more than any facecheck model needs, or give scores that mean nothing; or None.

    Checked (for configs and for model cards) before anything is allocated.
    """
    if pre.image_size is not None and not (isinstance(pre.image_size, int) and 32 <= pre.image_size <= MAX_IMAGE_SIZE):
        return f"preprocess.image_size must be a whole number from 32 to {MAX_IMAGE_SIZE}, got {pre.image_size!r}"
    for name, values in (("mean", pre.mean), ("std", pre.std)):
        if values is None:
            continue
        if len(values) != 3 or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            return f"preprocess.{name} must be three finite numbers, got {list(values)}"
    if pre.std is not None and not all(v > 0 for v in pre.std):
        return f"preprocess.std must be positive (it divides every pixel), got {list(pre.std)}"
    return None


def validate(config: TrainConfig) -> None:
    """Reject settings that would fail later in a less clear way."""
    problem = preprocess_problem(config.preprocess)
    if problem:
        raise ConfigError(problem)
    side = config.preprocess.image_size or 0
    for name, size in (("batch_size", config.batch_size), ("eval_batch_size", config.eval_batch_size)):
        if size * side * side > MAX_BATCH_PIXELS:
            raise ConfigError(
                f"{name} {size} at preprocess.image_size {side} needs {size * side * side * 12 / 1e9:.0f} GB per "
                f"batch: at most {MAX_BATCH_PIXELS // (side * side)} at that size"
            )
    checks = [
        (config.epochs >= 1, "epochs must be at least 1"),
        (config.batch_size >= 1, "batch_size must be at least 1"),
        (config.eval_batch_size >= 1, "eval_batch_size must be at least 1"),
        (0 < config.data.test_fraction < 1, "data.test_fraction must be between 0 and 1"),
        (0 <= config.data.val_fraction < 1, "data.val_fraction must be in [0, 1)"),
        (
            config.preprocess.image_size is None or config.preprocess.image_size >= 32,
            "preprocess.image_size must be at least 32",
        ),
        (config.preprocess.resize in RESIZE_MODES, f"preprocess.resize must be one of {', '.join(RESIZE_MODES)}"),
        (
            config.preprocess.crop_size is None
            or 32 <= config.preprocess.crop_size <= (config.preprocess.image_size or config.preprocess.crop_size),
            "preprocess.crop_size must be between 32 and preprocess.image_size",
        ),
        (config.preprocess.tta in TTA_MODES, f"preprocess.tta must be one of {', '.join(TTA_MODES)}"),
        (
            "five-crop" not in config.preprocess.tta or config.preprocess.crop_size is not None,
            "preprocess.tta five-crop needs preprocess.crop_size",
        ),
        (config.optim.lr > 0, "optim.lr must be positive"),
        (config.optim.step_size >= 1, "optim.step_size must be at least 1"),
        (0 <= config.model.dropout < 1, "model.dropout must be in [0, 1)"),
        (config.model.input_filter in INPUT_FILTERS, f"model.input_filter must be one of {', '.join(INPUT_FILTERS)}"),
        (
            config.model.trainable_blocks is None or config.model.trainable_blocks >= 1,
            "model.trainable_blocks must be at least 1 (or null for the whole backbone)",
        ),
        (
            config.device in DEVICES or config.device.startswith("cuda:"),
            f"device must be one of {', '.join(DEVICES)}",
        ),
        (config.data.balance in BALANCE_MODES, f"data.balance must be one of {', '.join(BALANCE_MODES)}"),
        (
            all(kind in PSEUDO_FAKE_KINDS for kind in config.data.pseudo_fakes),
            f"data.pseudo_fakes must be a list of {', '.join(PSEUDO_FAKE_KINDS)}",
        ),
        (config.data.pseudo_fake_ratio > 0, "data.pseudo_fake_ratio must be positive"),
        (
            config.data.use_fakes or bool(config.data.pseudo_fakes),
            "data.use_fakes=false needs data.pseudo_fakes (otherwise there is nothing fake to learn from)",
        ),
        (config.unfreeze_blocks >= 0 and config.unfreeze_epochs >= 0, "unfreeze_blocks/unfreeze_epochs must be >= 0"),
        (config.unfreeze_blocks == 0 or config.freeze_backbone, "unfreeze_blocks needs freeze_backbone=true"),
        (config.unfreeze_lr > 0, "unfreeze_lr must be positive"),
        (config.target_fpr is None or 0 <= config.target_fpr < 1, "target_fpr must be in [0, 1)"),
        (config.target_fpr_scope in FPR_SCOPES, f"target_fpr_scope must be one of {', '.join(FPR_SCOPES)}"),
        (
            config.target_fpr is None or (config.data.val_fraction > 0 and config.calibrate),
            "target_fpr needs a validation split (data.val_fraction > 0) and calibrate=true",
        ),
        (config.compute.num_threads >= 0, "compute.num_threads must be >= 0"),
        (
            config.preprocess.augment in AUGMENTATIONS,
            f"preprocess.augment must be one of {', '.join(AUGMENTATIONS)}",
        ),
        (
            config.preprocess.no_face in NO_FACE_POLICIES,
            f"preprocess.no_face must be one of {', '.join(NO_FACE_POLICIES)}",
        ),
        (0 <= config.preprocess.robust_prob <= 1, "preprocess.robust_prob must be between 0 and 1"),
        (0 <= config.preprocess.face_margin <= 2, "preprocess.face_margin must be between 0 and 2"),
        (
            config.preprocess.normalize_jpeg is None or 1 <= config.preprocess.normalize_jpeg <= 100,
            "preprocess.normalize_jpeg must be a JPEG quality from 1 to 100",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


__all__ = [
    "PRECISIONS",
    "PRESETS",
    "RESIZE_MODES",
    "TTA_MODES",
    "ComputeConfig",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "PreprocessConfig",
    "TrainConfig",
    "get_preset",
    "list_presets",
    "load_config_file",
    "merge",
    "parse_override",
    "save_config",
    "validate",
]
