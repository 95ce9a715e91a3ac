"""Speed features keep behaviour: decode cache, frozen-backbone training, unfreezing, precision."""

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from facecheck.checkpoint import build_model, read_checkpoint
from facecheck.compute import cpu_features, parse_cpu_flags, resolve_precision
from facecheck.config import PreprocessConfig
from facecheck.data import decode_cache
from facecheck.data.decode_cache import CachedImageDataset, decoded_images
from facecheck.data.discovery import discover
from facecheck.data.images import load_image
from facecheck.data.transforms import eval_tensor_transform, eval_transform
from facecheck.errors import ConfigError
from facecheck.training import features as features_module
from facecheck.training.runners import TrainStep
from facecheck.training.trainer import train

from .conftest import quick_config, write_face_set


def test_decode_cache_matches_the_uncached_pipeline_and_is_reused(tmp_path: Path, monkeypatch):
    records = discover(write_face_set(tmp_path / "d", per_class=3, size=80))
    config = PreprocessConfig(image_size=64)
    pixels = decoded_images(records, config, progress=False, root=tmp_path / "cache")
    dataset = CachedImageDataset(pixels, [r.label for r in records], eval_tensor_transform(config))
    for index, record in enumerate(records):
        expected = eval_transform(config)(load_image(record.path))
        assert torch.allclose(dataset[index][0], expected, atol=1e-5)
        assert dataset[index][1] == record.label

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode_cache, "_decode", no_decoding)
    again = decoded_images(records, config, progress=False, root=tmp_path / "cache")
    assert (again == pixels).all()
    with pytest.raises(AssertionError, match="decoded again"):
        decoded_images(records, PreprocessConfig(image_size=32), progress=False, root=tmp_path / "cache")
    with pytest.raises(AssertionError, match="decoded again"):
        decoded_images(records, PreprocessConfig(image_size=64, normalize_jpeg=90), root=tmp_path / "cache")


def test_decode_cache_notices_changed_files(tmp_path: Path):
    records = discover(write_face_set(tmp_path / "d", per_class=2, size=40))
    key = decode_cache.cache_key(records, PreprocessConfig(image_size=32))
    write_face_set(tmp_path / "d", per_class=2, size=48, seed=5)  # same names, new content
    assert decode_cache.cache_key(records, PreprocessConfig(image_size=32)) != key


def _frozen_config(data: Path, **extra):
    settings = {
        "freeze_backbone": True,
        "epochs": 3,
        "model": {"pretrained": False},
        "optim": {"lr": 0.01, "weight_decay": 0.0001, "step_size": 5, "gamma": 0.1},
    }
    return quick_config("seed-mobilenet", data, **(settings | extra))


def test_frozen_backbone_trains_only_the_head_and_caches_features(tmp_path: Path, monkeypatch):
    data = write_face_set(tmp_path / "d", per_class=10)
    config = _frozen_config(data)
    torch.manual_seed(config.seed)
    initial = build_model(config).state_dict()
    result = train(config, tmp_path / "run", quiet=True)
    assert [row["phase"] for row in result.history] == ["head"] * 3
    trained = read_checkpoint(tmp_path / "run" / "last.pt")["state_dict"]
    backbone = [k for k in initial if k.startswith("backbone.")]
    head = [k for k in initial if k.startswith("head.")]
    assert all(torch.equal(initial[k], trained[k]) for k in backbone)  # BatchNorm statistics included
    assert not all(torch.equal(initial[k], trained[k]) for k in head)

    def no_extraction(*args, **kwargs):
        raise AssertionError("features computed again")

    monkeypatch.setattr(features_module, "extract_features", no_extraction)
    again = train(config, tmp_path / "run2", quiet=True)
    assert [row["train_loss"] for row in again.history] == pytest.approx([r["train_loss"] for r in result.history])


def test_unfreeze_fine_tunes_only_the_last_blocks(tmp_path: Path):
    data = write_face_set(tmp_path / "d", per_class=10)
    config = _frozen_config(data, epochs=1, unfreeze_blocks=2, unfreeze_epochs=1)
    torch.manual_seed(config.seed)
    initial = build_model(config).state_dict()
    result = train(config, tmp_path / "run", quiet=True)
    assert [row["phase"] for row in result.history] == ["head", "unfreeze"]
    trained = read_checkpoint(tmp_path / "run" / "last.pt")["state_dict"]
    # MobileNetV2 has 19 feature blocks: 17 and 18 are the last two.
    assert not torch.equal(initial["backbone.0.18.0.weight"], trained["backbone.0.18.0.weight"])
    assert not torch.equal(initial["backbone.0.17.conv.0.0.weight"], trained["backbone.0.17.conv.0.0.weight"])
    assert torch.equal(initial["backbone.0.16.conv.0.0.weight"], trained["backbone.0.16.conv.0.0.weight"])
    assert torch.equal(initial["backbone.0.0.1.running_mean"], trained["backbone.0.0.1.running_mean"])


def test_unfreeze_needs_a_frozen_phase(tmp_path: Path):
    config = quick_config("seed-cnn", tmp_path, unfreeze_blocks=1)
    with pytest.raises(ConfigError, match="needs freeze_backbone"):
        train(config, tmp_path / "run", quiet=True)


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) in (None, torch.bfloat16)
    with pytest.raises(ConfigError, match="CUDA only"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision must be"):
        resolve_precision("int4", cpu)


def test_decode_cache_applies_jpeg_normalisation_like_the_pil_pipeline(tmp_path: Path):
    records = discover(write_face_set(tmp_path / "d", per_class=2, size=80))
    config = PreprocessConfig(image_size=64, normalize_jpeg=50)
    pixels = decoded_images(records, config, progress=False, root=tmp_path / "cache")
    dataset = CachedImageDataset(pixels, [r.label for r in records], eval_tensor_transform(config))
    expected = eval_transform(config)(load_image(records[0].path))
    assert torch.allclose(dataset[0][0], expected, atol=1e-5)
    plain = eval_transform(PreprocessConfig(image_size=64))(load_image(records[0].path))
    assert not torch.allclose(plain, expected, atol=1e-2)  # the re-encoding really happened


SAMPLE_CPUINFO = """processor\t: 0
model name\t: Some CPU
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile
"""


def test_cpu_features_are_parsed_from_the_flags_line():
    features = parse_cpu_flags(SAMPLE_CPUINFO)
    assert features["avx512"] and features["avx512_vnni"] and features["avx512_bf16"] and features["avx2"]
    assert not features["amx_bf16"] and not features["avx_vnni"]
    assert not any(parse_cpu_flags("processor\t: 0\n").values())
    described = cpu_features()
    assert {"avx512", "native_bf16", "torch_cpu_capability"} <= set(described)


def _tiny_step(compile_step: bool):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    ).train()
    # SGD, not Adam: Adam's first step moves every weight by lr whatever the gradient's size, so rounding noise
    # in a near-zero gradient (a bias before BatchNorm) would look like a difference.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = TrainStep(model, optimizer, torch.device("cpu"), None, channels_last=False, compile=compile_step)
    torch.manual_seed(1)
    images, targets = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    return model, step, images, targets


def test_train_step_takes_an_optimizer_step():
    model, step, images, targets = _tiny_step(False)
    before = [p.detach().clone() for p in model.parameters()]
    loss = step(images, targets)
    assert math.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_compiled_train_step_trains_like_the_eager_one():
    eager_model, eager, images, targets = _tiny_step(False)
    compiled_model, compiled, _, _ = _tiny_step(True)
    assert compiled.forward is not compiled_model
    expected, loss = eager(images, targets), compiled(images, targets)
    assert math.isfinite(loss) and loss == pytest.approx(expected, rel=1e-4)
    for a, b in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)  # the compiled step trained the model's own weights


def test_same_padding_without_a_padded_copy_gives_the_same_outputs():
    from torch.nn import functional as F

    from facecheck.models.efficientnet_lite import SameConv2d

    def padded_copy(conv: SameConv2d, x: torch.Tensor) -> torch.Tensor:  # the plain TensorFlow "SAME" recipe
        pads = []
        for size, kernel, stride in (
            (x.shape[-1], conv.kernel_size[1], conv.stride[1]),
            (x.shape[-2], conv.kernel_size[0], conv.stride[0]),
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    torch.manual_seed(0)
    for kernel, stride, groups, size in [(1, 1, 1, 9), (3, 1, 4, 9), (5, 1, 4, 8), (3, 2, 4, 8), (5, 2, 1, 9)]:
        conv = SameConv2d(4, 4, kernel, stride, groups=groups, bias=False)
        x = torch.randn(2, 4, size, size)
        assert conv(x).shape[-1] == math.ceil(size / stride)
        assert torch.allclose(conv(x), padded_copy(conv, x), atol=1e-6)


def test_auto_backend_picks_the_fastest_installed_engine(monkeypatch):
    from facecheck.inference import engines

    monkeypatch.setattr(engines, "AUTO_ORDER", ("openvino", "onnx", "torch"))  # the real order (conftest drops one)

    assert engines.resolve_backend("onnx") == "onnx"
    assert engines.resolve_backend("auto", torch.device("cuda")) == "torch"
    installed = {"openvino": False, "onnxruntime": True, "torch": True, "onnx": True, "onnxscript": True}
    monkeypatch.setattr(engines, "runtime_installed", lambda module: installed[module])
    assert engines.resolve_backend("auto", torch.device("cpu")) == "onnx"
    # A few images: an engine's export and compile cost more than they save.
    assert engines.resolve_backend("auto", images=engines.AUTO_MIN_IMAGES - 1) == "torch"
    assert engines.resolve_backend("auto", images=engines.AUTO_MIN_IMAGES) == "onnx"
    installed["openvino"] = True
    assert engines.resolve_backend("auto") == "openvino"
    installed["onnx"] = False  # no exporter: neither ONNX engine can be built
    assert engines.resolve_backend("auto") == "torch"
    installed["onnx"], installed["openvino"], installed["onnxruntime"] = True, False, False
    assert engines.resolve_backend("auto") == "torch"


def test_precision_is_bf16_only_where_the_card_says_it_holds_and_the_cpu_runs_it(monkeypatch):
    from facecheck.errors import FacecheckError
    from facecheck.inference import engines

    monkeypatch.setattr(engines, "cpu_has_native_bf16", lambda: True)
    resolve = engines.resolve_engine_precision
    assert resolve("auto", "openvino", {"bf16", "bf16-checked"}) == "bf16"  # the faster of the two that hold
    assert resolve("auto", "openvino", {"bf16-checked"}) == "bf16-checked"
    assert resolve("auto", "openvino", set()) == "fp32"  # not measured to hold
    assert resolve("auto", "onnx", {"bf16"}) == "fp32"  # ONNX Runtime: float32
    assert resolve("fp32", "openvino", {"bf16"}) == "fp32"  # asked for by name
    assert resolve("bf16-checked", "openvino") == "bf16-checked"
    with pytest.raises(FacecheckError, match="bf16 runs on the openvino backend, not torch"):
        resolve("bf16", "torch", {"bf16"})
    with pytest.raises(FacecheckError, match="precision must be one of auto, fp32, bf16, bf16-checked, not 'fp16'"):
        resolve("fp16", "openvino")
    monkeypatch.setattr(engines, "cpu_has_native_bf16", lambda: False)
    assert resolve("auto", "openvino", {"bf16"}) == "fp32"  # emulated: no gain
    # Asked for by name on such a CPU: refused before OpenVINO is touched, with the way out.
    with pytest.raises(FacecheckError, match=r"needs a CPU with native bf16.*--precision fp32"):
        engines.OpenVinoEngine(Path("unused.onnx"), precision="bf16")


def test_bf16_checked_gives_float32s_verdicts_near_every_decision(tmp_path: Path):
    """A fast engine off by up to 0.5 calibrated logits, checked within 0.6 of each decision point: every
    verdict is the exact engine's, and only the inputs near a decision were scored twice."""
    import numpy as np

    from facecheck.checkpoint import card_for
    from facecheck.config import get_preset
    from facecheck.inference.outputs import near_decisions
    from facecheck.inference.predictor import Detector

    # By hand: points 0.5 (z = 0) and 0.9 (z = 2.197); p = 0.6 has z = 0.405, p = 0.99 has z = 4.595.
    assert near_decisions(np.array([0.6, 0.99, 0.0, 1.0]), [0.5, 0.9], 0.5).tolist() == [True, False, False, False]
    assert near_decisions(np.array([0.6]), [0.5], 0.4).tolist() == [False]

    generator = np.random.default_rng(0)
    exact_z = generator.normal(1.0, 3.0, 400)
    error = generator.uniform(-0.5, 0.5, 400)
    batch = torch.arange(400, dtype=torch.float32).reshape(400, 1, 1, 1).expand(400, 3, 2, 2)

    def logits(z: np.ndarray):  # two-class logits whose calibrated logit (temperature 1) is z
        return lambda inputs: np.stack([np.zeros(len(inputs)), z[inputs[:, 0, 0, 0].long().numpy()]], axis=1)

    from dataclasses import replace

    card = replace(card_for(get_preset("seed-cnn"), epoch=1, metrics={}), threshold=0.8,
                   uncertain_band=(0.7, 0.95), temperature=1.0)  # fmt: skip
    calls: list[int] = []

    def counted(inputs):
        calls.append(len(inputs))
        return logits(exact_z)(inputs)

    detector = Detector(None, card, "cpu", engine=logits(exact_z + error))
    unchecked = [card.decide(float(p)) for p in detector.predict_tensor(batch)]
    detector.exact_engine, detector.check_margin = counted, 0.6
    checked = detector.predict_tensor(batch)
    truth = [card.decide(float(p)) for p in 1 / (1 + np.exp(-exact_z))]
    assert unchecked != truth  # the fast engine alone changes verdicts
    assert [card.decide(float(p)) for p in checked] == truth
    near = near_decisions(1 / (1 + np.exp(-(exact_z + error))), card.decision_points(), 0.6)
    assert calls == [int(near.sum())] and 0 < near.sum() < 200
    # A user's threshold replaces the card's points (and its band).
    assert card.decision_points(0.5) == [0.5] and card.decision_points() == [0.8, 0.7, 0.95]
    user = detector.predict_tensor(batch, threshold=0.5)
    assert [p >= 0.5 for p in user] == list(exact_z >= 0)


def test_predict_cli_refuses_bf16_on_an_engine_that_cannot_run_it(tmp_path, capsys):
    from facecheck.cli import main

    image = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(image)
    assert main(["predict", str(image), "--backend", "torch", "--precision", "bf16"]) == 2
    assert "precision bf16 runs on the openvino backend, not torch" in capsys.readouterr().err
    out = str(tmp_path / "scores.parquet")
    assert main(["predict", str(image), "--engine", "ray", "--precision", "bf16", "--out", out]) == 2
    assert "leave --precision out" in capsys.readouterr().err


def test_predict_cli_picks_its_engine_by_workload(tmp_path, monkeypatch):
    """predict's default --backend auto: torch for a few images, the fastest installed engine for many."""
    from facecheck import cli
    from facecheck.inference import engines

    chosen = []

    def fake_load_detector(paths, device="auto", backend="torch", tta=None, precision="auto"):
        chosen.append(backend)
        raise SystemExit(0)  # stop before predicting: only the choice matters here

    monkeypatch.setattr("facecheck.api.load_detector", fake_load_detector)
    monkeypatch.setattr(engines, "runtime_installed", lambda module: True)
    monkeypatch.setattr(engines, "AUTO_ORDER", ("openvino", "onnx", "torch"))  # the real order (conftest drops one)
    for count in (1, engines.AUTO_MIN_IMAGES):
        folder = tmp_path / f"n{count}"
        folder.mkdir()
        for index in range(count):
            Image.new("RGB", (8, 8)).save(folder / f"{index}.png")
        with pytest.raises(SystemExit):
            cli.main(["predict", str(folder)])
    assert chosen == ["torch", "openvino"]


def test_wait_policy_turns_passive_only_on_a_busy_cpu():
    from facecheck.cpu import choose_wait_policy

    quiet: dict[str, str] = {}
    assert choose_wait_policy(quiet, load=0.4, cores=2) is None and quiet == {}
    busy: dict[str, str] = {}
    assert "load average 1.5 on 2 cores" in choose_wait_policy(busy, load=1.5, cores=2)
    assert busy == {"OMP_WAIT_POLICY": "PASSIVE"}
    users_own = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert choose_wait_policy(users_own, load=8.0, cores=2) is None and users_own["OMP_WAIT_POLICY"] == "ACTIVE"


def test_train_on_a_busy_cpu_sets_the_wait_policy_before_torch_loads(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "os.getloadavg = lambda: (64.0, 64.0, 64.0)\n"  # a crowded machine
        "from facecheck.cli import main\n"
        f"code = main(['train', '--data', {str(tmp_path / 'absent')!r}, '--out', {str(tmp_path / 'run')!r}])\n"
        "import torch\n"  # loaded after the choice: OpenMP read the policy then
        "print('policy', os.environ.get('OMP_WAIT_POLICY'), 'code', code)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "the CPU is shared" in done.stderr and "PASSIVE" in done.stderr
    assert "policy PASSIVE code 2" in done.stdout
