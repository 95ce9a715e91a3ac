"""One function per command: parse nothing, call one API function, print (via :mod:`facecheck.cli.output`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from facecheck.cli.output import (
    RESULT_FILE_TYPES,
    config_yaml,
    print_evaluation,
    print_prediction_table,
    scope_line,
    short_path,
)
from facecheck.cli.parser import EXIT_FAILURE, EXIT_OK
from facecheck.config import (
    GENERAL_PRESET,
    RECOMMENDED_PRESET,
    TrainConfig,
    get_preset,
    list_presets,
    merge,
)
from facecheck.errors import FacecheckError
from facecheck.extras import require_extra
from facecheck.reporting.tables import prediction_csv


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training options of ``train``, ``crosseval``, ``cv`` and ``tune``, handed to :func:`api.train_config`."""
    from facecheck.api import train_config

    resume = getattr(args, "resume", False)
    if resume and not args.out:
        raise FacecheckError("--resume needs --out RUN_DIR, the run to continue")
    # Experiments (crosseval, cv, tune) take their data per run, not from here.
    data = getattr(args, "data", None) if getattr(args, "command", "train") == "train" else None
    options = {
        "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "device": args.device,
        "freeze_backbone": args.freeze_backbone, "unfreeze_blocks": args.unfreeze, "target_fpr": args.target_fpr,
        "data": data, "val_fraction": args.val_fraction, "max_per_class": args.max_per_class,
        "split_file": getattr(args, "split_file", None), "pseudo_fakes": args.pseudo_fakes,
        "pseudo_fake_ratio": args.pseudo_fake_ratio, "use_fakes": False if args.reals_only else None,
        "balance": args.balance, "lr": args.lr, "weights": args.weights, "normalize_jpeg": args.normalize_jpeg,
        "augment": args.augment, "face_crop": args.face_crop, "face_margin": args.face_margin,
        "no_face": args.no_face, "precision": args.precision, "sync_batchnorm": getattr(args, "sync_batchnorm", None),
    }  # fmt: skip
    return train_config(args.preset, resume=args.out if resume else None, config_file=args.config,
                        overrides=args.overrides, **options)  # fmt: skip


def command_train(args: argparse.Namespace) -> int:
    from facecheck.api import train
    from facecheck.run_folder import RunExistsError
    from facecheck.training.launch import LAUNCHER_PID, die_with_parent, inside_launched_process, launch_local

    if inside_launched_process() and os.environ.get(LAUNCHER_PID, "").isdigit():
        die_with_parent(int(os.environ[LAUNCHER_PID]))  # a killed `train --nproc-per-node` leaves no orphans
    config = train_config_from_args(args)
    if args.print_config:
        print(config_yaml(config), end="")
        return EXIT_OK
    if args.nproc_per_node < 1:
        raise FacecheckError("--nproc-per-node must be at least 1")
    if args.nproc_per_node > 1 and not inside_launched_process():
        if config.batch_size % args.nproc_per_node:
            raise FacecheckError(
                f"batch size {config.batch_size} is the global batch and must divide among "
                f"{args.nproc_per_node} processes"
            )
        argv = list(args.argv)
        if not args.out:  # every process must write (rank 0) and read the same run folder
            argv += ["--out", str(Path("runs") / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}")]
        return launch_local(argv, args.nproc_per_node)
    run_dir = Path(args.out) if args.out else Path("runs") / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = train(config, run_dir, resume=args.resume, quiet=args.quiet, keep=args.keep)
    except RunExistsError as exc:  # the same refusal in the command line's words
        raise FacecheckError(
            f"{exc.path} already holds a run; continue it with --resume or choose another --out"
        ) from None
    if int(os.environ.get("RANK", "0") or 0) == 0:  # one answer on stdout, from rank 0
        print(
            json.dumps({"run_dir": str(result.run_dir), "best_epoch": result.best_epoch, "test": result.test_metrics})
        )
    return EXIT_OK


def command_evaluate(args: argparse.Namespace) -> int:
    from facecheck.api import evaluate_with_scores, load_detector
    from facecheck.evaluation.perturb import parse_perturbations

    perturbations = parse_perturbations(args.perturb or [])  # parsed first: a typo fails before any work
    if args.report:
        require_extra("report")
    detector = load_detector(
        args.model or [None], device=args.device, backend=args.backend, tta=args.tta, precision=args.precision
    )
    sets = args.data or [None]
    results = []
    for index, data in enumerate(sets):
        result, scores = evaluate_with_scores(
            detector, data, split=args.split, batch_size=args.batch_size, perturbations=perturbations, by=args.by,
            progress=None, threshold=args.threshold,
        )  # fmt: skip
        for warning in result["warnings"]:
            print(f"facecheck: WARNING: {warning}", file=sys.stderr)
        results.append(result)
        if args.report:
            _write_report(args, detector, result, scores, index if len(sets) > 1 else None, data)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"sets": results}))
        return EXIT_OK
    if len(results) > 1:
        print(f"model: {results[0]['model']}")
        print(f"  {'data':<44} {'n':>6} {'accuracy':>9} {'roc_auc':>8} {'ap':>7} {'eer':>7} {'ece':>7}")
        for result in results:
            shown = {
                k: "n/a" if result.get(k) is None else f"{result[k]:.4f}"
                for k in ("roc_auc", "average_precision", "eer", "ece")
            }
            print(
                f"  {short_path(result['data'], 44):<44} {result['n']:>6} {result['accuracy']:>9.4f} "
                f"{shown['roc_auc']:>8} {shown['average_precision']:>7} {shown['eer']:>7} {shown['ece']:>7}"
            )
        return EXIT_OK
    print_evaluation(results[0])
    return EXIT_OK


def _write_report(args: argparse.Namespace, detector: object, result: dict, scores: object, index: int | None,
                  data: str | None) -> None:  # fmt: skip
    from facecheck.checkpoint import resolve_checkpoint_path
    from facecheck.reporting.evaluation_report import write_evaluation_report

    target = Path(args.report)
    if index is not None:
        target = target.with_name(f"{target.stem}-{index}-{Path(data).name}{target.suffix}")
    write_evaluation_report(
        result, scores, target, detector=detector,
        run_dir=resolve_checkpoint_path(args.model[0]).parent if args.model else None,
    )  # fmt: skip
    print(f"report written to {target}", file=sys.stderr)


def command_predict(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _predict_on_ray(args)
    if args.ray_address:
        raise FacecheckError("--ray-address is for --engine ray")
    from facecheck.api import predict_files, write_results

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in RESULT_FILE_TYPES:
        raise FacecheckError(f"--out {out}: the file name must end in .csv or .json (the format follows it)")
    found = predict_files(
        args.paths, args.model, device=args.device, backend=args.backend, tta=args.tta, precision=args.precision,
        threshold=args.threshold,
        face_check=args.face_check, frames=args.frames, batch_size=args.batch_size, out=out,
    )  # fmt: skip
    rows = found.rows
    for warning in found.warnings:  # said once here, and beside each verdict
        print(f"facecheck: WARNING: {warning}", file=sys.stderr)
    if out is not None or args.format != "table":  # machine output on stdout or in a file: the scope on stderr
        print(f"facecheck: model: {scope_line(found.detector, args.threshold)}", file=sys.stderr)
    if out is not None:
        write_results(rows, out)
        print(f"facecheck: {len(rows)} result(s) written to {out}", file=sys.stderr)
    elif args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        sys.stdout.write(prediction_csv(rows))
    else:
        print(f"model: {scope_line(found.detector, args.threshold)}")
        print_prediction_table(rows)
    failed = sum("error" in row for row in rows)
    if failed:
        print(f"facecheck: {failed} of {len(rows)} file(s) could not be read", file=sys.stderr)
    return EXIT_FAILURE if failed == len(rows) else EXIT_OK


def _predict_on_ray(args: argparse.Namespace) -> int:
    from facecheck.api import batch_score

    require_extra("distributed")
    if not args.out:
        raise FacecheckError("--engine ray writes its scores to a folder: give --out SCORES.parquet")
    if args.model and len(args.model) > 1:
        raise FacecheckError("--engine ray scores with one model (no ensembles)")
    if args.backend not in ("auto", "torch", "onnx") or args.device not in ("auto", "cpu"):
        raise FacecheckError("--engine ray runs the model in ONNX Runtime on CPUs (leave --backend and --device out)")
    if args.precision.startswith("bf16"):
        raise FacecheckError("--engine ray runs the model in float32 (ONNX Runtime): leave --precision out")
    summary = batch_score(
        args.model[0] if args.model else None, args.paths, args.out, address=args.ray_address,
        actors=args.ray_actors, num_cpus=args.ray_cpus, partition_size=args.partition_size,
        batch_size=args.batch_size, tta=args.tta, face_check=args.face_check,
    )  # fmt: skip
    print(json.dumps(summary))
    if summary["errors"]:
        print(f"facecheck: {summary['errors']} of {summary['images']} file(s) could not be read", file=sys.stderr)
    return EXIT_FAILURE if summary["errors"] == summary["images"] else EXIT_OK


def command_crosseval(args: argparse.Namespace) -> int:
    from facecheck.experiments import crosseval

    require_extra("report")  # the heatmaps
    if args.leave_one_generator_out:
        from facecheck.experiments import leave_one_generator_out

        if args.leave_one_out or args.rescore:
            raise FacecheckError("--leave-one-generator-out goes alone (without --leave-one-out or --rescore)")
        logo = leave_one_generator_out(
            train_config_from_args(args), args.data, args.leave_one_generator_out, Path(args.out),
            held_out=args.held_out, quiet=args.quiet, progress=True,
        )  # fmt: skip
        print((Path(args.out) / "leave-one-generator-out.md").read_text())
        return EXIT_OK if logo["folds"] else EXIT_FAILURE
    for flag, given in (("--held-out", args.held_out), ("--rescore", args.rescore)):
        if given and not args.leave_one_out:
            raise FacecheckError(f"{flag} needs --leave-one-out")
    if args.leave_one_out:
        from facecheck.experiments import leave_one_out

        loo = leave_one_out(
            train_config_from_args(args), args.data, Path(args.out), quiet=args.quiet, progress=True,
            held_out=args.held_out, rescore=args.rescore,
        )  # fmt: skip
        print((Path(args.out) / "leave-one-out.md").read_text())
        return EXIT_OK if loo["folds"] else EXIT_FAILURE
    summary = crosseval(train_config_from_args(args), args.data, Path(args.out), quiet=args.quiet)
    print((Path(args.out) / "crosseval.md").read_text())
    return EXIT_OK if summary["matrix"] else EXIT_FAILURE


def command_cv(args: argparse.Namespace) -> int:
    from facecheck.experiments import cross_validate

    cross_validate(train_config_from_args(args), args.data, args.folds, Path(args.out), quiet=args.quiet)
    print((Path(args.out) / "cv.md").read_text())
    return EXIT_OK


def command_tune(args: argparse.Namespace) -> int:
    from facecheck.experiments import tune

    require_extra("tune")
    config = train_config_from_args(args)
    config = merge(config, {"data": {"data_dir": str(Path(args.data).expanduser().resolve())}})
    tune(config, args.trials, args.storage, Path(args.out), study_name=args.study, quiet=args.quiet)
    print((Path(args.out) / "tune.md").read_text())
    return EXIT_OK


def command_serve(args: argparse.Namespace) -> int:
    import logging

    require_extra("serve")
    from facecheck.api import load
    from facecheck.serving.app import ServeSettings, create_app
    from facecheck.serving.server import base_url, listen, serve, warm_up

    def say(line: str) -> None:
        print(f"facecheck: {line}", file=sys.stderr, flush=True)

    # Take the port before the model loads: a port in use or a bad host is one line (exit 2) at once.
    sock = listen(args.host, args.port)

    say(f"loading the model ({args.model or 'the shipped model'}, backend {args.backend}) ...")
    started = time.perf_counter()
    detector = load(args.model, device="auto", backend=args.backend, tta=args.tta, precision=args.precision)
    say(
        f"loaded {detector.source} ({detector.backend}, {detector.precision}) in {time.perf_counter() - started:.1f} s;"
        " warming up (one prediction) ..."
    )
    if detector.face_check_problem:
        say(f"WARNING: pictures are not checked for a face (each answer says so): {detector.face_check_problem}")
    say(f"warmed up in {warm_up(detector):.1f} s; starting the server ...")
    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        workers=max(1, args.workers),
        queue_limit=max(0, args.queue),
        timeout_s=args.timeout,
        api_key=args.api_key or os.environ.get("FACECHECK_API_KEY") or None,
    )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = base_url(args.host, args.port)
    app = create_app(detector, settings)
    from facecheck.serving.app import docs_available

    docs = f" (API docs at {url}docs)" if docs_available() else ""
    serve(app, args.host, args.port, settings, on_ready=lambda: say(f"ready: serving on {url}{docs}"), sock=sock)
    return EXIT_OK


def command_export(args: argparse.Namespace) -> int:
    from facecheck.api import export_model

    require_extra("export")
    report = export_model(
        args.model, args.out, quantize=args.quantize, calibration=args.calibration,
        check_data=args.check_data, tolerance=args.tolerance, log=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(json.dumps(report, indent=2))
    print(
        f"parity: max |p_fake(PyTorch) - p_fake(ONNX)| = {report['max_abs_p_fake_difference']:.2e} "
        f"on {report['check_images']} images (limit {report['tolerance']:g})",
        file=sys.stderr,
    )
    if args.quantize:
        auc_change = "n/a" if report["roc_auc_change"] is None else f"{report['roc_auc_change']:+.4f}"
        print(
            f"int8: accuracy {report['accuracy_change']:+.4f}, ROC AUC {auc_change}, "
            f"speed-up {report['int8_speedup']:.2f}x at batch 32",
            file=sys.stderr,
        )
    return EXIT_OK


def command_explain(args: argparse.Namespace) -> int:
    from facecheck.api import expand_inputs, load
    from facecheck.evaluation.explain import explain_files

    require_extra("explain")
    inputs = expand_inputs(args.images)  # a missing path stops here (exit 2), before the model loads
    detector = load(args.model, device="cpu")
    if detector.model is None:
        raise FacecheckError("Grad-CAM needs the PyTorch checkpoint (run folder or .pt), not an .onnx export")
    results = explain_files(detector, inputs, Path(args.out), threshold=args.threshold)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for entry in results:
            shown = entry.get("error") or f"{entry['label']:<5} p_fake={entry['p_fake']:.4f} -> {entry['heatmap']}"
            print(f"{entry['path']}  {shown}")
    return EXIT_FAILURE if all("error" in e for e in results) else EXIT_OK


def command_data(args: argparse.Namespace) -> int:
    from facecheck.data.synthetic import make_synthetic_dataset

    if args.data_command == "inspect":
        return _data_inspect(args)
    if args.data_command == "split":
        from facecheck.api import split_data

        written = split_data(
            args.data, args.out, folds=args.folds, seed=args.seed,
            test_fraction=args.test_fraction, val_fraction=args.val_fraction, progress=True,
        )  # fmt: skip
        for path in written:
            print(path)
        return EXIT_OK
    if args.data_command == "shard":
        from facecheck.api import shard_data

        require_extra("distributed")
        manifest = shard_data(
            args.data, args.out, shard_size=args.shard_size, seed=args.seed, test_fraction=args.test_fraction,
            val_fraction=args.val_fraction, split_file=args.split_file, inspect=not args.no_inspect,
            log=lambda message: print(message, file=sys.stderr), progress=True,
        )  # fmt: skip
        counts = {name: {"images": part["count"], "shards": len(part["shards"])}
                  for name, part in manifest["splits"].items()}  # fmt: skip
        print(json.dumps({"out": str(args.out), "splits": counts}))
        return EXIT_OK
    if args.data_command == "crop":
        from facecheck.data.faces import crop_folder

        summary = crop_folder(
            Path(args.data), Path(args.out), margin=args.margin, size=args.size,
            all_faces=args.faces == "all", no_face=args.no_face,
        )  # fmt: skip
        print(json.dumps(summary.__dict__))
        return EXIT_OK
    if args.data_command == "download":
        from facecheck.data.download import download

        print(download(args.name, Path(args.out)))
        return EXIT_OK
    if args.per_class < 2:
        raise FacecheckError("--per-class must be at least 2")
    print(make_synthetic_dataset(Path(args.out) if args.out else None, args.per_class, args.seed))
    return EXIT_OK


def _data_inspect(args: argparse.Namespace) -> int:
    from facecheck.api import inspect_data
    from facecheck.data.inspect import summary_lines

    if args.report:
        require_extra("report")
    report = inspect_data(args.data, progress=not args.json)
    if args.report:
        from facecheck.reporting.inspect_report import write_inspect_report

        write_inspect_report(report, Path(args.report))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "groups"}))
    else:
        print(f"{report['root']}: {report['n']} images; {report['layout']}")
        print("\n".join(summary_lines(report)))
        if args.report:
            print(f"report written to {args.report}")
    return EXIT_OK


def command_models(args: argparse.Namespace) -> int:
    from facecheck.card import render_card
    from facecheck.config import PRESETS
    from facecheck.inference.release import DEFAULT_MODEL, read_release_card, releases
    from facecheck.models import list_models, model_entry

    shipped = releases()
    if args.card:
        name = args.card if isinstance(args.card, str) else DEFAULT_MODEL
        if name not in shipped:
            raise FacecheckError(f"no shipped model {name!r}; shipped: {', '.join(shipped) or 'none'}")
        card = read_release_card(shipped[name])
        text = render_card(card, name, shipped[name].weights_sha256)
        if card.scope.get("face_check") or card.preprocess.face_crop:  # the card's promise, as kept here
            from facecheck.data.faces import face_detector_problem

            problem = face_detector_problem()
            state = f"NOT AVAILABLE HERE ({problem}); verdicts say so" if problem else "on (MTCNN looks first)"
            first, _, rest = text.partition("\n")
            text = f"{first}\nFace check: {state}\n{rest}"
        print(json.dumps(card.to_dict(), indent=2) if args.json else text)
        return EXIT_OK
    entries = [
        {"name": n, "description": model_entry(n).description, "pretrained": model_entry(n).has_pretrained}
        for n in list_models()
    ]
    presets = {name: preset.model.name for name, preset in PRESETS.items()}
    ready = {name: str(entry.weights.name) for name, entry in shipped.items()}
    if args.json:
        print(json.dumps({"models": entries, "presets": presets, "shipped": ready}))
        return EXIT_OK
    print("shipped (used when no --model is given; `facecheck models --card` shows its card):")
    for name in ready:
        print(f"  {name}{'  (default)' if name == DEFAULT_MODEL else ''}")
    if not ready:
        print("  none")
    print("models:")
    for entry in entries:
        print(f"  {entry['name']:<18} {entry['description']}")
    print("presets:")
    for name, model in presets.items():
        print(f"  {name:<18} model {model}")
    return EXIT_OK


def command_cache(args: argparse.Namespace) -> int:
    from facecheck.paths import cache_dir, cache_usage, clean_cache, human_size

    where = cache_dir()
    if args.cache_command == "clean":
        removed = clean_cache(args.only)
        freed = sum(entry.bytes for entry in removed if entry.owned)
        for entry in removed:
            if entry.owned:
                print(f"removed {entry.kind:<10} {entry.files:>7} files  {human_size(entry.bytes):>9}")
            else:
                print(f"kept    {entry.kind:<10} {entry.path} (not made by facecheck: remove it yourself if unwanted)")
        print(f"freed {human_size(freed)} in {where}")
        return EXIT_OK
    usage = cache_usage()
    if args.json:
        print(json.dumps({"cache_dir": str(where), "parts": [entry.to_dict() for entry in usage]}))
        return EXIT_OK
    source = "$FACECHECK_CACHE_DIR" if os.environ.get("FACECHECK_CACHE_DIR") else "default; set $FACECHECK_CACHE_DIR"
    print(f"cache folder: {where} ({source})")
    for entry in usage:
        what = entry.description if entry.owned else "not made by facecheck: left alone"
        print(f"  {entry.kind:<10} {entry.files:>7} files  {human_size(entry.bytes):>9}  {what}")
    print(f"  {'total':<10} {sum(e.files for e in usage):>7} files  {human_size(sum(e.bytes for e in usage)):>9}")
    print("`facecheck cache clean` removes them; each is made again when next needed")
    return EXIT_OK


def command_presets(args: argparse.Namespace) -> int:
    if args.show:
        print(f"# facecheck train --preset {args.show} uses these settings")
        print(config_yaml(get_preset(args.show)), end="")
        return EXIT_OK
    for name in list_presets():
        marker = {RECOMMENDED_PRESET: "  (recommended)", GENERAL_PRESET: "  (general: several sources)"}.get(name, "")
        print(f"{name}{marker}")
    return EXIT_OK
