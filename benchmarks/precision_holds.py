"""Which precision holds for the shipped model? int8 and bfloat16 against float32 on every source's test split.

    python benchmarks/precision_holds.py --run runs/model-build-v2          # the run the shipped model was built in
    python benchmarks/precision_holds.py --run RUN --calibration 512 --out benchmarks/results

The shipped model's float32 network (its ONNX export, OpenVINO) is run three ways on the same prepared inputs of
each source's test split (the pictures' faces, as ``predict`` makes them; the most suspicious face decides):
  float32    OpenVINO, float32 (the reference)
  int8       ONNX Runtime static quantisation (QDQ, per-channel weights, the same as ``facecheck export
             --quantize int8``) calibrated on ``--calibration`` face crops of the run's own validation split,
             run by OpenVINO
  bfloat16   OpenVINO with bf16 inference precision (``--precision bf16``); only on a CPU with native bf16
             (AVX512-BF16 or AMX): elsewhere OpenVINO would run float32 and the row would mean nothing
  bfloat16-checked   bf16, and float32 again for every face whose bf16 answer lies within a margin of a
             decision point (``--precision bf16-checked``, ``Detector.predict_tensor``); the margin is the bf16
             error, in calibrated logits, that 99% of the same validation crops stay within, rounded up to 0.1
Reported per source and precision: ROC AUC, the share of verdicts changed at the card's threshold, the largest
p_fake change, and the network's speed (batch 32, one view). The issue's rule for a precision by default: ROC
AUC within 0.005 of float32 on every split and no more verdicts changed than the tolerance
(``--verdict-tolerance``, default 0.01). Results: ``OUT/precision_holds.json`` and ``.md``
(``benchmarks/release_model.py --engines`` puts them on the card). Needs ``../shared/data`` and the run folder
(its split); says so and exits 2 without them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SOURCES = ("ffhq-stylegan", "lfw-faceswap", "dfdc-faces", "diffusion-portraits", "inswapper-faces")
AUC_TOLERANCE = 0.005


def prepared_inputs(detector: Any, paths: list[Path], batch: int = 64) -> tuple[list[list[Any]], list[bool]]:
    """Each picture's model inputs (one per judged face), as predict prepares them; and which were readable."""
    from facecheck.inference.predictor import Prediction

    inputs: list[list[Any]] = []
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        inputs.extend(detector._prepare_batch(chunk, [Prediction(str(p)) for p in chunk]))
    return inputs, [bool(views) for views in inputs]


def picture_scores(score: Any, inputs: list[list[Any]]) -> tuple[Any, float]:
    """The picture's p_fake (its most suspicious face) under ``score`` (a batch to calibrated p_fake, as
    ``Detector.predict_tensor``); and the images/s of the network(s) behind it."""
    import numpy as np
    import torch

    flat = torch.stack([view for views in inputs for view in views])
    score(flat[:32])  # warm-up
    started = time.perf_counter()
    p_fake = np.concatenate([score(flat[i : i + 32]) for i in range(0, len(flat), 32)])
    speed = len(flat) / (time.perf_counter() - started)
    scores = iter(p_fake.tolist())
    return np.array([max(next(scores) for _ in views) for views in inputs if views]), speed


def check_margin(fast: Any, exact: Any, crops: list[Any], temperature: float, share: float = 0.99) -> float:
    """bf16-checked's margin: the error of ``fast`` against ``exact``, in calibrated logits, that ``share`` of
    the validation crops stay within, rounded up to the next 0.1. A verdict can then change only for a face whose
    error is larger (1% of them) and whose p_fake lies across a decision point from float32's (the test splits
    measure how often)."""
    import math

    import numpy as np
    import torch

    batch = torch.stack(crops)
    logit = lambda engine: np.concatenate([engine(batch[i : i + 32]) for i in range(0, len(batch), 32)])  # noqa: E731
    fast_z, exact_z = (np.diff(logit(engine), axis=1)[:, 0] / temperature for engine in (fast, exact))
    return math.ceil(float(np.quantile(np.abs(fast_z - exact_z), share)) * 10) / 10


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cpu']}, {machine['cores_available']} cores, native bf16 {machine['native_bf16']}, "
        f"load at start {tuple(round(v, 2) for v in machine['load_average_at_start'])}, {machine['date']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "model-build-v2")
    parser.add_argument("--calibration", type=int, default=512, help="validation face crops to calibrate on")
    parser.add_argument("--verdict-tolerance", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if not SHARED.is_dir() or not (args.run / "split.csv").is_file():
        print(f"needs {SHARED} and the run folder's split ({args.run / 'split.csv'}): not present", file=sys.stderr)
        return 2

    import numpy as np
    from sklearn.metrics import roc_auc_score

    import facecheck
    from facecheck.compute import cpu_has_native_bf16, describe_machine
    from facecheck.inference.engines import OpenVinoEngine
    from facecheck.inference.export import export_onnx, quantize_int8, write_card
    from facecheck.inference.predictor import Detector
    from facecheck.run_folder import RunFolder

    detector = facecheck.load(backend="torch", tta="none")
    card = detector.card
    split = RunFolder(args.run).read_split(SHARED)
    work = Path(tempfile.mkdtemp(prefix="facecheck-int8-"))
    fp32_path, int8_path = work / "model.onnx", work / "model.int8.onnx"
    export_onnx(detector.model, card.preprocess, fp32_path)
    write_card(fp32_path, card)
    validation = split["val"]
    step = max(1, len(validation) // args.calibration)
    calibration_paths = [r.path for r in validation[::step]][: args.calibration]
    calibration_inputs, _ = prepared_inputs(detector, calibration_paths)
    calibration = [views[0] for views in calibration_inputs if views]
    print(f"calibrating int8 on {len(calibration)} validation face crops", file=sys.stderr)
    quantize_int8(fp32_path, int8_path, calibration)
    engines = {"float32": OpenVinoEngine(fp32_path), "int8": OpenVinoEngine(int8_path)}
    margin = None
    if cpu_has_native_bf16():
        engines["bfloat16"] = OpenVinoEngine(fp32_path, precision="bf16")
    else:
        print("no native bf16 on this CPU: bfloat16 is not measured", file=sys.stderr)
    # Each precision as predict runs it: a batch in, calibrated p_fake out.
    scorers = {}
    for name, engine in engines.items():
        scorers[name] = Detector(None, card, "cpu", engine=engine).predict_tensor
    if "bfloat16" in engines:  # bf16, and float32 again near a decision (--precision bf16-checked)
        margin = check_margin(engines["bfloat16"], engines["float32"], calibration, card.temperature)
        checked = Detector(None, card, "cpu", engine=engines["bfloat16"])
        checked.exact_engine, checked.check_margin = engines["float32"], margin
        scorers["bfloat16-checked"] = checked.predict_tensor
        print(f"bf16-checked margin (99% of bf16 errors on validation crops, rounded up): {margin}", file=sys.stderr)
    others = [name for name in scorers if name != "float32"]

    rows: dict[str, dict[str, Any]] = {}
    speeds: dict[str, list[float]] = {name: [] for name in scorers}
    for source in SOURCES:
        records = [r for r in split["test"] if r.path.is_relative_to(SHARED / source)]
        inputs, readable = prepared_inputs(detector, [r.path for r in records])
        labels = np.array([r.label for r, ok in zip(records, readable, strict=True) if ok])
        scores = {}
        for name, score in scorers.items():
            scores[name], speed = picture_scores(score, inputs)
            speeds[name].append(speed)
        verdicts = {name: np.array([card.decide(float(p)) for p in s]) for name, s in scores.items()}
        auc = {name: float(roc_auc_score(labels, s)) for name, s in scores.items()}
        rows[source] = {
            "n": len(labels),
            "roc_auc": auc,
            "roc_auc_change": {name: auc[name] - auc["float32"] for name in others},
            "verdicts_changed": {name: float(np.mean(verdicts["float32"] != verdicts[name])) for name in others},
            "max_p_fake_change": {name: float(np.abs(scores["float32"] - scores[name]).max()) for name in others},
        }
        print(source, json.dumps(rows[source]), file=sys.stderr)
    holds = {
        name: all(
            abs(r["roc_auc_change"][name]) <= AUC_TOLERANCE and r["verdicts_changed"][name] <= args.verdict_tolerance
            for r in rows.values()
        )
        for name in others
    }
    result = {
        "machine": describe_machine(),
        "calibration_face_crops": len(calibration),
        "engine": "OpenVINO on the ONNX export: float32, bf16 inference precision, and its ONNX Runtime QDQ int8 "
        "quantisation",
        "network_images_per_s": {name: float(np.median(values)) for name, values in speeds.items()},
        "tolerance": {"roc_auc": AUC_TOLERANCE, "verdicts_changed": args.verdict_tolerance},
        "bf16_check_margin": margin,
        "holds": holds,
        "splits": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision_holds.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# int8 and bfloat16 against float32, the shipped model, each source's test split "
        "(benchmarks/precision_holds.py)",
        "",
        f"Machine: {machine_line(result['machine'])}. Calibration (int8): {len(calibration)} validation face crops. "
        "Network "
        "alone (batch 32, one view): "
        + ", ".join(f"{name} {value:.0f} images/s" for name, value in result["network_images_per_s"].items()),
        "",
        "| source | n | precision | ROC AUC | change | verdicts changed | largest p_fake change |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, r in rows.items():
        lines.append(f"| {source} | {r['n']} | float32 | {r['roc_auc']['float32']:.4f} | | | |")
        for name in others:
            lines.append(
                f"| | | {name} | {r['roc_auc'][name]:.4f} | {r['roc_auc_change'][name]:+.4f} "
                f"| {100 * r['verdicts_changed'][name]:.2f}% | {r['max_p_fake_change'][name]:.4f} |"
            )
    lines.append("")
    if margin is not None:
        lines.append(f"bfloat16-checked margin: {margin} calibrated logits (99% of bf16 errors on validation crops).")
    for name, held in holds.items():
        verdict = "holds" if held else "does not hold"
        lines.append(
            f"{name} {verdict} (ROC AUC within {AUC_TOLERANCE}, at most {args.verdict_tolerance:.0%} verdicts changed)."
        )
    (args.out / "precision_holds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
