"""Experiments built from train + evaluate: cross-set evaluation, K-fold cross-validation, tuning.

Each writes its runs and a summary (JSON and Markdown) into one output folder.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from facecheck.api import evaluate, load, split_data
from facecheck.choices import SUMMARY_METRICS
from facecheck.config import TrainConfig, merge
from facecheck.data.discovery import FAKE, REAL
from facecheck.data.layouts import open_dataset
from facecheck.data.sources import GENERATOR, resolve_data_root
from facecheck.errors import ConfigError, DataError
from facecheck.evaluation.evaluate import evaluate_records
from facecheck.evaluation.perturb import parse_perturbations
from facecheck.extras import require
from facecheck.files import atomic_write_text, file_sha256
from facecheck.run_folder import RunFolder
from facecheck.training.trainer import train

__all__ = ["SUMMARY_METRICS", "cross_validate", "crosseval", "leave_one_generator_out", "leave_one_out", "tune"]


# Scoring thousands of held-out images is much of an experiment's time: the fastest installed CPU engine
# (OpenVINO runs the same float32 model about 2-3x faster than torch here; scores agree to ~1e-6).
SCORING_BACKEND = "auto"


def _set_name(path: str | Path) -> str:
    return Path(path).expanduser().resolve().name


def _open_every_set(data_dirs: list[str]) -> None:
    """Fail on a missing or unreadable set before the first run trains (each fold costs minutes to hours)."""
    for data_dir in data_dirs:
        open_dataset(data_dir)


def crosseval(config: TrainConfig, data_dirs: list[str], out_dir: Path, quiet: bool = False) -> dict[str, Any]:
    """Train on each set (its own leak-free split) and test on every set.

    Diagonal: the trained set's held-out test split. Off the diagonal: every
    image of the other set (none of them was seen in training).
    """
    if len(data_dirs) < 2:
        raise DataError("crosseval needs at least two --data sets")
    names = [_set_name(d) for d in data_dirs]
    if len(set(names)) != len(names):
        raise DataError(f"data sets need distinct folder names, got {names}")
    _open_every_set(data_dirs)
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    for train_dir, train_name in zip(data_dirs, names, strict=True):
        run_dir = out_dir / f"train-{train_name}"
        run_config = merge(config, {"data": {"data_dir": str(Path(train_dir).expanduser().resolve())}})
        train(run_config, run_dir, quiet=quiet)
        matrix[train_name] = {}
        detector = load(run_dir, backend=SCORING_BACKEND)
        for test_dir, test_name in zip(data_dirs, names, strict=True):
            result = evaluate(detector, test_dir)
            matrix[train_name][test_name] = {k: result.get(k) for k in ("roc_auc", "accuracy", "n")}
    summary = {"preset": config.preset, "sets": names, "matrix": matrix}
    lines = [
        f"# Cross-set ROC AUC ({config.preset})",
        "",
        "rows: trained on; columns: tested on (diagonal: held-out test split; elsewhere: the whole other set)",
        "",
        "| trained on \\ tested on | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for train_name in names:
        cells = []
        for test_name in names:
            auc = matrix[train_name][test_name]["roc_auc"]
            cells.append("n/a" if auc is None else f"{auc:.4f}")
        lines.append(f"| {train_name} | " + " | ".join(cells) + " |")
    _write(out_dir, "crosseval", summary, lines)
    _heatmap(out_dir / "crosseval.png", names, matrix, f"ROC AUC, {config.preset}")
    return summary


def leave_one_out(
    config: TrainConfig,
    data_dirs: list[str],
    out_dir: Path,
    quiet: bool = False,
    jpeg_quality: int | None = 50,
    progress: bool = False,
    held_out: list[str] | None = None,
    rescore: bool = False,
) -> dict[str, Any]:
    """Leave-one-source-out: for each source, train on all the others together and test on every image of
    the one left out; also the in-domain test splits (and their ROC AUC at JPEG ``jpeg_quality``).

    ``held_out``: run only the folds that leave out these sources (folder names), e.g. one fold on a small
    machine; the mean held-out ROC AUC is reported only when every fold was run.

    This is the field's protocol for fakes of a kind never seen in training. A finished fold (its run
    folder holds summary.json) is not trained again, so an interrupted experiment continues. Its scores
    are kept beside it (:data:`FOLD_SCORES`, tied to the model file's sha256 and the evaluation settings)
    and reused, unless ``rescore``; folds outside ``held_out`` that were scored before are reported too.
    """
    if len(data_dirs) < 3:
        raise DataError("leave-one-out needs at least three --data sources (two to train on, one to test)")
    dirs = [str(Path(d).expanduser().resolve()) for d in data_dirs]
    names = [_set_name(d) for d in dirs]
    if len(set(names)) != len(names):
        raise DataError(f"data sets need distinct folder names, got {names}")
    unknown = sorted(set(held_out or []) - set(names))
    if unknown:
        raise DataError(f"--held-out {', '.join(unknown)} is not one of the sources: {', '.join(names)}")
    _open_every_set(dirs)
    perturbations = parse_perturbations([f"jpeg:{jpeg_quality}"]) if jpeg_quality else None
    folds: dict[str, dict[str, Any]] = {}
    for held_dir, held_name in zip(dirs, names, strict=True):
        run_dir = out_dir / f"without-{held_name}"
        training = [d for d in dirs if d != held_dir]
        selected = not held_out or held_name in held_out
        cached = None if selected and rescore else _cached_fold(run_dir, held_dir, training, jpeg_quality)
        if cached is not None:
            folds[held_name] = cached
            continue
        if not selected:
            continue
        if not (run_dir / "summary.json").is_file():
            if (run_dir / "config.yaml").is_file():
                train(merge(config, {"data": {"data_dir": training}}), run_dir, resume=True, quiet=quiet)
            else:
                train(merge(config, {"data": {"data_dir": training}}), run_dir, quiet=quiet)
        detector = load(run_dir, backend=SCORING_BACKEND)
        held = evaluate(detector, held_dir, split="all", progress=progress)
        fold: dict[str, Any] = {
            "trained_on": [n for n in names if n != held_name],
            "held_out": {k: held.get(k) for k in ("roc_auc", "accuracy", "average_precision", "n")},
            "in_domain": {},
        }
        for source, source_name in zip(training, [n for n in names if n != held_name], strict=True):
            result = evaluate(detector, source, perturbations=perturbations, progress=progress)
            row = {k: result.get(k) for k in ("roc_auc", "accuracy", "n")}
            if perturbations:
                perturbed = result["perturbations"][perturbations[0].name]["roc_auc"]
                row[f"roc_auc_jpeg{jpeg_quality}"] = perturbed
                row["jpeg_drop"] = None if perturbed is None or row["roc_auc"] is None else row["roc_auc"] - perturbed
            fold["in_domain"][source_name] = row
        folds[held_name] = fold
        _store_fold(run_dir, held_dir, training, jpeg_quality, fold)
        _write_leave_one_out(out_dir, config, names, folds, jpeg_quality)
    return _write_leave_one_out(out_dir, config, names, folds, jpeg_quality)


def leave_one_generator_out(
    config: TrainConfig,
    data_dirs: list[str],
    source: str,
    out_dir: Path,
    *,
    held_out: list[str] | None = None,
    quiet: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Leave-one-generator-out inside one source: for each generator named in its manifest, train on every
    given set with that generator's images left out, then score all of its images against the source's own
    held-out test reals (never seen in training). ``held_out``: only these generators' folds.

    The question it answers: does a detector trained on the other generators catch this one? A finished
    fold (summary.json in its run folder) is not trained again; an interrupted one resumes.
    """
    dirs = [str(Path(d).expanduser().resolve()) for d in data_dirs]
    names = [_set_name(d) for d in dirs]
    if source not in names:
        raise DataError(f"--leave-one-generator-out {source} is not one of the --data sets: {', '.join(names)}")
    _open_every_set(dirs)
    source_dir = Path(dirs[names.index(source)])
    dataset = open_dataset(source_dir)
    generator_of = {r.path: dataset.metadata.get(r.path, {}).get(GENERATOR) for r in dataset.records}
    generators = sorted({g for r in dataset.records if r.label == FAKE and (g := generator_of[r.path])})
    if len(generators) < 2:
        raise DataError(f"{source}'s manifest names {len(generators)} generator(s) of fakes: leave-one-generator-out "
                        "needs a 'generator' column with at least two")  # fmt: skip
    unknown = sorted(set(held_out or []) - set(generators))
    if unknown:
        raise DataError(f"--held-out {', '.join(unknown)} is not a generator of {source}: {', '.join(generators)}")
    folds: dict[str, dict[str, Any]] = {}
    for generator in generators:
        if held_out and generator not in held_out:
            continue
        run_dir = out_dir / f"without-{generator}"
        run_config = merge(config, {"data": {"data_dir": dirs, "exclude_generators": [generator]}})
        if not (run_dir / "summary.json").is_file():
            train(run_config, run_dir, resume=(run_dir / "config.yaml").is_file(), quiet=quiet)
        detector = load(run_dir, backend=SCORING_BACKEND)
        test = RunFolder(run_dir).read_split(resolve_data_root(run_config, lambda _m: None))["test"]
        reals = [r for r in test if r.label == REAL and r.path.resolve().is_relative_to(source_dir)]
        fakes = [r for r in dataset.records if r.label == FAKE and generator_of[r.path] == generator]
        result = evaluate_records(detector, reals + fakes, dataset.metadata, progress=progress)[0]
        folds[generator] = {
            "roc_auc": result["roc_auc"],
            "caught": result["recall"],  # the left-out generator's fakes called fake
            "reals_called_fake": result["confusion_matrix"][0][1] / max(result["n_real"], 1),
            "n_fake": result["n_fake"],
            "n_real": result["n_real"],
            "threshold": result["threshold"],
        }
        _write_leave_one_generator_out(out_dir, config, source, folds)
    return _write_leave_one_generator_out(out_dir, config, source, folds)


def _write_leave_one_generator_out(
    out_dir: Path, config: TrainConfig, source: str, folds: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    summary = {"preset": config.preset, "source": source, "folds": folds}
    lines = [
        f"# Leave-one-generator-out inside {source} ({config.preset})",
        "",
        "rows: the generator left out of training; its every image scored against the source's held-out test "
        "reals; caught and reals called fake at the run's own threshold",
        "",
        "| left out | ROC AUC | caught | reals called fake | fakes | reals |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, fold in folds.items():
        lines.append(f"| {name} | {_auc(fold['roc_auc'])} | {fold['caught']:.3f} | {fold['reals_called_fake']:.3f} | "
                     f"{fold['n_fake']} | {fold['n_real']} |")  # fmt: skip
    _write(out_dir, "leave-one-generator-out", summary, lines)
    return summary


# A fold's scores, kept in its run folder: scoring 4,000-6,500 images a fold costs minutes on a CPU.
FOLD_SCORES = "leave-one-out-scores.json"


def _fold_key(run_dir: Path, held_dir: str, training: list[str], jpeg_quality: int | None) -> dict[str, Any] | None:
    """What the scores depend on: the model file's content and the evaluation settings."""
    model = RunFolder(run_dir).best
    if not model.is_file():
        return None
    return {"model_sha256": file_sha256(model), "held_out": held_dir, "trained_on": training, "jpeg": jpeg_quality}


def _cached_fold(run_dir: Path, held_dir: str, training: list[str], jpeg_quality: int | None) -> dict[str, Any] | None:
    path = run_dir / FOLD_SCORES
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: score again
    if not isinstance(stored, dict):
        return None
    key = _fold_key(run_dir, held_dir, training, jpeg_quality)
    return stored.get("fold") if key is not None and stored.get("key") == key else None


def _store_fold(run_dir: Path, held_dir: str, training: list[str], jpeg_quality: int | None, fold: dict) -> None:
    key = _fold_key(run_dir, held_dir, training, jpeg_quality)
    if key is not None:
        atomic_write_text(run_dir / FOLD_SCORES, json.dumps({"key": key, "fold": fold}, indent=2) + "\n")


def _write_leave_one_out(
    out_dir: Path, config: TrainConfig, names: list[str], folds: dict[str, dict[str, Any]], jpeg_quality: int | None
) -> dict[str, Any]:
    held = [
        folds[n]["held_out"]["roc_auc"] for n in names if n in folds and folds[n]["held_out"]["roc_auc"] is not None
    ]
    summary = {
        "preset": config.preset,
        "sources": names,
        "folds": folds,
        # A mean over some folds would read as the protocol's figure: only over all of them.
        "mean_held_out_roc_auc": statistics.mean(held) if held and len(held) == len(names) else None,
    }
    lines = [
        f"# Leave-one-source-out ROC AUC ({config.preset})",
        "",
        "rows: the source left out of training; held out: every image of it; in-domain: the test split of each "
        f"training source (and its ROC AUC after re-encoding at JPEG {jpeg_quality})",
        "",
        "| left out | held-out ROC AUC (n) | " + " | ".join(f"in-domain {n}" for n in names) + " |",
        "|---" * (len(names) + 2) + "|",
    ]
    for name in names:
        if name not in folds:
            continue
        fold = folds[name]
        cells = []
        for other in names:
            row = fold["in_domain"].get(other)
            if row is None:
                cells.append("-")
            else:
                jpeg = row.get(f"roc_auc_jpeg{jpeg_quality}")
                cells.append(_auc(row["roc_auc"]) + ("" if jpeg is None else f" (JPEG {jpeg_quality}: {_auc(jpeg)})"))
        lines.append(
            f"| {name} | {_auc(fold['held_out']['roc_auc'])} ({fold['held_out']['n']}) | " + " | ".join(cells) + " |"
        )
    if summary["mean_held_out_roc_auc"] is not None:
        lines += ["", f"mean held-out ROC AUC: {summary['mean_held_out_roc_auc']:.4f}"]
    _write(out_dir, "leave-one-out", summary, lines)
    matrix = {
        name: {
            other: {"roc_auc": folds[name]["held_out"]["roc_auc"] if other == name
                    else (folds[name]["in_domain"].get(other) or {}).get("roc_auc")}
            for other in names
        }
        for name in names
        if name in folds
    }  # fmt: skip
    rows = [n for n in names if n in folds]
    if rows:
        _heatmap(
            out_dir / "leave-one-out.png", names, matrix, f"ROC AUC, {config.preset}", rows=rows,
            ylabel="left out of training", xlabel="tested on (diagonal: the left-out source)",
        )  # fmt: skip
    return summary


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def cross_validate(
    config: TrainConfig, data_dir: str, folds: int, out_dir: Path, quiet: bool = False
) -> dict[str, Any]:
    """K stratified, group-aware folds (near-duplicates and manifest groups kept together)."""
    fold_files = split_data(
        data_dir,
        out_dir / "folds",
        folds=folds,
        seed=config.data.split_seed,
        val_fraction=config.data.val_fraction,
    )
    per_fold = []
    for index, fold_file in enumerate(fold_files):
        run_config = merge(
            config,
            {"data": {"data_dir": str(Path(data_dir).expanduser().resolve()), "split_file": str(fold_file)}},
        )
        result = train(run_config, out_dir / f"fold-{index}", quiet=quiet)
        per_fold.append({"fold": index} | {k: result.test_metrics.get(k) for k in SUMMARY_METRICS})
    aggregate = {}
    for key in SUMMARY_METRICS:
        values = [row[key] for row in per_fold if row[key] is not None]
        if values:
            aggregate[key] = {
                "mean": statistics.mean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    summary = {
        "preset": config.preset,
        "data": str(data_dir),
        "folds": folds,
        "per_fold": per_fold,
        "summary": aggregate,
    }
    lines = [
        f"# {folds}-fold cross-validation of {config.preset} on {data_dir}",
        "",
        "| metric | mean | std |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v['mean']:.4f} | {v['std']:.4f} |" for k, v in aggregate.items()]
    lines += ["", "| fold | accuracy | roc_auc |", "|---:|---:|---:|"]
    lines += [f"| {r['fold']} | {r['accuracy']:.4f} | {r['roc_auc'] or float('nan'):.4f} |" for r in per_fold]
    _write(out_dir, "cv", summary, lines)
    return summary


def tune(
    config: TrainConfig, trials: int, storage: str, out_dir: Path, study_name: str | None = None, quiet: bool = True
) -> dict[str, Any]:
    """Optuna search maximising validation ROC AUC, with median pruning on per-epoch AUC.

    The study lives in ``storage`` (e.g. ``sqlite:///study.db``), so an
    interrupted search resumes where it stopped when run again.
    """
    require("optuna", "tune")
    import optuna

    if config.data.val_fraction <= 0:
        raise ConfigError("tuning needs a validation split (data.val_fraction > 0): test data is never tuned on")
    name = study_name or f"facecheck-{config.preset}"
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            load_if_exists=True,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=config.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        )
    except Exception as exc:  # noqa: BLE001 - storage URLs fail in many ways (path, driver, permissions)
        raise ConfigError(f"cannot open the study storage {storage!r}: {str(exc).splitlines()[0][:200]}") from None

    pretrained = config.model.pretrained

    def objective(trial: optuna.Trial) -> float:
        changes = search_space(trial, pretrained)
        trial_config = merge(config, changes)
        best = {"auc": 0.0}

        def report(row: dict[str, Any]) -> None:
            auc = row["val_roc_auc"] or 0.0
            best["auc"] = max(best["auc"], auc)
            trial.report(auc, row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        train(trial_config, out_dir / f"trial-{trial.number}", quiet=quiet, on_epoch=report)
        return best["auc"]

    remaining = max(0, trials - len([t for t in study.trials if t.state.is_finished()]))
    study.optimize(objective, n_trials=remaining, catch=(DataError,))
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise DataError("no tuning trial finished")
    best = study.best_trial
    best_config = merge(config, search_space(optuna.trial.FixedTrial(best.params), pretrained))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "best_config.yaml").write_text(yaml.safe_dump(best_config.to_dict(), sort_keys=False))
    _tuning_plots(study, out_dir)
    summary = {
        "study": name,
        "storage": storage,
        "trials": len(study.trials),
        "complete": len(finished),
        "pruned": len([t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]),
        "best_value_val_roc_auc": best.value,
        "best_params": best.params,
        "best_config": str(out_dir / "best_config.yaml"),
    }
    lines = [f"# Tuning {config.preset}", "", f"best validation ROC AUC {best.value:.4f} (trial {best.number})", ""]
    lines += [f"- {k}: {v}" for k, v in best.params.items()]
    _write(out_dir, "tune", summary, lines)
    return summary


def search_space(trial: Any, pretrained: bool) -> dict[str, Any]:
    """The tuned settings, drawn from ``trial``: one definition for the search and for rebuilding the best
    config (replayed through an Optuna ``FixedTrial`` of the best parameters)."""
    changes: dict[str, Any] = {
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
        "optim": {
            "lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        },
        "model": {"dropout": trial.suggest_float("dropout", 0.0, 0.6)},
        "preprocess": {
            "rotation_degrees": trial.suggest_float("rotation_degrees", 0.0, 20.0),
            "augment": trial.suggest_categorical("augment", ["report", "jpeg", "robust"]),
        },
    }
    if pretrained:
        unfreeze = trial.suggest_categorical("unfreeze_blocks", [0, 2, 4, 8])
        if unfreeze:
            changes |= {
                "freeze_backbone": True,
                "unfreeze_blocks": unfreeze,
                "unfreeze_lr": changes["optim"]["lr"] / 10,
            }
    return changes


def _tuning_plots(study: Any, out_dir: Path) -> None:
    from facecheck.reporting.html import figure_png, matplotlib_agg

    matplotlib_agg()
    import warnings

    import optuna.visualization.matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        try:
            figure_png(ovm.plot_optimization_history(study).figure, out_dir / "tune-history.png")
            if len([t for t in study.trials if t.state.name == "COMPLETE"]) >= 2:
                figure_png(ovm.plot_param_importances(study).figure, out_dir / "tune-importance.png")
        except (ValueError, RuntimeError):
            pass  # importances need variation between trials; the history is still written


def _write(out_dir: Path, name: str, summary: dict[str, Any], lines: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text("\n".join(lines) + "\n")


def _heatmap(
    path: Path,
    names: list[str],
    matrix: dict[str, dict[str, dict[str, Any]]],
    title: str,
    rows: list[str] | None = None,
    ylabel: str = "trained on",
    xlabel: str = "tested on",
) -> None:
    from facecheck.reporting.html import figure_png, matplotlib_agg

    require("matplotlib", "report")
    matplotlib_agg()
    import matplotlib.pyplot as plt
    import numpy as np

    rows = rows or names
    values = np.array([[matrix[a][b]["roc_auc"] or np.nan for b in names] for a in rows], dtype=float)
    figure, axis = plt.subplots(figsize=(1.6 * len(names) + 2.5, 1.4 * len(rows) + 1.5))
    image = axis.imshow(values, vmin=0.5, vmax=1.0, cmap="viridis")
    figure.colorbar(image, ax=axis, label="ROC AUC")
    for (row, column), value in np.ndenumerate(values):
        axis.text(column, row, "n/a" if np.isnan(value) else f"{value:.3f}", ha="center", va="center", color="white")
    axis.set(xticks=range(len(names)), yticks=range(len(rows)), xticklabels=names, yticklabels=rows)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    figure_png(figure, path)
