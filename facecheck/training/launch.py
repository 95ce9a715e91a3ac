"""``facecheck train --nproc-per-node N``: the same command in N local processes, through torchrun.

The processes are started by ``torch.distributed.run`` (torchrun's own code,
``--standalone`` rendezvous on a free local port), so a run started here and
one started by ``torchrun --nnodes M --nproc-per-node N -m facecheck train ...``
on a cluster go through the same launcher and the same environment variables.
"""

from __future__ import annotations

import os

from facecheck.cpu import available_cores
from facecheck.errors import ConfigError

LAUNCH_OPTION = "--nproc-per-node"


def inside_launched_process() -> bool:
    """Whether this process is one of several that torchrun started (it must not launch again)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or "TORCHELASTIC_RUN_ID" in os.environ


# Set by launch_local for the processes it starts: the pid they must not outlive.
LAUNCHER_PID = "FACECHECK_LAUNCHER_PID"


def die_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when ``parent`` (its launcher) dies, even by SIGKILL.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere nothing is done. Where the launcher is already gone (it
    died before this call), the process ends at once.
    """
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def without_launch_option(argv: list[str]) -> list[str]:
    """``argv`` minus ``--nproc-per-node N`` (or ``--nproc-per-node=N``): what each process runs."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == LAUNCH_OPTION:
            skip = True
        elif not arg.startswith(f"{LAUNCH_OPTION}="):
            kept.append(arg)
    return kept


def launch_local(argv: list[str], nproc: int) -> int:
    """Run ``facecheck ARGV`` in ``nproc`` processes on this machine; the exit code of the first that failed.

    Each process gets the machine's cores divided by ``nproc`` as its threads
    (see :meth:`DistContext.threads`), so N processes use as many threads as one.
    """
    if nproc < 1:
        raise ConfigError(f"{LAUNCH_OPTION} must be at least 1")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    cores = available_cores()
    # torchrun would otherwise set OMP_NUM_THREADS=1 (and say so); the processes set their own thread counts.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))
    os.environ[LAUNCHER_PID] = str(os.getpid())  # the workers die with this process (see die_with_parent)
    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "facecheck", *without_launch_option(argv)]
    )
    try:
        run(args)
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        # A process killed by a signal has a negative code; report it as the shell would (128 + signal).
        return next((c if c > 0 else 128 - c for c in codes if c), 1)
    return 0
