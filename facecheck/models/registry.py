"""Models by name: ``create_model("seed_cnn")``, ``list_models()``.

Each model module registers a builder with :func:`register_model`; adding a
backbone is one decorated function. The CLI takes its choices from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from facecheck.config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig
from facecheck.errors import ConfigError
from facecheck.models.base import FaceClassifier
from facecheck.models.filters import input_filter as make_input_filter


@dataclass(frozen=True)
class ModelEntry:
    """A registered model and its preprocessing defaults (as timm's pretrained configs): presets only override."""

    name: str
    builder: Callable[..., FaceClassifier]
    description: str
    has_pretrained: bool
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    description: str,
    has_pretrained: bool = False,
    *,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    input_size: int = 224,
) -> Callable:
    def decorate(builder: Callable[..., FaceClassifier]) -> Callable[..., FaceClassifier]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, description, has_pretrained, mean, std, input_size)
        return builder

    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(
    name: str, *, pretrained: bool = False, weights: str | None = None, input_filter: str = "none", **kwargs: object
) -> FaceClassifier:
    """Build a registered model; ``pretrained`` loads verified backbone weights; ``input_filter``
    (none, npr) is applied to the images before the backbone."""
    entry = model_entry(name)
    if pretrained and not entry.has_pretrained:
        raise ConfigError(f"model {name!r} has no pretrained weights; set model.pretrained=false")
    model = entry.builder(pretrained=True, weights=weights, **kwargs) if pretrained else entry.builder(**kwargs)
    model.input_filter = make_input_filter(input_filter)
    return model


def with_model_defaults(config: TrainConfig) -> TrainConfig:
    """``config`` with the input size and normalisation its model expects, where the preset left them open."""
    entry = model_entry(config.model.name)
    pre = config.preprocess
    if pre.mean is not None and pre.std is not None and pre.image_size is not None:
        return config
    filled = replace(
        pre,
        mean=tuple(pre.mean or entry.mean),
        std=tuple(pre.std or entry.std),
        image_size=pre.image_size or entry.input_size,
    )
    return replace(config, preprocess=filled)
