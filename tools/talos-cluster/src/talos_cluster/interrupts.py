"""Ctrl-C during ``create``, made certain to stop it (one :class:`Interrupts` per run)."""

from __future__ import annotations

import signal
from typing import Any


class Interrupts:
    """Ctrl-C during create, made certain to stop it.

    Python turns SIGINT into KeyboardInterrupt wherever the main thread is, and some places
    swallow it with "Exception ignored": fork callbacks (the logging module has one, and netns
    creation forks), finalizers. So the handler also keeps a flag, checked between steps and in
    every wait loop, and an interrupt swallowed once is raised again at the next check.
    """

    def __init__(self) -> None:
        self.seen = False

    def handler(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def install(self) -> Any:
        """Our handler when SIGINT has Python's default one (an ignored SIGINT stays ignored);
        returns the handler it found, for :meth:`restore`."""
        self.seen = False
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, self.handler)
        return previous

    @staticmethod
    def restore(previous: Any) -> None:
        """Put back Python's default handler when :meth:`install` replaced it."""
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
