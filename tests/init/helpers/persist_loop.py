"""Persist two configs alternately into STATE forever, printing "wrote N" after each write.

The test kills this process with SIGKILL at varying points and checks what is left.
"""

import sys

from talos_init import configsource

state, first, second = sys.argv[1], sys.argv[2], sys.argv[3]
configs = [
    configsource.parse(open(p, encoding="utf-8").read(), p)  # noqa: SIM115 - helper
    for p in (first, second)
]
n = 0
while True:
    configsource.persist(state, configs[n % 2])
    n += 1
    print(f"wrote {n}", flush=True)
