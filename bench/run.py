"""Run the benchmarks: `python bench/run.py [NAME...]`; NAME is a bench/NAME_bench.py.

Each module prints its figures beside the reference measured in the same run.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "startup",
    "gen",
    "pki",
    "api",
    "hostile",
    "luks",
    "vip",
    "init",
    "cluster",
    "image",
    "upgrade",
    "qemu_cluster",
]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    names = argv or [n for n in ORDER if (HERE / f"{n}_bench.py").exists()]
    for name in names:
        module = importlib.import_module(f"{name}_bench")
        # benchmarks with options take their own argv: run them at their defaults
        takes_argv = bool(inspect.signature(module.main).parameters)
        module.main([]) if takes_argv else module.main()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
