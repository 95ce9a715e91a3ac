from pathlib import Path

import pytest

from facecheck.config import (
    RECOMMENDED_PRESET,
    TrainConfig,
    get_preset,
    list_presets,
    load_config_file,
    merge,
    parse_override,
    save_config,
    validate,
)
from facecheck.errors import ConfigError
from facecheck.models.registry import with_model_defaults


def test_presets_reproduce_the_report():
    cnn = get_preset("seed-cnn")
    assert (cnn.model.name, cnn.model.pretrained, cnn.model.hidden_dim) == ("seed_cnn", False, 128)
    assert (cnn.optim.lr, cnn.optim.weight_decay, cnn.optim.step_size, cnn.optim.gamma) == (1e-3, 1e-4, 5, 0.5)
    mob = get_preset("seed-mobilenet")
    assert (mob.model.name, mob.model.pretrained, mob.model.dropout) == ("mobilenet_v2", True, 0.3)
    assert (mob.optim.lr, mob.optim.weight_decay, mob.optim.step_size, mob.optim.gamma) == (1e-3, 1e-4, 5, 0.1)
    for preset in (cnn, mob):
        assert (preset.epochs, preset.batch_size, preset.preprocess.image_size) == (15, 32, 256)
        assert (preset.preprocess.hflip_prob, preset.preprocess.rotation_degrees) == (0.5, 10.0)
        assert preset.data.test_fraction == 0.3
    assert list_presets() == ["general-sbi-lite0", "general-v2", "lite0-native-jpeg", "seed-cnn", "seed-mobilenet"]


def test_recommended_preset_is_the_measured_recipe():
    lite = get_preset(RECOMMENDED_PRESET)
    assert RECOMMENDED_PRESET == "lite0-native-jpeg"
    assert (lite.model.name, lite.model.pretrained, lite.epochs) == ("efficientnet_lite0", True, 10)
    pre = lite.preprocess
    assert (pre.resize, pre.crop_size, pre.tta, pre.augment, pre.normalize_jpeg) == ("none", None, "flip", "jpeg", 75)
    assert (pre.rotation_degrees, pre.mean, pre.std) == (0.0, None, None)  # the model's own: [-1, 1]
    resolved = with_model_defaults(lite)
    assert (resolved.preprocess.mean, resolved.preprocess.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    validate(resolved)


def test_general_preset_trains_on_sources_with_pseudo_fakes():
    general = with_model_defaults(get_preset("general-sbi-lite0"))
    assert general.data.pseudo_fakes == ["sbi"] and general.data.balance == "source-class"
    assert (general.preprocess.resize, general.preprocess.image_size) == ("fit", 224)
    assert general.model.trainable_blocks == 5
    validate(general)


def test_get_preset_returns_a_copy():
    get_preset("seed-cnn").optim.lr = 5.0
    assert get_preset("seed-cnn").optim.lr == 1e-3


def test_overrides_are_typed_and_nested():
    config = merge(get_preset("seed-cnn"), parse_override("optim.lr=3e-4"))
    assert config.optim.lr == pytest.approx(3e-4)
    config = merge(config, parse_override("preprocess.mean=[0.5, 0.5, 0.5]"))
    assert config.preprocess.mean == (0.5, 0.5, 0.5)
    config = merge(config, parse_override("data.max_per_class=null"))
    assert config.data.max_per_class is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown setting 'optim.lrr'"),
        ("epochs=ten", "epochs must be a whole number"),
        ("model.pretrained=maybe", "must be true or false"),
        ("optim=1", "is a section"),
        ("preprocess.mean=[1, 2]", "list of 3 numbers"),
    ],
)
def test_bad_overrides_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        merge(get_preset("seed-cnn"), parse_override(override))


def test_override_syntax_error():
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("lr")


def test_config_file_round_trip(tmp_path: Path):
    config = merge(get_preset("seed-mobilenet"), {"epochs": 3, "optim": {"lr": 0.01}})
    save_config(config, tmp_path / "c.yaml")
    again = TrainConfig.from_dict(load_config_file(tmp_path / "c.yaml"))
    assert again == config


def test_config_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(tmp_path / "list.yaml")


def test_validate_catches_impossible_values():
    with pytest.raises(ConfigError, match="test_fraction"):
        validate(merge(get_preset("seed-cnn"), {"data": {"test_fraction": 1.5}}))
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("nope")
