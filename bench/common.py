"""Shared helpers for the benchmarks: timing commands and printing figures beside references.

Every figure is measured in the same run as its reference and reported as a ratio, because the
machines are shared and noisy: an absolute number alone means little.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BIN = Path(sys.executable).parent
# The reference is the interpreter the tools' console scripts run on: the .venv's python. Not a
# pyenv-style shim (a shell script), and not the base interpreter behind the venv's symlink,
# whose own site-packages (.pth files) can make its start several times slower.
PYTHON = sys.executable


def time_command(argv: Sequence[str], runs: int = 21, **kwargs: object) -> float:
    """Median wall time (seconds) of running ``argv`` ``runs`` times; fails loudly on error."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
        samples.append(time.perf_counter() - start)
        if res.returncode != 0:
            raise SystemExit(
                f"bench: {' '.join(map(str, argv))} failed: {res.stderr.decode()[-400:]}"
            )
    return statistics.median(samples)


def interleaved(commands: dict[str, Sequence[str]], runs: int = 21) -> dict[str, float]:
    """Median times of several commands, run interleaved so load changes hit all alike."""
    samples: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            res = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            samples[name].append(time.perf_counter() - start)
            if res.returncode != 0:
                raise SystemExit(f"bench: {name} failed: {res.stderr.decode()[-400:]}")
    return {k: statistics.median(v) for k, v in samples.items()}


def time_call(fn: Callable[[], object], runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def row(
    label: str, value_s: float, ref_label: str = "", ref_s: float | None = None, goal: str = ""
) -> str:
    text = f"{label:<44} {value_s * 1000:9.1f} ms"
    if ref_s is not None:
        text += f"   {ref_label} {ref_s * 1000:8.1f} ms   ratio {value_s / ref_s:5.2f}x"
    if goal:
        text += f"   (goal {goal})"
    print(text, flush=True)
    return text
