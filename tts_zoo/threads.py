"""How many threads the commands give torch (and the libraries that read ``OMP_NUM_THREADS``).

On a busy machine, torch's default (one thread per core) makes every thread wait for the others: on the
2-core development machines one synthesis took 27 s with the default and 0.77 s with one thread while
another job ran. So, unless the user set ``OMP_NUM_THREADS``, a command uses the cores that the load
average says are idle (at least one). Read before torch is imported (no torch import here). The Python
API does the same: ``Synthesizer`` measures the idle cores once and synthesizes on that many threads
(:func:`torch_threads`), unless given ``threads``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

__all__ = ["default_threads", "configure_threads", "torch_threads"]


def _busy_cores(sample_seconds: float) -> float:
    """Cores in use: measured over ``sample_seconds`` from /proc/stat where there is one (the 1-minute
    load average lags a job that just ended by a minute), else the load average."""
    def times() -> tuple[int, int]:
        fields = [int(x) for x in open("/proc/stat", encoding="ascii").readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    if sample_seconds > 0:
        try:
            total0, idle0 = times()
            time.sleep(sample_seconds)
            total1, idle1 = times()
            if total1 > total0:
                return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / (total1 - total0))
        except (OSError, ValueError, IndexError):
            pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return 0.0


def default_threads(sample_seconds: float = 0.0) -> int:
    """``$OMP_NUM_THREADS`` when set to a positive integer; else the idle cores: cores − cores in use
    (measured over ``sample_seconds``, else the 1-minute load average), rounded, clamped to [1, cores]."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - _busy_cores(sample_seconds))))


def configure_threads(sample_seconds: float = 0.0) -> int:
    """Set ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` to :func:`default_threads` for this process (and
    torch, if already imported). Returns the number."""
    n = default_threads(sample_seconds)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(n))
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch on ``n`` threads, then give the caller back its own count (library code
    such as ``Synthesizer`` must not change a process-wide setting behind its caller's back)."""
    import torch

    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != previous:
            torch.set_num_threads(previous)
