"""Command-line interface: parse arguments, call the library, print results.

Exit codes: 0 success; 1 unexpected failure; 2 bad input or configuration, a bad
argument, a missing optional package or a port that cannot be listened on (each one
line on stderr, ``facecheck: error: ...``); 130 interrupted; 141 output pipe closed
early (``facecheck evaluate --json | head``), as for Unix tools.

The parts: :mod:`~facecheck.cli.parser` (declarations), :mod:`~facecheck.cli.commands` (one thin function per
command over :mod:`facecheck.api`), :mod:`~facecheck.cli.output` (printing).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence

from facecheck.cli.commands import (
    command_cache,
    command_crosseval,
    command_cv,
    command_data,
    command_evaluate,
    command_explain,
    command_export,
    command_models,
    command_predict,
    command_presets,
    command_serve,
    command_train,
    command_tune,
    train_config_from_args,
)
from facecheck.cli.parser import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, build_parser
from facecheck.errors import FacecheckError
from facecheck.extras import extra_for, missing_extra_message

__all__ = [
    "COMMANDS", "EXIT_BROKEN_PIPE", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main",
    "train_config_from_args",
]  # fmt: skip

COMMANDS = {
    "train": command_train,
    "evaluate": command_evaluate,
    "predict": command_predict,
    "explain": command_explain,
    "export": command_export,
    "serve": command_serve,
    "crosseval": command_crosseval,
    "cv": command_cv,
    "tune": command_tune,
    "data": command_data,
    "models": command_models,
    "presets": command_presets,
    "cache": command_cache,
}

# Long CPU-bound work whose threads should not spin while other processes need the cores (see facecheck.cpu).
TRAINING_COMMANDS = ("train", "crosseval", "cv", "tune")


def interrupted_message(args: argparse.Namespace) -> str:
    """What an interruption (Ctrl-C, SIGTERM) left behind, and how to go on, for the command that was running."""
    if args.command == "train":
        hint = f"; continue with: facecheck train --out {args.out} --resume" if args.out else ""
        return f"interrupted (completed epochs are saved){hint}"
    if args.command == "export":
        # export_model writes under temporary names and renames only after its checks (see there).
        return f"export interrupted: no partial file was left, and {args.out} was not written or changed"
    if args.command == "predict" and args.out:
        return f"interrupted: {args.out} was not written"
    return "interrupted"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    # `kill` (SIGTERM) stops a run the same way as Ctrl-C: checkpoints so far stay usable.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    args = build_parser().parse_args(argv)
    # What was asked, as given: `train --nproc-per-node N` runs it again in each process.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # File names need not be UTF-8 (Linux): print their bytes as they are, as ls does, instead of failing.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    if args.command in TRAINING_COMMANDS and "torch" not in sys.modules:
        from facecheck.cpu import choose_wait_policy

        reason = choose_wait_policy()
        if reason:
            print(f"facecheck: the CPU is shared: {reason}", file=sys.stderr)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not as a warning at exit
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except FacecheckError as exc:
        print(f"facecheck: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"facecheck: {interrupted_message(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("FACECHECK_DEBUG"):
            raise
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a write of ours not caught below
            where = f" for {exc.filename}" if exc.filename else ""
            print(
                f"facecheck: error: no space left on the device{where}: free some space and run again", file=sys.stderr
            )
            return EXIT_FAILURE
        # An optional package imported somewhere below: name the extra that installs it.
        extra = extra_for(exc) if isinstance(exc, ModuleNotFoundError) else None
        if extra is not None:
            print(f"facecheck: error: {missing_extra_message(str(exc.name).split('.')[0], extra)}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"facecheck: unexpected error: {type(exc).__name__}: {exc} (set FACECHECK_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests, embedding): nothing is flushed at exit
