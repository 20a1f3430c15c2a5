"""Bounded in-memory logs: one ring per service and one for the node itself.

The API issue reads (``lines``) and follows (``follow``) these rings; nothing here blocks the
loop: a follower that falls behind loses the oldest lines, never stalls PID 1.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator

DEFAULT_LINES = 2000
FOLLOW_QUEUE = 1000


class LogRing:
    def __init__(self, name: str, maxlen: int = DEFAULT_LINES) -> None:
        self.name = name
        self._lines: deque[str] = deque(maxlen=maxlen)
        self._followers: list[asyncio.Queue[str]] = []
        self.total = 0

    def append(self, line: str) -> None:
        self._lines.append(line)
        self.total += 1
        for queue in self._followers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(line)

    def lines(self, tail: int | None = None) -> list[str]:
        items = list(self._lines)
        return items if tail is None else items[-tail:] if tail > 0 else []

    async def follow(self, tail: int = 0) -> AsyncIterator[str]:
        """Yield the last ``tail`` lines, then every new line until cancelled."""
        queue: asyncio.Queue[str] = asyncio.Queue(FOLLOW_QUEUE)
        for line in self.lines(tail):
            queue.put_nowait(line)
        self._followers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._followers.remove(queue)


class Console:
    """The node's own log: ``[talos] ...`` lines on stderr (the console) and in a ring."""

    def __init__(self, fd: int | None = None, ring: LogRing | None = None) -> None:
        self.fd = sys.stderr.fileno() if fd is None else fd
        self.ring = ring or LogRing("machined")

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime())
        for part in message.splitlines() or [""]:
            self.ring.append(f"{stamp} {part}")
            self.write(f"[talos] {part}\n")

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:  # pragma: no cover - a console is blocking
                continue
            except OSError:
                return  # the console went away: keep running, the ring still has the line
            data = data[written:]


class LineReader(asyncio.Protocol):
    """Reads a service's stdout/stderr pipe into its ring, line by line."""

    def __init__(
        self, ring: LogRing, echo: Console | None, prefix: str, done: asyncio.Future[None]
    ) -> None:
        self._ring = ring
        self._echo = echo
        self._prefix = prefix
        self._buf = b""
        self._done = done

    def data_received(self, data: bytes) -> None:
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        for raw in complete:
            self._emit(raw)
        if len(self._buf) > 64 * 1024:  # a line without newline: cut it rather than grow
            self._emit(self._buf)
            self._buf = b""

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        self._ring.append(line)
        if self._echo is not None:
            self._echo.write(f"{self._prefix}: {line}\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = b""
        if not self._done.done():
            self._done.set_result(None)
