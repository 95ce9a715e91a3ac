"""Scoring speed of the default model, file to verdict, against its float32 network alone, in one run.

    python benchmarks/scoring_speed.py                    # ../shared/data, 4,400 photos, about 7 minutes
    python benchmarks/scoring_speed.py --images 128 --out /tmp/speed   # quicker
    python benchmarks/scoring_speed.py --data DIR         # any folder with real/ and fake/ photos

What is measured, on the same photos, one after another on this machine:
  network alone    the default model's network on ready (3, 224, 224) tensors, batch 32, one view, float32:
                   the default engine (``auto``) and PyTorch; the baseline every ratio is taken to; then the
                   default precision where it is not float32 (bf16-checked on a CPU with native bf16, as the
                   card says) and bf16 alone (``--precision bf16``: not the default, see precision_holds.py);
                   on ready tensors bf16-checked checks the faces near a decision as predict does
  face search      MTCNN alone on a batch of same-size pictures (64 of 256 px, 16 scenes of 1024 px):
                   facenet-pytorch's detect with PyTorch's and with the compiled networks, and facecheck's
                   own stages (what predict runs); ms per picture, and whether the boxes are the same
  process start    ``facecheck predict ONE_FILE --out FILE --backend B``: imports, model load, one picture, on
                   the engine the folders run on (OpenVINO where installed)
  predict          ``facecheck predict FOLDER --out FILE`` as a new process (start, model load, decoding,
                   JPEG normalisation, face search, crops, network, writing): folders of the photos at their
                   own size (256 px), and of scenes of 1024 and 4000 px (4:3) with the photo a quarter of the
                   width (JPEG q92); "faces searched" with an empty face cache, "faces cached" with the
                   detections of an earlier run (MTCNN not run); images/s with the start included, and ms per
                   image without it (the process start row subtracted)
  evaluate         ``facecheck evaluate --data FOLDER --split all`` as a new process, faces searched
  batch-1          one file per ``Detector.predict`` call in a loaded process, median over the files
  reference path   the pipeline before issue 27, in this process: one picture at a time, facenet's MTCNN in
                   PyTorch, nothing overlapped (predict with batch 1 and the compiled face networks off); its
                   search starts at facecheck's smallest face, 28.2 px, as the fast path's does (what starting
                   there instead of facenet's 20 px changes: benchmarks/face_search_size.py)

Every timed process gets a cache folder of its own holding the model's ONNX export and the face detector's
compiled networks (made once, before timing: what a user has from the second run on) and, for "faces
cached", the detections. Results: ``OUT/scoring_speed.json`` and ``OUT/scoring_speed.md`` with the machine.
Without ``../shared/data`` (and no ``--data``) it stops and says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
# Photos of the default model's sources, at their own size (256 px), real and fake.
SOURCES = ("ffhq-stylegan", "diffusion-portraits")
BIG_SIDES = {1024: 48, 4000: 16}  # enlarged copies: side -> how many


def photos(data: list[Path], count: int) -> dict[str, list[Path]]:
    """``count`` photos, half real and half fake, spread evenly over the sources' sorted files."""
    chosen: dict[str, list[Path]] = {"real": [], "fake": []}
    for label in chosen:
        files = sorted(p for d in data for p in (d / label).rglob("*") if p.suffix.lower() in (".jpg", ".png"))
        if not files:
            raise SystemExit(f"no {label} photos below {', '.join(map(str, data))}")
        step = max(1, len(files) // (count // 2))
        chosen[label] = files[::step][: count // 2]
    return chosen


def make_folders(chosen: dict[str, list[Path]], work: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    folders = {}
    base = work / "256"
    for label, files in chosen.items():
        (base / label).mkdir(parents=True)
        for index, path in enumerate(files):
            (base / label / f"{index:04d}{path.suffix}").symlink_to(path)
    folders["256"] = base
    generator = np.random.default_rng(0)
    for side, count in BIG_SIDES.items():
        folder = work / str(side)
        folder.mkdir()
        for index, path in enumerate([f for files in chosen.values() for f in files][::7][:count]):
            # A portrait in a scene: the photo at a quarter of the frame's width, somewhere on a smooth
            # textured background (a camera's 4:3 frame), saved as a camera would (JPEG q92).
            width, height = side, side * 3 // 4
            texture = generator.integers(0, 255, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
            scene = Image.fromarray(texture).resize((width, height), Image.BICUBIC)
            portrait = Image.open(path).convert("RGB").resize((width // 4, width // 4), Image.BICUBIC)
            x, y = generator.integers(0, width - portrait.width), generator.integers(0, height - portrait.height)
            scene.paste(portrait, (int(x), int(y)))
            scene.save(folder / f"{index:04d}.jpg", quality=92)
        folders[str(side)] = folder
    return folders


def fresh_cache(primed: Path, work: Path, with_faces: bool) -> Path:
    """A cache folder of its own: the primed model export and compiled face networks, faces only if asked."""
    target = Path(tempfile.mkdtemp(dir=work, prefix="cache-"))
    for item in primed.iterdir():
        if item.is_dir() and (with_faces or item.name != "faces"):
            shutil.copytree(item, target / item.name, symlinks=True)
        elif item.is_file():
            shutil.copy2(item, target / item.name)
    return target


def run_process(command: list[str], cache: Path) -> float:
    environment = {**os.environ, "FACECHECK_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def network_alone(tensors: Any, backend: str, repeats: int = 3, precision: str = "auto") -> float:
    """Images/s of the default model's network (one view) on ready tensors, batch 32; best of ``repeats``."""
    import facecheck

    detector = facecheck.load(backend=backend, precision=precision)
    detector.predict_tensor(tensors[:32])  # warm-up (engine compilation)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(tensors), 32):
            detector.predict_tensor(tensors[start : start + 32])
        best = min(best, time.perf_counter() - started)
    return len(tensors) / best


def face_search_alone(pictures: list[Any], repeats: int = 3) -> dict[str, Any]:
    """ms per picture of MTCNN on ``pictures`` (one size, one batch): facenet-pytorch's ``detect`` with its
    PyTorch networks, the same with the compiled networks (the face search before this benchmark's second
    version), and facecheck's own stages (one gather for all crops, summed-area pyramid) with the compiled
    networks; best of ``repeats``. Also whether the last two found exactly the same boxes."""
    import numpy as np
    from facenet_pytorch import MTCNN

    from facecheck.data import faces
    from facecheck.data.face_engine import detect_batch

    plain = MTCNN(keep_all=True, device="cpu")
    compiled = faces._get_detector(fast=True)
    batch = np.stack([np.asarray(picture) for picture in pictures])
    variants = {
        "facenet detect, PyTorch networks": lambda: plain.detect(pictures),
        "facenet detect, compiled networks": lambda: compiled.detect(pictures),
        "facecheck stages, compiled networks": lambda: detect_batch(compiled, batch),
    }
    timings = {}
    for name, call in variants.items():
        call()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - started)
        timings[name] = 1000 * best / len(pictures)
    facenet_boxes, facenet_probabilities = compiled.detect(pictures)
    same = True
    for (boxes, probabilities), expected, expected_probabilities in zip(
        detect_batch(compiled, batch), facenet_boxes, facenet_probabilities, strict=True
    ):
        if expected is None:
            same &= len(boxes) == 0
            continue
        order, expected_order = np.argsort(-probabilities), np.argsort(-np.asarray(expected_probabilities, float))
        same &= bool(np.array_equal(boxes[order], np.asarray(expected)[expected_order]))
    return {"ms_per_picture": timings, "same_boxes": same}


def batch_one(files: list[Path], fast_faces: bool, cached: bool = False) -> tuple[float, list[float]]:
    """Median ms per file, one file per predict call; and the scores. Faces searched every time (the cache
    off), or ``cached``: read from the cache (filled by a first pass that is not timed)."""
    import facecheck
    from facecheck.data import faces

    detector = facecheck.load()
    original = faces.detect_faces_batch

    def searched(pictures: list, use_cache: bool = True, fast: bool = False) -> list:
        return original(pictures, use_cache=cached, fast=fast_faces)

    faces.detect_faces_batch = searched
    try:
        detector.predict(files[0], provenance=False)  # warm-up
        if cached:
            detector.predict(files, provenance=False)
        times, scores = [], []
        for path in files:
            started = time.perf_counter()
            scores.append(detector.predict(path, batch_size=1, provenance=False)[0].p_fake)
            times.append(time.perf_counter() - started)
    finally:
        faces.detect_faces_batch = original
    return 1000 * statistics.median(times), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", help="folder(s) with real/ and fake/ photos")
    # 4,400: the folder issue 27 was measured on (32 images/s then).
    parser.add_argument("--images", type=int, default=4400, help="photos at their own size (half real)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    data = args.data or [SHARED / name for name in SOURCES]
    missing = [d for d in data if not d.is_dir()]
    if missing:
        raise SystemExit(f"data not present: {', '.join(map(str, missing))} (give --data FOLDER with real/ and fake/)")

    import numpy as np
    import torch

    from facecheck.compute import cpu_has_native_bf16, describe_machine
    from facecheck.data.images import load_image

    work = Path(tempfile.mkdtemp(prefix="facecheck-scoring-speed-"))
    rows: list[dict[str, Any]] = []
    try:
        chosen = photos(data, args.images)
        folders = make_folders(chosen, work)
        primed = work / "primed-cache"
        os.environ["FACECHECK_CACHE_DIR"] = str(primed)
        python = [sys.executable, "-m", "facecheck"]
        # The model's export and the face networks' compiled form, made once (then copied into each cache).
        first = sorted(folders["256"].rglob("*"))[-1]
        # On the engine the folders run on: one file alone would run on PyTorch (``auto`` for a few images),
        # and the folders would then each pay the ONNX export (~1 s) inside their timing.
        engine_option = ["--backend", "openvino"] if importlib.util.find_spec("openvino") else []
        run_process([*python, "predict", str(first), "--out", str(work / "prime.json"), *engine_option], primed)
        shutil.rmtree(primed / "faces", ignore_errors=True)

        import facecheck

        detector = facecheck.load(backend="torch")
        files = sorted(p for p in folders["256"].rglob("*") if p.is_symlink())
        # The network alone on (at most) 384 of the photos: enough for a steady figure.
        tensors = torch.stack([detector.single_view_transform(load_image(p)) for p in files[:384]])
        for backend in ("auto", "torch"):
            label = f"network alone, float32, one view ({facecheck.load(backend=backend).backend}), batch 32"
            rows.append({"variant": label, "images_per_s": network_alone(tensors, backend, precision="fp32")})
        baseline = rows[0]["images_per_s"]
        engine = facecheck.load(backend="auto")  # what predict runs here: its engine and the card's precision
        default = engine.precision
        if default != "fp32":
            label = f"network alone, {default} (the default here), one view (openvino), batch 32"
            rows.append({"variant": label, "images_per_s": network_alone(tensors, "auto")})
        if cpu_has_native_bf16() and engine.backend == "openvino" and default != "bf16":
            label = "network alone, bf16, one view (openvino, --precision bf16: not the default), batch 32"
            rows.append({"variant": label, "images_per_s": network_alone(tensors, "auto", precision="bf16")})

        start_seconds = run_process([*python, "predict", str(first), "--out", str(work / "one.json"), *engine_option],
                                    fresh_cache(primed, work, with_faces=True))  # fmt: skip
        rows.append({"variant": "process start: predict on one file", "images": 1, "images_per_s": 1 / start_seconds,
                     "ms_per_image": 1000 * start_seconds})  # fmt: skip
        for size, folder in folders.items():
            count = count_images(folder)
            for faces_cached in (False, True):
                cache = fresh_cache(primed, work, with_faces=False)
                out = work / f"predict-{size}.json"
                command = [*python, "predict", str(folder), "--out", str(out)]
                if faces_cached:  # the same command once first, to fill this cache's faces
                    run_process(command, cache)
                seconds = run_process(command, cache)
                how = "faces cached" if faces_cached else "faces searched"
                after_start = seconds - start_seconds  # under 0: the whole run within the start's spread
                rows.append({"variant": f"predict, {size} px, {how} (process start included)", "images": count,
                             "images_per_s": count / seconds, "ms_per_image": 1000 * after_start / count})  # fmt: skip
        cache = fresh_cache(primed, work, with_faces=False)
        seconds = run_process([*python, "evaluate", "--data", str(folders["256"]), "--split", "all", "--json"], cache)
        count = count_images(folders["256"])
        after_start = 1000 * (seconds - start_seconds) / count
        rows.append({"variant": "evaluate, 256 px, faces searched (process start included)", "images": count,
                     "images_per_s": count / seconds, "ms_per_image": after_start})  # fmt: skip

        os.environ["FACECHECK_CACHE_DIR"] = str(fresh_cache(primed, work, with_faces=False))
        latency_files = files[:: max(1, len(files) // 200)][:200]
        # The reference first: asking for the compiled face networks swaps them into this process's MTCNN.
        slow_ms, slow_scores = batch_one(latency_files, fast_faces=False)
        fast_ms, fast_scores = batch_one(latency_files, fast_faces=True)
        rows.append({"variant": "batch-1 file to verdict, faces searched (median)", "ms_per_image": fast_ms,
                     "images_per_s": 1000 / fast_ms, "images": len(latency_files)})  # fmt: skip
        cached_ms, _ = batch_one(latency_files, fast_faces=True, cached=True)
        rows.append({"variant": "batch-1 file to verdict, faces cached (median)", "ms_per_image": cached_ms,
                     "images_per_s": 1000 / cached_ms, "images": len(latency_files)})  # fmt: skip
        rows.append({"variant": "reference path: batch 1, facenet MTCNN in PyTorch (median)", "ms_per_image": slow_ms,
                     "images_per_s": 1000 / slow_ms, "images": len(latency_files)})  # fmt: skip
        # After the reference path, which must see facenet's MTCNN with PyTorch's networks.
        searches = {}
        for size, pick in (("256", files[:64]), ("1024", sorted(folders["1024"].iterdir())[:16])):
            pictures = [load_image(p) for p in pick]
            common = max({p.size for p in pictures}, key=[p.size for p in pictures].count)
            searches[size] = face_search_alone([p for p in pictures if p.size == common])
            for name, ms in searches[size]["ms_per_picture"].items():
                rows.append({"variant": f"face search alone, {size} px, {name}", "ms_per_image": ms,
                             "images_per_s": 1000 / ms, "images": len(pictures)})  # fmt: skip
        difference = float(np.nanmax(np.abs(np.array(fast_scores, float) - np.array(slow_scores, float))))
        for row in rows:
            row["ratio_to_network_alone"] = row["images_per_s"] / baseline
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    result = {"machine": machine, "rows": rows, "max_p_fake_difference_fast_vs_reference_faces": difference,
              "face_search_same_boxes": {size: found["same_boxes"] for size, found in searches.items()}}  # fmt: skip
    (args.out / "scoring_speed.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Scoring speed (benchmarks/scoring_speed.py)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores_available']} cores, {machine['cpu_features']}, load at start "
        f"{machine['load_average_at_start']}; {machine['date']}",
        "",
        "| variant | images | images/s | ms/image (after the start) | x network alone (float32) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        ms = f"{row['ms_per_image']:.1f}" if "ms_per_image" in row else ""
        ms = "within the start's spread" if row.get("ms_per_image", 0) < 0 else ms
        lines.append(f"| {row['variant']} | {row.get('images', '')} | {row['images_per_s']:.1f} | {ms} | "
                     f"{row['ratio_to_network_alone']:.2f} |")  # fmt: skip
    lines += [
        "",
        f"Largest p_fake difference, compiled batched face search vs facenet's: {difference:.2e}",
        "Face search alone, facecheck's stages found exactly facenet's boxes: "
        + ", ".join(f"{size} px {found['same_boxes']}" for size, found in searches.items()),
    ]
    (args.out / "scoring_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
