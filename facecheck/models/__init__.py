"""Model registry. Importing this package registers every built-in model."""

from facecheck.models import efficientnet_lite, mobilenet, seed_cnn  # noqa: F401  (registration side effect)
from facecheck.models.base import FaceClassifier
from facecheck.models.registry import create_model, list_models, model_entry, register_model

__all__ = ["FaceClassifier", "create_model", "list_models", "model_entry", "register_model"]
