"""A simple ensemble: the mean of several calibrated detectors' ``p_fake``.

Each member applies its own preprocessing, test-time augmentation and
temperature, so models with different backbones and input sizes combine; the
decision threshold is the mean of the members' thresholds. Averaging
calibrated probabilities (rather than raw logits) keeps one over-confident
member from outvoting the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from facecheck.errors import DataError
from facecheck.inference.predictor import NO_FACE, Detector, ImageInput, Prediction, expand_image_inputs
from facecheck.inference.protocol import ReadsItsCard


class Ensemble(ReadsItsCard):
    """Duck-types :class:`Detector` for ``predict`` and evaluation.

    Evaluation without ``--data`` uses the first member's test split.
    """

    def __init__(self, members: Sequence[Detector]) -> None:
        if len(members) < 2:
            raise DataError("an ensemble needs at least two models")
        names = {tuple(m.class_names) for m in members}
        if len(names) != 1:
            raise DataError(f"the models disagree on class names: {sorted(names)}")
        self.members = list(members)
        first = self.members[0]
        # The ensemble's own card: the first member's (where evaluation without --data takes its test split
        # from) with the mean of the members' thresholds and no uncertain band (each member's band was fitted
        # around its own threshold, none around the mean).
        self.card = first.card.with_values(
            threshold=float(np.mean([m.threshold for m in self.members])),
            uncertain_band=None,
            scope={**first.card.scope, "summary": "ensemble (mean calibrated p_fake) of "
                   + " + ".join(m.source for m in self.members)},
        )  # fmt: skip
        self.source = first.source
        self.model = None  # no single network: no Grad-CAM
        self.tta = ",".join(sorted({m.tta for m in self.members}))

    @classmethod
    def load(
        cls,
        paths: Sequence[str | Path],
        device: str = "auto",
        backend: str = "torch",
        tta: str | None = None,
        precision: str = "auto",
    ) -> Ensemble:
        return cls([Detector.load(p, device=device, backend=backend, tta=tta, precision=precision) for p in paths])

    @property
    def description(self) -> str:
        return "ensemble of " + " + ".join(m.source for m in self.members)

    @property
    def backend(self) -> str:
        return self.members[0].backend

    @property
    def precision(self) -> str:
        return self.members[0].precision

    @property
    def model_name(self) -> str:
        return "+".join(m.model_name for m in self.members)

    def predict(
        self,
        images: ImageInput | Iterable[ImageInput],
        batch_size: int = 32,
        progress: bool = False,
        threshold: float | None = None,
        provenance: bool = True,
    ) -> list[Prediction]:
        """Mean calibrated ``p_fake``; an image any member cannot read gets that member's error.

        Takes what :meth:`Detector.predict` takes (folders too) and raises on the same misuse.
        """
        items = expand_image_inputs(images)
        # What a file declares about itself is read once, by the first member.
        per_member = [
            m.predict(items, batch_size=batch_size, progress=progress, provenance=provenance and index == 0)
            for index, m in enumerate(self.members)
        ]
        results = []
        for predictions in zip(*per_member, strict=True):
            first = predictions[0]
            failed = next((p for p in predictions if p.error is not None), None)
            if failed is not None:
                results.append(Prediction(first.path, error=failed.error, provenance=first.provenance))
                continue
            p_fake = float(np.mean([p.p_fake for p in predictions]))
            label = self.card.decide(p_fake, threshold)
            if any(p.label == NO_FACE for p in predictions):
                label = NO_FACE
            # Each member's notices (no face, no face check, size), said once.
            notices = dict.fromkeys(part for p in predictions if p.notice for part in p.notice.split("; "))
            decided = Prediction(first.path, p_fake, label, notice="; ".join(notices) or None)
            decided.provenance = first.provenance
            results.append(decided)
        return results

    __call__ = predict


def load_detector(
    paths: Sequence[str | Path | None],
    device: str = "auto",
    backend: str = "torch",
    tta: str | None = None,
    precision: str = "auto",
) -> Detector | Ensemble:
    """One model: a :class:`Detector`; several: their :class:`Ensemble`."""
    if len(paths) == 1:
        return Detector.load(paths[0], device=device, backend=backend, tta=tta, precision=precision)
    return Ensemble.load(paths, device=device, backend=backend, tta=tta, precision=precision)
