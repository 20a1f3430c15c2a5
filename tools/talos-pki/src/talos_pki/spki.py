"""``talos-pki fingerprint``'s work, shared by the fast path in :mod:`talos_pki.cli` and the
Typer command: read the input, answer with :func:`libtalos.spki.fingerprint`.

Run while a node in maintenance mode waits and called by scripts in loops, it starts fast:
:mod:`libtalos.spki` and :mod:`libtalos.inputs` import only the standard library.
"""

from __future__ import annotations

from libtalos.inputs import read_input_bytes
from libtalos.spki import fingerprint


def fingerprint_input(name: str) -> str:
    """The fingerprint of the certificate in file ``name`` (``-`` for stdin)."""
    data, source = read_input_bytes(name)
    return fingerprint(data, source)
