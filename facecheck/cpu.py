"""The CPU as this process sees it, read before torch loads: usable cores, and OpenMP's wait policy.

Usable cores are those this process may run on (its affinity mask, e.g. under taskset or a container's
cpuset), not all the machine has. OpenMP's wait policy is chosen for training on a shared CPU.

By default OpenMP's idle threads spin for a while before they sleep, which is fastest on a quiet machine
but wastes the cores another process needs: a training step on 2 cores with one other busy process took
6.72 s with the default policy against 4.53 s with ``PASSIVE`` (threads sleep at once), while on the quiet
machine ``PASSIVE`` cost 9% (``benchmarks/train_step.py --env-variants``, docs/results.md). The runtime
reads the policy once, when it is loaded, so the choice is made from the load average at start-up.
This module imports nothing heavy: it must run before torch is imported.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

WAIT_POLICY = "OMP_WAIT_POLICY"
# Other processes' load (1-minute average) from which the CPU counts as shared: one busy process on 2 cores.
SHARED_LOAD_PER_CORE = 0.5


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def choose_wait_policy(
    environ: MutableMapping[str, str] | None = None, load: float | None = None, cores: int | None = None
) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when other processes already keep the CPU busy; return why (None: left
    as it was, because the user set it or the CPU is quiet). Call before ``import torch``."""
    environ = os.environ if environ is None else environ
    if WAIT_POLICY in environ:
        return None  # the user's own choice wins
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average on this system
            return None
    cores = cores or available_cores()
    if load < SHARED_LOAD_PER_CORE * cores:
        return None
    environ[WAIT_POLICY] = "PASSIVE"
    return f"OpenMP threads sleep when idle ({WAIT_POLICY}=PASSIVE): load average {load:.1f} on {cores} cores at start"
