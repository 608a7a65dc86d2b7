"""How many threads the commands give torch (and the libraries that read ``OMP_NUM_THREADS``).

On a busy machine, torch's default (one thread per core) makes every thread wait for the others: on the
2-core development machines one synthesis took 27 s with the default and 0.77 s with one thread while
another job ran. So, unless the user set ``OMP_NUM_THREADS``, a command uses the cores that the load
average says are idle (at least one). Read before torch is imported (no torch import here).
"""

from __future__ import annotations

import os

__all__ = ["default_threads", "configure_threads"]


def default_threads() -> int:
    """``$OMP_NUM_THREADS`` when set to a positive integer; else the idle cores: cores − 1-minute load
    average, rounded, clamped to [1, cores]."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        load = 0.0
    return max(1, min(cores, round(cores - load)))


def configure_threads() -> int:
    """Set ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` to :func:`default_threads` for this process (and
    torch, if already imported). Returns the number."""
    n = default_threads()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(n))
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n
