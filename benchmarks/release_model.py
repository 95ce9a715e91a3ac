"""Build, or rebuild and check, the model shipped inside facecheck (`make model`).

    .venv/bin/python benchmarks/release_model.py                 # rebuild from ../shared/data and check the card
    .venv/bin/python benchmarks/release_model.py --write --loo runs/bench-general/loo/leave-one-out.json

The release is the general preset trained with seed 0 on every shared source
(`ffhq-stylegan`, `lfw-faceswap`, `dfdc-faces`). The script trains it (or
reuses a finished run given with --run): with --write, the preset as it stands
now; to check, the recipe recorded in the shipped card (so a preset that has
moved on since the release does not fail the check). It measures it on each source's
held-out test split (ROC AUC, accuracy, ROC AUC after re-encoding at JPEG 50)
and then either writes the release files (--write: float16 safetensors, the
card with those numbers and the leave-one-source-out table, the manifest) or
compares the rebuilt model with the shipped card: every in-domain ROC AUC must
lie within --tolerance (default 0.02) of the card's, and the scores of the
shipped file must agree with the float32 weights it was made from. Exits 1 on
a failed check, 2 (saying so) without the shared data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SOURCES = ("ffhq-stylegan", "lfw-faceswap", "dfdc-faces")
PRESET = "general-sbi-lite0"

SCOPE = {
    "summary": "real-vs-fake face photo detector, facecheck's general preset (general-sbi-lite0)",
    "detects": [
        "GAN-generated faces of the StyleGAN kind (whole synthetic portraits)",
        "face swaps that warp and blend a face into a photo (FaceSwap-style)",
        "face swaps in video frames (DFDC methods), judged on face crops",
    ],
    "does_not_detect": [
        "kinds of fake unlike its training sources (diffusion images, relit or retouched photos, "
        "edits outside the face): its leave-one-source-out numbers show how far it carries",
        "anything in pictures without a face (the answer is 'no face')",
        "faces that are small in a large photo: the whole picture is shrunk to 224 px; crop the face first",
    ],
    "sources": [
        "ffhq-stylegan: FFHQ photographs (CC BY-NC-SA 4.0) vs StyleGAN faces, from the public "
        "'140k Real and Fake Faces' collection; research and testing only",
        "lfw-faceswap: LFW photographs (research use) vs face swaps made from them",
        "dfdc-faces: DeepFake Detection Challenge videos (challenge research terms), one face crop per video",
    ],
    "face_check": True,
    "command": "make model (benchmarks/release_model.py), leave-one-out: benchmarks/generalisation.py",
}


def measure(run_or_detector: Any, data: list[Path]) -> dict[str, dict[str, float | None]]:
    """In-domain test split of each source: ROC AUC, accuracy, and ROC AUC at JPEG 50."""
    from facecheck.api import evaluate
    from facecheck.evaluation.perturb import parse_perturbations

    jpeg = parse_perturbations(["jpeg:50"])
    numbers = {}
    for source in data:
        result = evaluate(run_or_detector, source, perturbations=jpeg, progress=sys.stderr.isatty())
        perturbed = result["perturbations"][jpeg[0].name]["roc_auc"]
        numbers[source.name] = {
            "roc_auc": result["roc_auc"],
            "accuracy": result["accuracy"],
            "roc_auc_jpeg50": perturbed,
            "n": result["n"],
        }
    return numbers


def canaries(run: Path, data: list[Path], per_class: int = 2) -> list[dict[str, Any]]:
    """A few held-out test images per source and class, whose scores the test suite checks cheaply."""
    from facecheck.run_folder import RunFolder

    test = RunFolder(run).read_split(SHARED)["test"]
    chosen = []
    for source in data:
        for label in (0, 1):
            picked = [r for r in test if r.path.is_relative_to(source) and r.label == label][:per_class]
            chosen += [{"path": r.path.relative_to(SHARED).as_posix(), "label": label} for r in picked]
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/model-build", help="run folder to train into or reuse")
    parser.add_argument("--write", action="store_true", help="write the release files instead of checking them")
    parser.add_argument("--loo", help="leave-one-out.json of the same recipe, to record in the card (--write)")
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args()
    data = [SHARED / name for name in SOURCES]
    if not all(d.is_dir() for d in data):
        print(f"release_model: the shared data sets are absent under {SHARED}; nothing to build")
        return 2

    from facecheck.config import get_preset, merge
    from facecheck.inference.predictor import Detector
    from facecheck.inference.release import DEFAULT_MODEL, read_release_card, release, write_release
    from facecheck.training.trainer import train

    run = Path(args.run)
    started = time.perf_counter()
    if not (run / "summary.json").is_file():
        # A check rebuilds the shipped model's own recipe (its card keeps the whole training config);
        # a new release is the preset as it stands.
        recipe = get_preset(PRESET) if args.write else read_release_card(release()).training
        print(f"release_model: training {'the preset ' + PRESET if args.write else 'the shipped card recipe'}")
        sources = {"seed": 0, "data": {"data_dir": [str(d) for d in data], "split_seed": 0}}
        train(merge(recipe, sources), run, resume=(run / "config.yaml").is_file())
    train_seconds = json.loads((run / "summary.json").read_text())["train_seconds"]
    saved = run / "release_measure.json"
    if args.write and saved.is_file():  # measured by an earlier --write of this run
        rebuilt = json.loads(saved.read_text())
    else:
        rebuilt = measure(run, data)
        saved.write_text(json.dumps(rebuilt, indent=2) + "\n")
    print(json.dumps({"rebuilt_in_domain": rebuilt, "seconds": time.perf_counter() - started}, indent=2))

    if args.write:
        scope = dict(SCOPE)
        measured: dict[str, Any] = {f"in_domain[{k}]": v for k, v in rebuilt.items()}
        if args.loo:
            loo = json.loads(Path(args.loo).read_text())
            measured |= {f"left_out[{k}]": v["held_out"] for k, v in loo["folds"].items()}
            measured["left_out_mean_roc_auc"] = loo.get("mean_held_out_roc_auc")
        measured["train_seconds"] = train_seconds
        measured["date"] = time.strftime("%Y-%m-%d", time.gmtime())
        scope["measured"] = measured
        scope["canaries"] = canaries(run, data)
        write_release(run / "best.pt", DEFAULT_MODEL, scope=scope)
        # The canaries' scores are those of the shipped (float16-stored) file itself; the largest difference
        # from the float32 run it was made from is recorded beside them.
        shipped_detector = Detector.load(None, face_check=False)
        original = Detector.load(run, face_check=False)
        paths = [SHARED / canary["path"] for canary in scope["canaries"]]
        shipped_scores = [p.p_fake for p in shipped_detector.predict(paths)]
        original_scores = [p.p_fake for p in original.predict(paths)]
        for canary, p_fake in zip(scope["canaries"], shipped_scores, strict=True):
            canary["p_fake"] = p_fake
        measured["float16_max_p_fake_difference"] = max(
            abs(a - b) for a, b in zip(shipped_scores, original_scores, strict=True)
        )
        entry = write_release(run / "best.pt", DEFAULT_MODEL, scope=scope)
        written = {"written": str(entry.weights), "bytes": entry.weights.stat().st_size}
        print(json.dumps(written | {"float16_max_p_fake_difference": measured["float16_max_p_fake_difference"]}))
        return 0

    card = read_release_card(release())
    failures = []
    for source, numbers in rebuilt.items():
        expected = card.scope.get("measured", {}).get(f"in_domain[{source}]", {}).get("roc_auc")
        if expected is None or numbers["roc_auc"] is None:
            failures.append(f"{source}: no ROC AUC to compare")
        elif abs(numbers["roc_auc"] - expected) > args.tolerance:
            failures.append(f"{source}: rebuilt ROC AUC {numbers['roc_auc']:.4f}, card {expected:.4f}")
        else:
            print(f"{source}: rebuilt ROC AUC {numbers['roc_auc']:.4f}, card {expected:.4f}: within {args.tolerance}")
    if failures:
        print("release check FAILED: " + "; ".join(failures))
        return 1
    print("release check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
