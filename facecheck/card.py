"""The model card: the one contract between training and every use of a model.

A :class:`ModelCard` says how to rebuild the network (registered name and
build arguments), how to feed it (preprocessing, stored once), how to read its
output (class names, temperature, threshold, the ``uncertain`` band), what it
was trained on and how well it did, and with which versions. ``.pt``
checkpoints, exported ``.onnx`` files and the shipped model all carry the same
card; inference, serving, export and the benchmarks read it through this class
only, never through raw keys.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field, replace
from typing import Any

from facecheck.config import MAX_IMAGE_SIZE, PreprocessConfig, TrainConfig, preprocess_problem
from facecheck.data.discovery import CLASS_NAMES
from facecheck.errors import CheckpointError, ConfigError
from facecheck.version import __version__

CARD_FORMAT = "facecheck-model-card"
CARD_VERSION = 2
# The class names every model's card carries, in output order (index 1 = fake): the data's own.
LABELS = CLASS_NAMES
UNCERTAIN = "uncertain"


def _finite(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{where}: {name} must be a number, got {str(value)[:40]!r}")
    number = float(value)
    if not math.isfinite(number):
        raise CheckpointError(f"{where}: {name} must be finite, got {number}")
    return number


@dataclass(frozen=True)
class ModelCard:
    """Everything about a trained model except its weights."""

    model_name: str
    model_kwargs: dict[str, Any]
    training: TrainConfig
    class_names: tuple[str, ...] = LABELS
    threshold: float = 0.5
    # Temperature scaling fitted on validation data: p_fake = softmax(logits / T).
    temperature: float = 1.0
    # Scores in [low, high] are reported as "uncertain" (None: every score gets a verdict).
    uncertain_band: tuple[float, float] | None = None
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    # Calibration report and other facts recorded after training.
    notes: dict[str, Any] = field(default_factory=dict)
    # What the model was trained on and what it is for (set for released models).
    scope: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    # ---- reading the output ---------------------------------------------------------------
    def decide(self, p_fake: float, threshold: float | None = None) -> str:
        """The one decision rule: ``real``, ``fake``, or ``uncertain`` inside the band around the threshold.

        A ``threshold`` other than the card's own (a user's override) drops the band, which was fitted
        around the card's threshold.
        """
        own = threshold is None or threshold == self.threshold
        if own and self.uncertain_band is not None and self.uncertain_band[0] <= p_fake <= self.uncertain_band[1]:
            return UNCERTAIN
        return self.class_names[int(p_fake >= (self.threshold if threshold is None else threshold))]

    def decision_points(self, threshold: float | None = None) -> list[float]:
        """The p_fake values where :meth:`decide` changes its answer: the threshold, and the band's edges when
        the threshold is the card's own."""
        own = threshold is None or threshold == self.threshold
        band = list(self.uncertain_band) if own and self.uncertain_band is not None else []
        return [self.threshold if threshold is None else threshold, *band]

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.training.preprocess

    @property
    def min_image_size(self) -> int:
        return self.training.data.min_image_size

    @property
    def preset(self) -> str:
        return self.training.preset

    @property
    def trained_on(self) -> list[str]:
        """Names of the training sources (folder names only: no paths of the training machine)."""
        return [_base_name(path) for path in self.training.data.data_dirs] or ["built-in synthetic set"]

    # ---- building ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: TrainConfig, model_kwargs: dict[str, Any], **values: Any) -> ModelCard:
        return cls(
            model_name=config.model.name,
            model_kwargs=dict(model_kwargs),
            training=config,
            versions=current_versions(),
            **values,
        )

    def with_values(self, **values: Any) -> ModelCard:
        card = replace(self, **values)
        card.validate("model card")
        return card

    # ---- (de)serialising --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (stored in checkpoints, ONNX metadata and the shipped card)."""
        training = self.training.to_dict()
        return {
            "format": CARD_FORMAT,
            "format_version": CARD_VERSION,
            "model_name": self.model_name,
            "model_kwargs": dict(self.model_kwargs),
            "class_names": list(self.class_names),
            "preprocess": training["preprocess"],
            "threshold": self.threshold,
            "temperature": self.temperature,
            "uncertain_band": list(self.uncertain_band) if self.uncertain_band else None,
            "epoch": self.epoch,
            "metrics": self.metrics,
            "notes": self.notes,
            "scope": self.scope,
            "training": {k: v for k, v in training.items() if k != "preprocess"},
            "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str = "model card") -> ModelCard:
        """Parse and validate a card; anything malformed is a :class:`CheckpointError` naming ``where``."""
        if not isinstance(raw, dict):
            raise CheckpointError(f"{where}: the model card is not a mapping")
        if raw.get("format") == "facecheck-checkpoint":  # format 1: flat checkpoint keys
            raw = _from_format_1(raw)
        if raw.get("format") != CARD_FORMAT:
            raise CheckpointError(f"{where} is not a facecheck model (no '{CARD_FORMAT}' marker)")
        if int(raw.get("format_version", 0)) > CARD_VERSION:
            raise CheckpointError(f"{where} was written by a newer facecheck (card format {raw['format_version']})")
        try:
            training = TrainConfig.from_dict({**dict(raw.get("training") or {}), "preprocess": raw["preprocess"]})
            band = raw.get("uncertain_band")
            card = cls(
                model_name=str(raw["model_name"]),
                model_kwargs=dict(raw["model_kwargs"]),
                training=training,
                class_names=tuple(str(n) for n in raw.get("class_names", LABELS)),
                threshold=_finite(raw.get("threshold", 0.5), "threshold", where),
                temperature=_finite(raw.get("temperature", 1.0), "temperature", where),
                uncertain_band=None
                if band is None
                else (_finite(band[0], "band", where), _finite(band[1], "band", where)),
                epoch=int(raw.get("epoch", 0)),
                metrics=dict(raw.get("metrics") or {}),
                notes=dict(raw.get("notes") or {}),
                scope=dict(raw.get("scope") or {}),
                versions={str(k): str(v) for k, v in dict(raw.get("versions") or {}).items()},
            )
        except CheckpointError:
            raise
        except ConfigError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{where}: malformed model card ({type(exc).__name__}: {str(exc)[:120]})") from None
        card.validate(where)
        return card

    def validate(self, where: str) -> None:
        if tuple(self.class_names) != LABELS:
            raise CheckpointError(f"{where}: class names must be {list(LABELS)}, got {list(self.class_names)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise CheckpointError(f"{where}: threshold must be in [0, 1], got {self.threshold}")
        if not (math.isfinite(self.temperature) and 1e-3 <= self.temperature <= 1e3):
            raise CheckpointError(f"{where}: temperature must be in [0.001, 1000], got {self.temperature}")
        if self.uncertain_band is not None:
            low, high = self.uncertain_band
            if not 0.0 <= low <= self.threshold <= high <= 1.0:
                raise CheckpointError(f"{where}: uncertain band {self.uncertain_band} must contain the threshold")
        if self.min_image_size < 1:
            raise CheckpointError(f"{where}: the minimum image size must be a positive whole number")
        size = self.model_kwargs.get("image_size", 0)
        if not isinstance(size, int) or not 16 <= size <= MAX_IMAGE_SIZE:
            raise CheckpointError(f"{where}: model input size {size!r} is out of range (16-{MAX_IMAGE_SIZE})")
        problem = preprocess_problem(self.preprocess)  # before any image is resized or normalised with it
        if problem:
            raise CheckpointError(f"{where}: {problem}")
        # One input size: what the network was built for is what the preprocessing hands it.
        fed = self.preprocess.crop_size or self.preprocess.image_size
        if fed is not None and fed != size:
            raise CheckpointError(f"{where}: the network takes {size} px inputs but the preprocessing gives {fed} px")

    @property
    def input_size(self) -> int:
        """The side of the square the network sees (the crop when the model was trained on crops)."""
        return int(self.model_kwargs["image_size"])


def _shown(value: Any) -> str:
    """A value as a person reads it: floats rounded to 3 decimals, lists and pairs without brackets noise."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return "-".join(_shown(v) for v in value) if len(value) == 2 else ", ".join(_shown(v) for v in value)
    return str(value)


def _measured_lines(measured: dict[str, Any]) -> list[str]:
    """The card's measured numbers: one line per entry, nested breakdowns indented below it."""
    lines = []
    for key, value in measured.items():
        if isinstance(value, dict):
            flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
            lines.append(f"  {key}: " + ", ".join(f"{k} {_shown(v)}" for k, v in flat.items()))
            for name, nested in value.items():
                if isinstance(nested, dict):
                    for part, numbers in nested.items():
                        shown = (", ".join(f"{k} {_shown(v)}" for k, v in numbers.items())
                                 if isinstance(numbers, dict) else _shown(numbers))  # fmt: skip
                        lines.append(f"      {name} {part}: {shown}")
        elif value is not None:
            lines.append(f"  {key}: {_shown(value)}")
    return lines


def render_card(card: ModelCard, name: str, weights_sha256: str | None = None) -> str:
    """The model card in plain words: the same text for ``facecheck models --card``, ``GET /v1/model`` and the
    web page."""
    scope, pre = card.scope, card.preprocess
    lines = [f"{name}: {scope.get('summary', card.model_name)}", ""]
    for key, title in (("detects", "Detects"), ("does_not_detect", "Does not detect"), ("sources", "Trained on")):
        values = scope.get(key)
        if values:
            lines.append(f"{title}:")
            lines += [f"  - {v}" for v in values]
    face = f"the largest face (MTCNN, margin {pre.face_margin:g}) cropped, " if pre.face_crop else ""
    band = "none" if card.uncertain_band is None else _shown(card.uncertain_band)
    lines += [
        "",
        f"Model: {card.model_name} ({card.preset}), input {card.model_kwargs.get('image_size')} px",
        f"Input: {face}resize {pre.resize} to {pre.image_size} px, JPEG normalised at {pre.normalize_jpeg}, "
        f"test-time views {pre.tta}",
        f"Verdict: fake at p_fake >= {card.threshold:.3f}, uncertain in {band}; temperature {card.temperature:.3f}",
    ]
    if weights_sha256:
        lines.append(f"Weights sha256: {weights_sha256}")
    measured = scope.get("measured") or {}
    if measured:
        lines += ["", "Measured:", *_measured_lines(measured)]
    if scope.get("command"):
        lines += ["", f"Reproduce: {scope['command']}"]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in card.versions.items())]
    return "\n".join(lines)


def current_versions() -> dict[str, str]:
    import torch
    import torchvision

    return {
        "facecheck": __version__,
        "torch": str(torch.__version__),  # TorchVersion is not a plain str
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def _base_name(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def _from_format_1(raw: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints of facecheck 0.1 kept the card's fields at the top level."""
    config = dict(raw.get("config") or {})
    return {
        "format": CARD_FORMAT,
        "format_version": 1,
        "model_name": raw.get("model_name"),
        "model_kwargs": raw.get("model_kwargs"),
        "class_names": raw.get("class_names", list(LABELS)),
        "preprocess": raw.get("preprocess", config.get("preprocess", {})),
        "threshold": raw.get("threshold", 0.5),
        "temperature": raw.get("temperature", 1.0),
        "epoch": raw.get("epoch", 0),
        "metrics": raw.get("metrics") or {},
        "notes": raw.get("extra") or {},
        "training": {k: v for k, v in config.items() if k != "preprocess"},
        "versions": raw.get("versions") or {},
    }
