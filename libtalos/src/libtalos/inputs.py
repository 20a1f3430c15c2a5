"""Reading inputs named on the command line (``-`` is stdin), with one set of messages.

Kept free of pathlib and other imports beyond the interpreter's start, because the tools' fast
paths (``talos-pki fingerprint``) read their input through it.
"""

from __future__ import annotations

import sys

from libtalos.errors import TalosIOError


def read_input_bytes(name: str) -> tuple[bytes, str]:
    """``(data, source)`` of a named input; ``source`` is the name to use in messages."""
    if name == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        with open(name, "rb") as fh:
            return fh.read(), name
    except FileNotFoundError:
        raise TalosIOError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise TalosIOError(f"{name}: is a directory") from None
    except PermissionError:
        raise TalosIOError(f"{name}: permission denied") from None
    except OSError as exc:
        raise TalosIOError(f"{name}: cannot read: {exc.strerror}") from None


def read_input(name: str) -> tuple[str, str]:
    """``(text, source)`` of a named UTF-8 text input."""
    if name == "-" and getattr(sys.stdin, "buffer", None) is None:
        return sys.stdin.read(), "<stdin>"  # a text stream (tests replace stdin so)
    data, source = read_input_bytes(name)
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError as exc:
        raise TalosIOError(f"{source}: not UTF-8 text (bad byte at offset {exc.start})") from None
