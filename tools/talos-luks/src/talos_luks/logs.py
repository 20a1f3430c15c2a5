"""talos-luks's logging: progress at INFO on stderr, libcryptsetup's messages with -v or --debug."""

from __future__ import annotations

import logging
import sys


def stderr_handler() -> logging.Handler:
    """A handler writing to whatever ``sys.stderr`` is now (in-process callers may swap it)."""

    class StderrHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sys.stderr.write(self.format(record) + "\n")
            except Exception:  # noqa: BLE001 - logging must never raise into the command
                self.handleError(record)

    return StderrHandler()


def setup_logging(verbose: bool, debug: bool) -> None:
    """Our progress at INFO on stderr; libcryptsetup's messages only with -v/--debug."""
    root = logging.getLogger("talos_luks")
    if not root.handlers:
        handler = stderr_handler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    lib_level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.getLogger("talos_luks.libcryptsetup").setLevel(lib_level)
    if debug:
        from talos_luks.binding import set_debug

        set_debug(True)
