"""Build, or rebuild and check, the model shipped inside facecheck (`make model`).

    .venv/bin/python benchmarks/release_model.py                 # rebuild from ../shared/data and check the card
    .venv/bin/python benchmarks/release_model.py --write [--loo LOO.json] [--logo LOGO.json] [--engines PRECISION.json]
    .venv/bin/python benchmarks/release_model.py --engines benchmarks/results/precision_holds.json   # card only
    .venv/bin/python benchmarks/release_model.py --loo LOO.json --logo LOGO.json [--logo ...]     # card only

The release (facecheck-general-v2) is the general-v2 preset trained with seed 0 on
every shared source (`ffhq-stylegan`, `lfw-faceswap`, `dfdc-faces`,
`diffusion-portraits`, `inswapper-faces`). The script trains it (or reuses a
finished run given with --run): with --write, the preset as it stands now; to
check, the recipe recorded in the shipped card (so a preset that has moved on
since the release does not fail the check). It measures it on each source's
held-out test split (ROC AUC, accuracy, ROC AUC after re-encoding at JPEG 50,
and at the shipped threshold the share of reals called fake per source and per
real collection, and of fakes caught per generator) and then either writes the
release files (--write: float16 safetensors, the card with those numbers and
the leave-one-out tables when given, the manifest; earlier releases stay
loadable by name) or
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
SOURCES = ("ffhq-stylegan", "lfw-faceswap", "dfdc-faces", "diffusion-portraits", "inswapper-faces")
PRESET = "general-v2"
RELEASE_NAME = "facecheck-general-v2"

SCOPE = {
    "summary": "real-vs-fake face photo detector v2, judged face by face (facecheck's general-v2 preset)",
    "detects": [
        "GAN-generated faces of the StyleGAN kind (whole synthetic portraits)",
        "diffusion and text-to-image portraits (Stable Diffusion 1.4, 1.5, XL, Midjourney)",
        "face swaps: FaceSwap-style warps and blends, DFDC video swaps, inswapper one-click swaps",
    ],
    "does_not_detect": [
        "kinds of fake unlike its training sources (relit or retouched photos, edits outside the face, "
        "generators far from the ones above): its leave-one-out numbers show how far it carries",
        "anything in pictures without a face (the answer is 'no face')",
        "faces under 32 px (except the largest of a picture): each judged face is shown, the most suspicious decides",
    ],
    "sources": [
        "ffhq-stylegan: FFHQ photographs (CC BY-NC-SA 4.0) vs StyleGAN faces, from the public "
        "'140k Real and Fake Faces' collection; research and testing only",
        "lfw-faceswap: LFW photographs (research use) vs face swaps made from them",
        "dfdc-faces: DeepFake Detection Challenge videos (challenge research terms), one face crop per video",
        "diffusion-portraits: Stable Diffusion 1.4/1.5/XL, an unstated SD version and Midjourney portraits "
        "against Unsplash photos, studio portraits (Face Research Lab London Set and related, CC BY 4.0) and "
        "OpenForensics in-the-wild face crops (research terms)",
        "inswapper-faces: insightface inswapper_128 swaps against aligned FFHQ-style photo crops",
    ],
    "face_check": True,
    "command": "make model (benchmarks/release_model.py); leave-one-out: benchmarks/generalisation.py",
}


def measure(run_or_detector: Any, data: list[Path]) -> dict[str, dict[str, Any]]:
    """Each source's held-out test split: ROC AUC, accuracy, ROC AUC at JPEG 50, and at the model's threshold
    the share of reals called fake, per source and per real collection (manifest generator) and the share of
    fakes caught per generator."""
    from facecheck.evaluation.evaluate import evaluate_with_scores
    from facecheck.evaluation.perturb import parse_perturbations

    jpeg = parse_perturbations(["jpeg:50"])
    numbers = {}
    for source in data:
        manifest = source / "manifest.csv"
        by = "generator" if manifest.is_file() and "generator" in manifest.read_text().splitlines()[0] else None
        result = evaluate_with_scores(run_or_detector, source, perturbations=jpeg, by=by, progress=sys.stderr.isatty())[
            0
        ]
        matrix = result["confusion_matrix"]
        row: dict[str, Any] = {
            "roc_auc": result["roc_auc"],
            "accuracy": result["accuracy"],
            "roc_auc_jpeg50": result["perturbations"][jpeg[0].name]["roc_auc"],
            "reals_called_fake": matrix[0][1] / max(result["n_real"], 1),
            "fakes_caught": result["recall"],
            "threshold": result["threshold"],
            "n": result["n"],
        }
        if by:
            row["by_generator"] = {
                name: {k: v for k, v in values.items() if k in ("n", "called_fake", "roc_auc_vs_reals")}
                for name, values in result["breakdown"][by].items()
            }
        numbers[source.name] = row
    return numbers


def compare(model: str, run: Path, data: list[Path]) -> dict[str, dict[str, Any]]:
    """Another model (e.g. the previous release) on exactly this run's held-out test images of each source,
    at its own threshold: ROC AUC, reals called fake, fakes caught, and per generator (manifest column)."""
    from facecheck.api import load
    from facecheck.data.layouts import open_dataset
    from facecheck.evaluation.evaluate import breakdown, evaluate_records
    from facecheck.run_folder import RunFolder

    detector = load(model)
    test = RunFolder(run).read_split(SHARED)["test"]
    numbers = {}
    for source in data:
        records = [r for r in test if r.path.resolve().is_relative_to(source.resolve())]
        metadata = open_dataset(source).metadata
        result, scores = evaluate_records(detector, records, metadata, progress=sys.stderr.isatty())
        row: dict[str, Any] = {
            "roc_auc": result["roc_auc"],
            "reals_called_fake": result["confusion_matrix"][0][1] / max(result["n_real"], 1),
            "fakes_caught": result["recall"],
            "n": result["n"],
        }
        if any("generator" in m for m in scores.metadata):
            row["by_generator"] = {
                name: {k: v for k, v in values.items() if k in ("n", "called_fake", "roc_auc_vs_reals")}
                for name, values in breakdown(scores, "generator", detector.threshold).items()
            }
        numbers[source.name] = row
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


# A lower precision must run the network at least this much faster than float32 to become the default.
MEASURABLY_FASTER = 1.1


def engines_entry(measured: dict[str, Any]) -> dict[str, Any]:
    """What the card says of engines: the default, what its numbers were measured with, and how int8 and bf16
    compared with float32 (precision_holds.json of benchmarks/precision_holds.py)."""
    splits = measured["splits"].values()
    speeds = measured["network_images_per_s"]
    holds = measured["holds"]
    # The default: the fastest precision that keeps the verdicts and is measurably faster than float32.
    faster = {name for name, speed in speeds.items() if speed >= MEASURABLY_FASTER * speeds["float32"]}
    lowest = next((name for name in ("bfloat16", "bfloat16-checked") if holds.get(name) and name in faster), None)
    native = "on OpenVINO where the CPU has native bf16 (AVX512-BF16 or AMX); float32 elsewhere (--precision fp32)"
    entry: dict[str, Any] = {
        "default": {
            "bfloat16": f"bf16, one view, {native}",
            "bfloat16-checked": f"bf16-checked (bf16, float32 again near a decision), one view, {native}",
            None: "float32, one view: OpenVINO where installed, else ONNX Runtime, else PyTorch (--backend)",
        }[lowest],
        "numbers_measured_with": "PyTorch float32, one view (the card's in_domain and canaries)",
        "tolerance": measured["tolerance"],
        "measured_by": f"benchmarks/precision_holds.py on {measured['machine'].get('cpu', 'this CPU')} "
        f"({measured['calibration_face_crops']} validation face crops: int8's calibration, bf16-checked's margin)",
    }
    for name, key in (("int8", "int8"), ("bfloat16", "bf16"), ("bfloat16-checked", "bf16_checked")):
        if name not in holds:
            continue
        entry[f"{key}_default"] = name == lowest  # int8 never: no int8 engine is loaded by default
        entry[f"{key}_holds"] = bool(holds[name])
        entry[f"{key}_largest_roc_auc_change"] = max(abs(r["roc_auc_change"][name]) for r in splits)
        entry[f"{key}_largest_verdicts_changed"] = max(r["verdicts_changed"][name] for r in splits)
        entry[f"{key}_largest_p_fake_change"] = max(r["max_p_fake_change"][name] for r in splits)
        entry[f"{key}_network_speedup"] = speeds[name] / speeds["float32"]
    if measured.get("bf16_check_margin") is not None:
        entry["bf16_check_margin"] = measured["bf16_check_margin"]
    return entry


def fold_epochs(folder: Path) -> int | None:
    """Epochs a leave-one-out fold was trained for (its run folder's config.yaml), when it can be read."""
    import yaml

    try:
        return int(yaml.safe_load((folder / "config.yaml").read_text())["epochs"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def left_out_entries(loo_json: Path) -> dict[str, Any]:
    """The card's leave-one-source-out numbers from ``leave-one-out.json``, with each fold's epochs."""
    loo = json.loads(loo_json.read_text())
    entries: dict[str, Any] = {}
    for name, fold in loo["folds"].items():
        entries[f"left_out[{name}]"] = fold["held_out"] | {"epochs": fold_epochs(loo_json.parent / f"without-{name}")}
    entries["left_out_mean_roc_auc"] = loo.get("mean_held_out_roc_auc")
    epochs = sorted({str(e["epochs"]) for k, e in entries.items() if k.startswith("left_out[")})
    entries["left_out_protocol"] = (
        f"facecheck crosseval --leave-one-out --preset {loo.get('preset')}: each fold trained on the other sources "
        f"({'/'.join(epochs)} epochs), then every image of the source left out scored"
    )
    return entries


def generator_left_out_entries(logo_jsons: list[Path]) -> dict[str, Any]:
    """The card's leave-one-generator-out numbers from one or more ``leave-one-generator-out.json``."""
    entries: dict[str, Any] = {}
    for path in logo_jsons:
        logo = json.loads(path.read_text())
        for name, fold in logo["folds"].items():
            epochs = fold_epochs(path.parent / f"without-{name}")
            entries[f"generator_left_out[{logo['source']}/{name}]"] = fold | {"epochs": epochs}
        entries["generator_left_out_protocol"] = (
            f"facecheck crosseval --leave-one-generator-out {logo['source']} --preset {logo.get('preset')}: each fold "
            "trained on every source without that generator's images, then all of them scored against the "
            "source's held-out test reals, at the fold's own threshold"
        )
    return entries


def record_in_card(updates: dict[str, Any]) -> None:
    """Merge ``updates`` into the shipped card's measured numbers and write the card's new digest into the
    manifest (the weights are untouched)."""
    from facecheck.files import file_sha256
    from facecheck.inference.release import MANIFEST, RELEASE_DIR, release

    entry = release(RELEASE_NAME)
    card = json.loads(entry.card.read_text(encoding="utf-8"))
    card["scope"].setdefault("measured", {}).update(updates)
    entry.card.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    manifest_path = RELEASE_DIR / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest[RELEASE_NAME]["card_sha256"] = file_sha256(entry.card)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(updates, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/model-build", help="run folder to train into or reuse")
    parser.add_argument("--write", action="store_true", help="write the release files instead of checking them")
    parser.add_argument("--loo", help="leave-one-out.json of the same recipe, to record in the card; without "
                        "--write, it edits the shipped card in place")  # fmt: skip
    parser.add_argument("--logo", action="append", default=[], help="leave-one-generator-out.json of the same "
                        "recipe, for the card (repeatable); without --write, edits the card in place")  # fmt: skip
    parser.add_argument("--engines", metavar="PRECISION_JSON", help="precision_holds.json (benchmarks/"
                        "precision_holds.py): record in the shipped card which engine and precision are the default "
                        "and why; alone, it edits "
                        "the shipped card in place (nothing retrained)")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--compare", metavar="MODEL", help="also measure MODEL (e.g. facecheck-general-v1) on the "
                        "same held-out test images; writes RUN/compare.json")  # fmt: skip
    args = parser.parse_args()
    missing = [p for p in [args.engines, args.loo, *args.logo] if p and not Path(p).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    data = [SHARED / name for name in SOURCES]
    if not all(d.is_dir() for d in data):
        print(f"release_model: the shared data sets are absent under {SHARED}; nothing to build")
        return 2

    if (args.engines or args.loo or args.logo) and not args.write:  # the card only: nothing retrained
        updates: dict[str, Any] = {}
        if args.engines:
            updates["engines"] = engines_entry(json.loads(Path(args.engines).read_text()))
        if args.loo:
            updates |= left_out_entries(Path(args.loo))
        updates |= generator_left_out_entries([Path(p) for p in args.logo])
        record_in_card(updates)
        return 0

    from facecheck.config import get_preset, merge
    from facecheck.inference.predictor import Detector
    from facecheck.inference.release import read_release_card, release, write_release
    from facecheck.training.trainer import train

    run = Path(args.run)
    started = time.perf_counter()
    if not (run / "summary.json").is_file():
        # A check rebuilds the shipped model's own recipe (its card keeps the whole training config);
        # a new release is the preset as it stands.
        recipe = get_preset(PRESET) if args.write else read_release_card(release(RELEASE_NAME)).training
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
    if args.compare:
        other = compare(args.compare, run, data)
        (run / "compare.json").write_text(json.dumps({args.compare: other}, indent=2) + "\n")
        print(json.dumps({args.compare: other}, indent=2))

    if args.write:
        scope = dict(SCOPE)
        measured: dict[str, Any] = {f"in_domain[{k}]": v for k, v in rebuilt.items()}
        if args.loo:
            measured |= left_out_entries(Path(args.loo))
        measured |= generator_left_out_entries([Path(p) for p in args.logo])
        summary = json.loads((run / "summary.json").read_text())
        calibration = summary.get("calibration") or {}
        measured["validation_reals_called_fake_per_collection"] = calibration.get("val_fpr_per_collection")
        measured["train_seconds"] = train_seconds
        measured["date"] = time.strftime("%Y-%m-%d", time.gmtime())
        if args.engines:
            measured["engines"] = engines_entry(json.loads(Path(args.engines).read_text()))
        scope["measured"] = measured
        scope["canaries"] = canaries(run, data)
        write_release(run / "best.pt", RELEASE_NAME, scope=scope)
        # The canaries' scores are those of the shipped (float16-stored) file itself; the largest difference
        # from the float32 run it was made from is recorded beside them.
        shipped_detector = Detector.load(RELEASE_NAME, face_check=False)
        original = Detector.load(run, face_check=False)
        paths = [SHARED / canary["path"] for canary in scope["canaries"]]
        shipped_scores = [p.p_fake for p in shipped_detector.predict(paths)]
        original_scores = [p.p_fake for p in original.predict(paths)]
        for canary, p_fake in zip(scope["canaries"], shipped_scores, strict=True):
            canary["p_fake"] = p_fake
        measured["float16_max_p_fake_difference"] = max(
            abs(a - b) for a, b in zip(shipped_scores, original_scores, strict=True)
        )
        entry = write_release(run / "best.pt", RELEASE_NAME, scope=scope)
        written = {"written": str(entry.weights), "bytes": entry.weights.stat().st_size}
        print(json.dumps(written | {"float16_max_p_fake_difference": measured["float16_max_p_fake_difference"]}))
        return 0

    card = read_release_card(release(RELEASE_NAME))
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
