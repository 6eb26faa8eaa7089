"""Cold starts: what a fresh process pays before stackcube does anything, side by side in one run.

    python -m benchmarks.start_bench                 # 15 fresh processes per row
    python -m benchmarks.start_bench --repeat 31

Each row runs a command in a new interpreter, ``--repeat`` times, interleaved row by row (so a busy moment of the
machine touches every row alike), and reports the wall time's median and spread (min-max):

- ``python -c pass``: the interpreter alone, the floor under every other row;
- ``import stackcube``: what every script, notebook and scheduled job pays first;
- ``stackcube --help``: the command line's floor (every call parses its arguments before it imports the rest);
- ``stackcube.build_cube`` named: the first use of the public API, which imports the pipeline (xarray, zarr,
  Icechunk, pandas): the part ``import stackcube`` no longer pays up front.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "stackcube"
"""The console script the install made, beside this interpreter (else ``python -m stackcube.cli``)."""

ROWS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import stackcube": [sys.executable, "-c", "import stackcube"],
    "stackcube --help": [
        str(SCRIPT) if SCRIPT.exists() else sys.executable,
        *([] if SCRIPT.exists() else ["-m", "stackcube.cli"]),
        "--help",
    ],
    "stackcube.build_cube named": [sys.executable, "-c", "import stackcube; stackcube.build_cube"],
}


def _once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in ROWS}
    for _ in range(args.repeat):
        for name, command in ROWS.items():
            times[name].append(_once(command))
    print(f"{'':30} {'median':>8} {'spread':>17}   ({args.repeat} fresh processes each)")
    for name, seen in times.items():
        print(f"{name:30} {statistics.median(seen):7.3f}s {min(seen):7.3f}s-{max(seen):.3f}s")


if __name__ == "__main__":
    main()
