"""Cold start-up time of the torch-free CLI paths: `list-components` and `validate`.

    .venv/bin/python benchmarks/cli_startup.py [--runs 7]

Each run is a fresh interpreter (what a user waits for); prints the median and min of N runs after
one warm-up (the OS file cache warm, Python's bytecode cache built).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "list-components": ["list-components"],
    "validate recipes/libritts_istft.yaml": ["validate", "recipes/libritts_istft.yaml"],
    "show istftnet": ["show", "istftnet"],
}


def time_command(args: list[str], runs: int) -> list[float]:
    cmd = [sys.executable, "-m", "tts_zoo", *args]
    subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    baseline = time_command(["--version"], args.runs)
    bare = [0.0] * args.runs
    for i in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare[i] = time.perf_counter() - t0
    print(f"{'command':40s} {'median':>8s} {'min':>8s}")
    print(f"{'python -c pass':40s} {statistics.median(bare):8.3f} {min(bare):8.3f}")
    print(f"{'tts-zoo --version':40s} {statistics.median(baseline):8.3f} {min(baseline):8.3f}")
    for name, argv in COMMANDS.items():
        t = time_command(argv, args.runs)
        print(f"{'tts-zoo ' + name:40s} {statistics.median(t):8.3f} {min(t):8.3f}")


if __name__ == "__main__":
    main()
