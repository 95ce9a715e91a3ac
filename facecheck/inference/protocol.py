"""What every detector offers its callers (video, explain, evaluation, reports, serving): one interface.

:class:`~facecheck.inference.predictor.Detector` and :class:`~facecheck.inference.ensemble.Ensemble` both
satisfy it; code that takes "a detector" takes an :class:`AnyDetector`, never ``Any``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from facecheck.card import ModelCard
    from facecheck.inference.predictor import ImageInput, Prediction


@runtime_checkable
class AnyDetector(Protocol):
    """A model ready to judge pictures, described by its card (which alone decides: ``card.decide``)."""

    card: ModelCard
    source: str
    tta: str
    model: torch.nn.Module | None  # the PyTorch network, for Grad-CAM; None for ensembles and .onnx files

    @property
    def threshold(self) -> float: ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def backend(self) -> str: ...

    @property
    def precision(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    def predict(
        self,
        images: ImageInput | Iterable[ImageInput],
        batch_size: int = 32,
        progress: bool = False,
        threshold: float | None = None,
        provenance: bool = True,
    ) -> list[Prediction]: ...


class ReadsItsCard:
    """What a detector reads from its card rather than keeping a copy (Detector and Ensemble share it)."""

    card: ModelCard

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)
