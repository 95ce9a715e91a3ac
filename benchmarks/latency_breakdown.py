"""Where one file-to-verdict goes: decoding, preprocessing, the engine, and what is left between them.

    .venv/bin/python benchmarks/latency_breakdown.py                                  # shipped model, OpenVINO
    .venv/bin/python benchmarks/latency_breakdown.py --model runs/x --tta none --backend openvino
    .venv/bin/python benchmarks/latency_breakdown.py --model model.int8.onnx --tta none --rounds 3

Times, over the same images (median in ms): ``predict(path)`` whole, as `facecheck predict` runs it;
``load_image``; the model's preprocessing (JPEG normalisation, resize, views) on decoded images; the
engine alone on prepared inputs, called back to back. ``predict`` minus the parts is what calling them in
turn costs (the engine's threads wake after preprocessing ran alone; caches are cold). ``--rounds``
repeats the whole set of timings, since a virtual machine's speed can drift between minutes. The face
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
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"latency breakdown: no image folder at {args.data}; pass --data DIR", file=sys.stderr)
        return 2

    from facecheck.compute import describe_machine
    from facecheck.data.images import load_image
    from facecheck.inference.predictor import Detector, expand_image_inputs

    paths = expand_image_inputs([args.data])
    paths = paths[:: max(1, len(paths) // args.count)][: args.count]
    detector = Detector.load(args.model, backend=args.backend, tta=args.tta)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
