"""Cold start-up time of the torch-free CLI paths: `--version`, `list-components`, `show`, `validate`.

    .venv/bin/python benchmarks/cli_startup.py [--runs 10]

Each run is a fresh interpreter (what a user waits for). The commands are run in turn, round after
round (after one warm-up round: the OS file cache warm, Python's bytecode cache built), so that a
change in the machine's load hits them all alike; prints each one's median and min over the rounds
and the load average before and after. Goal (issue 13): `list-components` <= 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "tts-zoo --version": [sys.executable, "-m", "tts_zoo", "--version"],
    "tts-zoo list-components": [sys.executable, "-m", "tts_zoo", "list-components"],
    "tts-zoo show istftnet": [sys.executable, "-m", "tts_zoo", "show", "istftnet"],
    "tts-zoo validate recipes/libritts_istft.yaml": [sys.executable, "-m", "tts_zoo", "validate", "recipes/libritts_istft.yaml"],
}


def run_rounds(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Seconds per run of each command, interleaved: one run of each per round."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs + 1):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)
            if i:  # round 0 warms up
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    before = os.getloadavg()[0]
    times = run_rounds(COMMANDS, args.runs)
    print(f"{'command':46s} {'median':>8s} {'min':>8s}   ({args.runs} cold runs each, interleaved)")
    for name, t in times.items():
        print(f"{name:46s} {statistics.median(t):8.3f} {min(t):8.3f}")
    print(f"load average (1 min) {before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
