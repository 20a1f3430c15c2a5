"""The node's runtime events (:mod:`talos_init.events`) as ``machine.Event`` messages.

``Event.data`` is a ``google.protobuf.Any`` whose type URL is ``talos/runtime/<full message
name>`` (``talos/runtime/machine.TaskEvent``), as Talos publishes it, and ``Event.id`` the
event's xid (docs/talos-facts.md#runtime-events).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import any_pb2, timestamp_pb2

from libtalos.api import common_pb2, machine_pb2
from talos_init.events import (
    Event,
    EventIdError,
    PhaseEvent,
    SequenceEvent,
    ServiceStateEvent,
    TaskEvent,
    decode_id,
)

TYPE_URL_PREFIX = "talos/runtime/"
MAX_SHOWN = 40  # characters of a bad tail_id repeated in the error


def parse_request(
    tail_events: int, tail_id: str, tail_seconds: int
) -> tuple[int, bytes | None, int]:
    """``EventsRequest``'s options for :meth:`~talos_init.events.EventRing.watch`; ValueError
    naming the field when they are bad (at most one may be set, as in Talos)."""
    given = [
        n
        for n, v in (
            ("tail_events", tail_events),
            ("tail_id", tail_id),
            ("tail_seconds", tail_seconds),
        )
        if v
    ]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} exclude each other: give one")
    if tail_seconds < 0:
        raise ValueError("tail_seconds must not be negative")
    raw = None
    if tail_id:
        try:
            raw = decode_id(tail_id)
        except EventIdError as exc:
            shown = tail_id if len(tail_id) <= MAX_SHOWN else tail_id[:MAX_SHOWN] + "..."
            raise ValueError(f"tail_id {shown!r}: {exc}") from None
    return tail_events, raw, tail_seconds


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.datetime.fromtimestamp(seconds, dt.UTC))
    return ts


def payload_message(payload: Any) -> Any:
    """The ``machine.*Event`` message of one event record."""
    if isinstance(payload, SequenceEvent):
        msg = machine_pb2.SequenceEvent(
            sequence=payload.sequence,
            action=machine_pb2.SequenceEvent.Action.Value(payload.action),
        )
        if payload.error_code is not None:
            msg.error.CopyFrom(
                common_pb2.Error(
                    code=common_pb2.Error.Code.Value(payload.error_code),
                    message=payload.error_message,
                )
            )
        return msg
    if isinstance(payload, PhaseEvent):
        return machine_pb2.PhaseEvent(
            phase=payload.phase, action=machine_pb2.PhaseEvent.Action.Value(payload.action)
        )
    if isinstance(payload, TaskEvent):
        return machine_pb2.TaskEvent(
            task=payload.task, action=machine_pb2.TaskEvent.Action.Value(payload.action)
        )
    if isinstance(payload, ServiceStateEvent):
        return machine_pb2.ServiceStateEvent(
            service=payload.service,
            action=machine_pb2.ServiceStateEvent.Action.Value(payload.action),
            message=payload.message,
            health=machine_pb2.ServiceHealth(
                unknown=payload.healthy is None,
                healthy=bool(payload.healthy),
                last_message=payload.health_message,
                last_change=_timestamp(payload.health_changed),
            ),
        )
    raise TypeError(f"not an event payload: {type(payload).__name__}")


def event_message(event: Event) -> Any:
    msg = payload_message(event.payload)
    data = any_pb2.Any(
        type_url=TYPE_URL_PREFIX + msg.DESCRIPTOR.full_name, value=msg.SerializeToString()
    )
    return machine_pb2.Event(data=data, id=event.id)
