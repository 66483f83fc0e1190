"""CPU thread defaults that survive a busy machine.

OpenMP's default wait policy spins idle worker threads; on a small box that other processes also
use, each parallel region then waits for a descheduled spinner and throughput collapses (measured
in BENCHMARKS.md: the two-tower on 2 threads fell to 338 samples/s against 5,076 on one). With
OMP_WAIT_POLICY=PASSIVE idle workers sleep, so 2 threads never fell below 1 thread there. The
policy is read when the OpenMP runtime loads (with torch), so `feedrank/__init__.py` sets it
before anything imports torch; an explicit value in the environment wins.
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"
NUM_THREADS = "OMP_NUM_THREADS"


def prefer_passive_waits() -> None:
    """Make idle OpenMP threads sleep unless the environment already chose a policy."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_threads(configured: int = 0) -> int:
    """Torch intra-op threads: `configured` when > 0, else OMP_NUM_THREADS when the environment
    sets a positive count (the user asked for it), else this process's share of the CPUs.

    Ranks started on one machine (torchrun's LOCAL_WORLD_SIZE) split its CPUs between them; with
    spinning waits (a policy other than PASSIVE chosen explicitly), or when the 1-minute load
    average already exceeds the CPUs, one thread: on this project's 2-core box under load a
    ranker ran 17x faster on one thread than on two (BENCHMARKS.md).
    """
    if configured > 0:
        return configured
    from_env = os.environ.get(NUM_THREADS, "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env)
    if os.environ.get(WAIT_POLICY, "").upper() != "PASSIVE":
        return 1
    cpus = available_cpus()
    if _load_average() > cpus:  # more runnable processes than cores: a second thread only waits
        return 1
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, cpus // local_ranks)


def _load_average() -> float:
    """The 1-minute load average (0 where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
