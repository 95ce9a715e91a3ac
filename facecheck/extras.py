"""Optional dependencies: a missing one becomes a one-line error naming the pip extra that installs it.

``pip install facecheck`` brings what training, evaluation and prediction need;
the rest comes with extras (see ``[project.optional-dependencies]`` in
pyproject.toml): ``pip install 'facecheck[serve]'`` and so on.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from facecheck.errors import FacecheckError

# Each extra of pyproject.toml and the modules it makes importable (tests/test_install.py keeps them in step).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "python_multipart", "prometheus_client"),
    "report": ("matplotlib",),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "openvino": ("openvino",),
    "explain": ("captum", "matplotlib"),
    "video": ("av",),
    "tune": ("optuna", "matplotlib"),
    # Ray batch scoring (its actors run ONNX Runtime) and WebDataset shards; torch.distributed needs nothing more.
    "distributed": ("ray", "webdataset", "pyarrow", "onnxruntime"),
    # Reading and validating C2PA Content Credentials (facecheck.provenance; without it they are named, not read).
    "provenance": ("c2pa",),
}
# Module -> the first extra that installs it.
MODULE_EXTRAS: dict[str, str] = {}
for _extra, _modules in EXTRA_MODULES.items():
    for _module in _modules:
        MODULE_EXTRAS.setdefault(_module, _extra)
MODULE_EXTRAS["multipart"] = "serve"  # python-multipart's older import name
# Module -> its distribution name on PyPI, where they differ.
DISTRIBUTIONS = {"python_multipart": "python-multipart", "multipart": "python-multipart"}
DISTRIBUTIONS |= {"prometheus_client": "prometheus-client", "c2pa": "c2pa-python"}


class MissingExtraError(FacecheckError):
    """An optional package is not installed; the message says which extra installs it."""


def missing_extra_message(module: str, extra: str) -> str:
    package = DISTRIBUTIONS.get(module, module)
    return f"this needs the optional package {package}, not installed: pip install 'facecheck[{extra}]'"


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install 'facecheck[extra]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # The module itself or one of its own dependencies is missing: either way the extra fixes it.
        raise MissingExtraError(missing_extra_message(_top(exc.name) or module, extra)) from None


def require_extra(extra: str) -> None:
    """Check up front (before any slow work) that every module of ``extra`` imports."""
    for module in EXTRA_MODULES[extra]:
        require(module, extra)


def extra_for(exc: ModuleNotFoundError) -> str | None:
    """The extra that provides the module ``exc`` is about, or None when it is not an optional one."""
    return MODULE_EXTRAS.get(_top(exc.name) or "")


def _top(name: str | None) -> str | None:
    return name.split(".")[0] if name else None
