"""Kill a training run with SIGKILL at random moments, again and again, and check it always carries on.

    python benchmarks/kill_loop.py --kills 20 --out runs/kill-loop/kill_loop.json
    python benchmarks/kill_loop.py --kills 3 --epochs 2 --out /tmp/kill3.json   # a smoke check

A tiny run (the built-in synthetic set, ``seed-cnn`` at 32 px by default) is first trained once without
interruption (the reference, which also times a whole run); then the same run is trained by ``facecheck
train`` in a child process, which is killed with SIGKILL after a random delay (seeded by ``--seed``) drawn
from ``[--min-delay, --max-delay]`` seconds (default for the latter: the reference's duration, so kills fall
anywhere in a run on this machine, however loaded): during start-up, data preparation, an epoch, a checkpoint
write or the final calibration, wherever it happens to be. After each kill the run folder is examined (what
state the run was in, whether ``last.pt`` reads, which half-written files were left) and the next attempt
resumes it (``train --resume``) when its data were prepared, or starts it again when they were not. A kill
counts as survived when its checkpoints read and the next attempt neither fails nor goes back in epochs. A run
that finishes between kills is extended by one epoch (``--resume --epochs N+1``) so that the kills go on.
Finally the run is resumed without a kill and must complete: every epoch once in ``metrics.jsonl``,
``summary.json`` written, no temporary files left; unless ``--no-reference``, its weights are compared with
the uninterrupted run's (retrained if the run was extended; the README promises they are equal).

Prints a table (kill, seconds after start, state at the kill, what the next attempt did, ok) and writes the
whole record as JSON to ``--out``. Nothing can hang: every child has a timeout and is killed (its whole
process group) when it runs out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecheck.checkpoint import read_checkpoint  # noqa: E402 - after the path set-up above
from facecheck.errors import FacecheckError  # noqa: E402
from facecheck.run_folder import RunFolder  # noqa: E402


def facecheck_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "facecheck", *arguments]


def child_environment(cache: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    environment["FACECHECK_CACHE_DIR"] = str(cache)  # the loop's own cache: its decode cache is killed too
    return environment


def stop_group(process: subprocess.Popen) -> None:
    """SIGKILL the child and anything it started (it leads its own process group)."""
    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def run_to_end(command: list[str], environment: dict[str, str], log: Path, timeout: float) -> tuple[int, float]:
    """Run a child to its end (killed after ``timeout`` seconds: code -9); returns (exit code, seconds)."""
    started = time.perf_counter()
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(process)
            code = -signal.SIGKILL
    return code, time.perf_counter() - started


def written_after(path: Path, other: Path) -> bool:
    return path.is_file() and (not other.is_file() or path.stat().st_mtime >= other.stat().st_mtime)


def run_state(run: RunFolder) -> dict[str, Any]:
    """What a run folder holds right now, read the way facecheck itself reads it."""
    summary = run / RunFolder.SUMMARY
    state: dict[str, Any] = {
        "exists": run.path.is_dir(),
        "prepared": run.has_prepared_data(),
        # A summary older than last.pt is that of an earlier finish, before the run was extended.
        "finished": written_after(summary, run.last),
        "temporary_files": sorted(p.name for p in run.path.glob(".*.tmp")) if run.path.is_dir() else [],
        "epochs_done": 0,
        "checkpoints_read": True,
        "checkpoint_error": None,
    }
    for path in (run.last, run.best):
        if path.is_file():
            try:
                card = read_checkpoint(path)["card"]
            except FacecheckError as exc:
                state["checkpoints_read"], state["checkpoint_error"] = False, str(exc)
                continue
            if path == run.last:
                state["epochs_done"] = card.epoch
    return state


def describe(state: dict[str, Any], epochs: int) -> str:
    if not state["exists"]:
        return "starting (no run folder yet)"
    if not state["prepared"]:
        return "preparing data"
    if state["finished"]:
        return f"finished ({epochs} epochs)"
    if state["epochs_done"] == 0:
        return "epoch 1 running"
    if state["epochs_done"] >= epochs:
        return f"epoch {epochs}/{epochs} done, finishing"
    return f"epoch {state['epochs_done']}/{epochs} done"


def weights_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between two checkpoints' weights (inf when their tensors differ in name)."""
    left, right = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    if left.keys() != right.keys():
        return float("inf")
    return max(float((left[k].double() - right[k].double()).abs().max()) if left[k].numel() else 0.0 for k in left)


def train_command(data: Path, out: Path, epochs: int, recipe: list[str]) -> list[str]:
    return facecheck_command("train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), *recipe)


def resume_command(out: Path, epochs: int) -> list[str]:
    return facecheck_command("train", "--out", str(out), "--resume", "--epochs", str(epochs), "--quiet")


def kill_loop(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work or Path(args.out).with_suffix("")).resolve()
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"kill_loop: {work} is not empty; give another --work (or --out)")
    work.mkdir(parents=True, exist_ok=True)
    environment = child_environment(work / "cache")
    data = work / "data"
    code, _ = run_to_end(
        facecheck_command("data", "synthetic", "--out", str(data), "--per-class", str(args.per_class)),
        environment, work / "data.log", 300,
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"kill_loop: could not write the synthetic set (see {work / 'data.log'})")
    recipe = ["--preset", args.preset, "--batch-size", "8", "--set", f"preprocess.image_size={args.image_size}",
              "--quiet"]  # fmt: skip
    run = RunFolder(work / "run")
    rng = random.Random(args.seed)
    epochs = args.epochs
    references: dict[int, dict[str, Any]] = {}

    def reference_run(epochs: int) -> dict[str, Any]:
        """The same run without interruption (made once per number of epochs)."""
        if epochs not in references:
            folder = work / f"reference-{epochs}"
            code, seconds = run_to_end(
                train_command(data, folder, epochs, recipe), environment, work / f"{folder.name}.log",
                args.attempt_timeout,
            )  # fmt: skip
            references[epochs] = {"folder": folder, "exit_code": code, "seconds": round(seconds, 1)}
        return references[epochs]

    max_delay = args.max_delay
    if max_delay is None:
        timing = reference_run(epochs)
        if timing["exit_code"] != 0:
            raise SystemExit(f"kill_loop: the uninterrupted run failed; see {work / 'reference-'}{epochs}.log")
        max_delay = max(args.min_delay, timing["seconds"])
        print(f"an uninterrupted run takes {timing['seconds']} s: kills fall within that", file=sys.stderr)
    kills: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    attempts = 0
    failure: str | None = None
    while len(kills) < args.kills and failure is None:
        attempts += 1
        if attempts > args.kills * 4:
            failure = "the runs kept finishing before the kill: lower --max-delay or raise --epochs"
            break
        before = run_state(run)
        resume = before["prepared"]
        action = "resume" if resume else "restart"
        command = resume_command(run.path, epochs) if resume else train_command(data, run.path, epochs, recipe)
        if kills:
            kills[-1]["next"] = action
        delay = rng.uniform(args.min_delay, max_delay)
        log = work / f"attempt-{attempts:03d}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )
            try:
                code = process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                code = None
                stop_group(process)
        after = run_state(run)
        went_back = resume and after["epochs_done"] < before["epochs_done"]
        left_over = [name for name in before["temporary_files"] if name in after["temporary_files"]]
        if kills:
            # The kill before this attempt was survived if this attempt carried on from where it was.
            previous = kills[-1]
            previous["ok"] = previous["checkpoints_read"] and code in (None, 0) and not went_back
            previous["next_attempt_exit"] = code
            if resume and previous["temporary_files"] and code == 0 and left_over:
                previous["ok"] = False
                previous["problem"] = f"left-over files not removed on resume: {left_over}"
        if code is not None and code != 0:
            failure = f"attempt {attempts} ({action}) exited with code {code}; see {log}"
            break
        if code == 0:
            events.append({"attempt": attempts, "event": f"finished before its kill ({epochs} epochs)"})
            epochs += 1  # extend the finished run so that the kills go on
            continue
        kills.append(
            {
                "kill": len(kills) + 1,
                "attempt": attempts,
                "action": action,
                "after_s": round(delay, 2),
                "state": describe(after, epochs),
                "epochs_done": after["epochs_done"],
                "temporary_files": after["temporary_files"],
                "checkpoints_read": after["checkpoints_read"],
                "checkpoint_error": after["checkpoint_error"],
                "next": None,
                "ok": None,
            }
        )
        print(f"kill {len(kills):>3} after {delay:5.2f} s: {kills[-1]['state']}", file=sys.stderr, flush=True)

    final: dict[str, Any] = {"completed": False}
    if failure is None:
        before = run_state(run)
        command = (
            resume_command(run.path, epochs) if before["prepared"] else train_command(data, run.path, epochs, recipe)
        )
        if kills:
            kills[-1]["next"] = "resume" if before["prepared"] else "restart"
        code, seconds = run_to_end(command, environment, work / "final.log", args.attempt_timeout)
        after = run_state(run)
        history = [json.loads(line)["epoch"] for line in (run / RunFolder.METRICS).read_text().splitlines() if line]
        final = {
            "exit_code": code,
            "seconds": round(seconds, 1),
            "epochs": epochs,
            "epochs_done": after["epochs_done"],
            "metrics_epochs": history,
            "summary": after["finished"],
            "temporary_files": after["temporary_files"],
        }
        final["completed"] = (
            code == 0 and after["finished"] and after["epochs_done"] == epochs
            and history == list(range(1, epochs + 1)) and not after["temporary_files"]
        )  # fmt: skip
        if kills:
            kills[-1]["ok"] = kills[-1]["checkpoints_read"] and code == 0
            kills[-1]["next_attempt_exit"] = code
        if not final["completed"]:
            failure = f"the final attempt did not complete the run; see {work / 'final.log'}"
        elif not args.no_reference:
            reference = reference_run(epochs)
            final["reference"] = {k: str(v) for k, v in reference.items()}
            if reference["exit_code"] == 0:
                reference = reference["folder"]
                for name in (RunFolder.BEST, RunFolder.LAST):
                    final[f"{name}_max_weight_difference"] = weights_difference(run / name, reference / name)
                final["same_weights_as_uninterrupted"] = all(
                    final[f"{name}_max_weight_difference"] == 0.0 for name in (RunFolder.BEST, RunFolder.LAST)
                )
            else:
                failure = f"the uninterrupted reference run failed; see {work / reference['folder'].name}.log"
    survived = sum(bool(k["ok"]) for k in kills)
    ok = failure is None and survived == len(kills) == args.kills and final["completed"]
    if ok and not args.no_reference:
        ok = bool(final.get("same_weights_as_uninterrupted"))
    return {
        "ok": ok,
        "failure": failure,
        "kills": kills,
        "survived": survived,
        "events": events,
        "final": final,
        "settings": dict(vars(args)) | {"work": str(work), "max_delay_used": round(max_delay, 2)},
    }


def table(record: dict[str, Any]) -> str:
    lines = [
        f"{'kill':>4}  {'after s':>7}  {'state at the kill':<32}  {'left behind':<24}  {'next':<8}  ok",
    ]
    for kill in record["kills"]:
        left = ", ".join(kill["temporary_files"]) or "-"
        lines.append(
            f"{kill['kill']:>4}  {kill['after_s']:>7.2f}  {kill['state']:<32}  {left[:24]:<24}  "
            f"{kill['next'] or '-':<8}  {'yes' if kill['ok'] else 'NO'}"
        )
    final = record["final"]
    lines.append("")
    lines.append(
        f"survived {record['survived']}/{len(record['kills'])} kills; final run "
        f"{'completed' if final.get('completed') else 'NOT completed'}"
        + (f" ({final['epochs']} epochs in {final['seconds']} s after the last kill)" if "epochs" in final else "")
    )
    if "same_weights_as_uninterrupted" in final:
        best, last = final["best.pt_max_weight_difference"], final["last.pt_max_weight_difference"]
        lines.append(
            f"weights equal to an uninterrupted run: {final['same_weights_as_uninterrupted']} "
            f"(largest difference: best.pt {best:.3g}, last.pt {last:.3g})"
        )
    for event in record["events"]:
        lines.append(f"attempt {event['attempt']}: {event['event']}")
    if record["failure"]:
        lines.append(f"FAILED: {record['failure']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to land (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the run (grows when it finishes early)")
    parser.add_argument("--per-class", type=int, default=24, help="synthetic images per class")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--preset", default="seed-cnn")
    parser.add_argument("--min-delay", type=float, default=0.5, help="earliest kill, seconds after a start")
    parser.add_argument(
        "--max-delay", type=float, help="latest kill, seconds after a start (default: an uninterrupted run's duration)"
    )
    parser.add_argument("--attempt-timeout", type=float, default=600.0, help="limit for an attempt run to its end")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the weight check against an uninterrupted run"
    )
    parser.add_argument("--work", help="folder for the data, the run and the logs (default: --out without .json)")
    parser.add_argument("--out", required=True, metavar="FILE.json")
    args = parser.parse_args()
    if args.kills < 1 or args.min_delay <= 0 or (args.max_delay is not None and args.max_delay < args.min_delay):
        parser.error("--kills must be at least 1 and 0 < --min-delay <= --max-delay")
    record = kill_loop(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"written to {args.out}")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
