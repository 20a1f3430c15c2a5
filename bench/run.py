"""Run the benchmarks: `python bench/run.py [NAME...]` (names: startup, gen, pki, luks, vip, init).

Each module prints its figures beside the reference measured in the same run.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["startup", "gen", "pki", "luks", "vip", "init"]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    names = argv or [n for n in ORDER if (HERE / f"{n}_bench.py").exists()]
    for name in names:
        module = importlib.import_module(f"{name}_bench")
        module.main()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
