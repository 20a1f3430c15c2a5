"""The node's runtime events: sequences, phases, tasks and service state changes, in one bounded
ring that the machine API's ``Events`` replays and follows (docs/talos-facts.md#runtime-events).

The sequencer and the supervisor publish plain records (this module loads no protobuf); the API
turns each into its ``machine.*Event`` message. Every event gets an id in the xid format Talos
uses (20 characters of base32hex: seconds since the epoch, a machine part, the pid and a
counter), so ids sort in publishing order and ``tail_id`` resumes after one.

Nothing here blocks the loop: publishing appends to the ring and to each follower's queue; a
follower that falls more than :data:`FOLLOW_QUEUE` events behind is ended with
:class:`EventsOverrunError` (Talos ends such a watch too) rather than holding memory or slowing
the publisher.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

CAPACITY = 1000  # events kept (Talos: a ring of 1000 with a gap of 10)
FOLLOW_QUEUE = 1000  # events one follower may lag behind before it is ended
ID_LENGTH = 20


@dataclass(frozen=True)
class SequenceEvent:
    sequence: str
    action: str  # NOOP, START, STOP
    error_code: str | None = None  # FATAL or LOCKED (with action NOOP)
    error_message: str = ""


@dataclass(frozen=True)
class PhaseEvent:
    phase: str
    action: str  # START, STOP


@dataclass(frozen=True)
class TaskEvent:
    task: str
    action: str  # START, STOP


@dataclass(frozen=True)
class ServiceStateEvent:
    service: str
    action: str  # the state in capitals: INITIALIZED ... SKIPPED
    message: str
    healthy: bool | None = None  # None: unknown (no health check, or not run yet)
    health_message: str = ""
    health_changed: float | None = None  # epoch seconds of the last health change


Payload = SequenceEvent | PhaseEvent | TaskEvent | ServiceStateEvent


@dataclass(frozen=True)
class Event:
    id: str  # xid text
    key: bytes  # the id's 12 bytes (compares as the id does)
    timestamp: float
    payload: Payload


class EventIdError(ValueError):
    """Text that is not an event id."""


class EventsOverrunError(Exception):
    """A follower fell too far behind the publisher and was ended."""


class _Ids:
    """xid-format ids: 4 bytes of seconds, 3 of machine id, 2 of pid, 3 of a counter."""

    def __init__(self) -> None:
        machine = hashlib.sha256(socket.gethostname().encode() + os.urandom(8)).digest()[:3]
        self._fixed = machine + (os.getpid() & 0xFFFF).to_bytes(2, "big")
        self._counter = int.from_bytes(os.urandom(3), "big")
        self._lock = threading.Lock()

    def next(self, now: float) -> bytes:
        with self._lock:
            self._counter = (self._counter + 1) & 0xFFFFFF
            count = self._counter
        return int(now).to_bytes(4, "big") + self._fixed + count.to_bytes(3, "big")


def encode_id(raw: bytes) -> str:
    return base64.b32hexencode(raw).decode().rstrip("=").lower()


def decode_id(text: str) -> bytes:
    """The 12 bytes of an id; :class:`EventIdError` when ``text`` is not one."""
    if len(text) != ID_LENGTH:
        raise EventIdError(f"an event id has {ID_LENGTH} characters")
    try:
        raw = base64.b32hexdecode(text.upper() + "====")
    except (binascii.Error, ValueError):
        raise EventIdError("an event id is base32hex (0-9, a-v)") from None
    if encode_id(raw) != text.lower():  # the last character's unused bit must be zero
        raise EventIdError("not an event id")
    return raw


class _Follower:
    def __init__(self) -> None:
        self.queue: deque[Event] = deque()
        self.ready = asyncio.Event()
        self.overrun = False

    def put(self, event: Event) -> None:
        if len(self.queue) >= FOLLOW_QUEUE:
            self.overrun = True
        else:
            self.queue.append(event)
        self.ready.set()


class EventRing:
    """The last :data:`CAPACITY` events and the followers waiting for new ones."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._followers: list[_Follower] = []
        self._ids = _Ids()
        self.published = 0

    def publish(self, payload: Payload) -> Event:
        now = time.time()
        raw = self._ids.next(now)
        event = Event(encode_id(raw), raw, now, payload)
        self._events.append(event)
        self.published += 1
        for follower in self._followers:
            follower.put(event)
        return event

    def history(
        self, tail_events: int = 0, tail_id: bytes | None = None, tail_seconds: int = 0
    ) -> list[Event]:
        """Past events to replay: the last ``tail_events`` (negative: all kept), those after
        the id ``tail_id``, or those of the last ``tail_seconds``; none by default."""
        kept = list(self._events)
        if tail_events < 0:
            return kept
        if tail_events > 0:
            return kept[-tail_events:]
        if tail_id is not None:
            return [e for e in kept if e.key > tail_id]
        if tail_seconds > 0:
            since = time.time() - tail_seconds
            return [e for e in kept if e.timestamp > since]
        return []

    async def watch(
        self, tail_events: int = 0, tail_id: bytes | None = None, tail_seconds: int = 0
    ) -> AsyncIterator[Event]:
        """:meth:`history`, then every event published from now on, until the caller stops;
        :class:`EventsOverrunError` when the caller falls behind."""
        follower = _Follower()
        for event in self.history(tail_events, tail_id, tail_seconds):
            follower.queue.append(event)
        self._followers.append(follower)  # no await since the history: nothing is missed
        try:
            while True:
                while follower.queue:
                    yield follower.queue.popleft()
                if follower.overrun:
                    raise EventsOverrunError(
                        f"the reader fell more than {FOLLOW_QUEUE} events behind"
                    )
                follower.ready.clear()
                await follower.ready.wait()
        finally:
            self._followers.remove(follower)
