"""Where one file-to-verdict goes: decoding, preprocessing, the engine, and what is left between them.

    .venv/bin/python benchmarks/latency_breakdown.py                                  # shipped model, OpenVINO
    .venv/bin/python benchmarks/latency_breakdown.py --model runs/x --tta none --backend openvino
    .venv/bin/python benchmarks/latency_breakdown.py --model model.int8.onnx --tta none --rounds 3

Times, over the same images (median in ms): ``predict(path)`` whole, as `facecheck predict` runs it;
``load_image``; the model's preprocessing (JPEG normalisation, resize, views) on decoded images; the
engine alone on prepared inputs, called back to back. ``predict`` minus the parts is what calling them in
turn costs (the engine's threads wake after preprocessing ran alone; caches are cold). ``--rounds``
repeats the whole set of timings, since a virtual machine's speed can drift between minutes.
``--ab-batch-assembly`` times ``predict(path)`` with its batch made by ``torch.stack`` (as before
2026-11-30) against the NumPy/view assembly now used, alternating per file, in the same process. The face
check is off: `benchmarks/speed.py`'s shipped-torch times MTCNN on its own. Exits 2 without images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ffhq-stylegan"


def median_ms(function: Callable[[object], object], items: list) -> float:
    times = []
    for item in items:
        started = time.perf_counter()
        function(item)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run folder, checkpoint or .onnx file (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of images (searched below)")
    parser.add_argument("--backend", default="openvino", help="torch, onnx, openvino or auto")
    parser.add_argument("--tta", help="none or flip (default: the model's own views)")
    parser.add_argument("--count", type=int, default=90, help="images timed")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ab-batch-assembly", action="store_true", help="torch.stack against the current way")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"latency breakdown: no image folder at {args.data}; pass --data DIR", file=sys.stderr)
        return 2

    from facecheck.compute import describe_machine
    from facecheck.data.images import load_image
    from facecheck.inference.predictor import Detector, expand_image_inputs

    paths = expand_image_inputs([args.data])
    paths = paths[:: max(1, len(paths) // args.count)][: args.count]
    from facecheck.errors import FacecheckError

    try:
        detector = Detector.load(args.model, backend=args.backend, tta=args.tta)
    except FacecheckError as exc:
        print(f"latency breakdown: {exc}", file=sys.stderr)
        return 2
    detector.face_check = False
    machine = describe_machine()
    print(f"{machine['cpu']}, {machine['cores_available']} cores; model {args.model or 'shipped'}, "
          f"engine {detector.backend}, views {detector.tta}, {len(paths)} images")  # fmt: skip
    for path in paths[:5]:  # warm-up
        detector.predict(path)
    images = {path: load_image(path, detector.min_size) for path in paths}
    prepared = {path: detector.transform(images[path]) for path in paths}
    print("| round | predict(path) | load_image | preprocessing | engine alone | left: calling them in turn |")
    print("|---:|---:|---:|---:|---:|---:|")
    for round_index in range(1, args.rounds + 1):
        whole = median_ms(detector.predict, paths)
        load = median_ms(lambda path: load_image(path, detector.min_size), paths)
        prepare = median_ms(lambda path: detector.transform(images[path]), paths)
        engine = median_ms(lambda path: detector.predict_tensor(prepared[path][None]), paths)
        left = whole - load - prepare - engine
        print(f"| {round_index} | {whole:.2f} | {load:.2f} | {prepare:.2f} | {engine:.2f} | {left:.2f} |")
    if args.ab_batch_assembly:
        ab_batch_assembly(detector, paths, args.rounds)
    return 0


def ab_batch_assembly(detector: object, paths: list[Path], rounds: int) -> None:
    import torch

    from facecheck.inference import predictor

    current = predictor._stack
    variants = {"torch.stack": torch.stack, "current": current}
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_index in range(rounds):
            order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
            for path in paths:
                for name in order:
                    predictor._stack = variants[name]
                    started = time.perf_counter()
                    detector.predict(path)
                    times[name].append(time.perf_counter() - started)
    finally:
        predictor._stack = current
    ratios = [a / b for a, b in zip(times["torch.stack"], times["current"], strict=True)]
    for name, values in times.items():
        print(f"batch assembly {name}: median {1000 * statistics.median(values):.2f} ms")
    print(f"ratio torch.stack / current, median per file: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    sys.exit(main())
