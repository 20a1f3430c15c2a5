"""Runtime events: the node's ring (replay options, ids, bounded followers), the sequencer's and
supervisor's events, ``Events`` through the proxy, ``talosctl events`` following new events,
and the stream decoded by the independent betterproto client."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from libtalos.api import tls
from libtalos.api.channel import ClosingChannel
from talos_init import events as ev
from talos_init.api.eventwire import parse_request
from talos_init.logring import Console
from talos_init.sequencer import Phase, Sequencer, TaskFailedError
from talosctl.cli import main

TALOS_APPLY = str(Path(sys.executable).parent / "talos-apply")
HERE = Path(__file__).resolve().parent / "independent"
BOUND = 60.0  # fails a broken follower instead of hanging; measures nothing


def _drain(ring: ev.EventRing, **options: Any) -> list[ev.Event]:
    """What a watch replays before it would wait for new events."""

    async def go() -> list[ev.Event]:
        out: list[ev.Event] = []
        it = ring.watch(**options)
        while True:
            try:
                out.append(await asyncio.wait_for(it.__anext__(), 0.05))
            except TimeoutError:
                return out

    return asyncio.run(go())


def test_ids_are_xids_in_publishing_order() -> None:
    ring = ev.EventRing()
    made = [ring.publish(ev.TaskEvent(f"t{i}", "START")) for i in range(50)]
    ids = [e.id for e in made]
    assert all(len(i) == 20 and set(i) <= set("0123456789abcdefghijklmnopqrstuv") for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert ev.decode_id(ids[3]) == made[3].key
    seconds = int.from_bytes(made[0].key[:4], "big")
    assert abs(seconds - time.time()) < 60  # xid: the first 4 bytes are the time
    for bad in ("", "x" * 20, "0" * 19, "0" * 21, "W" * 20):
        with pytest.raises(ev.EventIdError):
            ev.decode_id(bad)


def test_replay_options() -> None:
    ring = ev.EventRing(capacity=10)
    made = [ring.publish(ev.PhaseEvent(f"p{i}", "START")) for i in range(15)]
    assert _drain(ring) == []  # default: no history
    assert [e.payload.phase for e in _drain(ring, tail_events=3)] == ["p12", "p13", "p14"]
    assert len(_drain(ring, tail_events=-1)) == 10  # all that is kept: the ring is bounded
    after = _drain(ring, tail_id=made[11].key)
    assert [e.payload.phase for e in after] == ["p12", "p13", "p14"]
    assert len(_drain(ring, tail_seconds=60)) == 10


def test_request_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="tail_events and tail_id"):
        parse_request(1, "c9hh5s0b2g4ljgmh3i50", 0)
    with pytest.raises(ValueError, match="tail_seconds"):
        parse_request(0, "", -5)
    with pytest.raises(ValueError, match="tail_id '../../etc/passwd'"):
        parse_request(0, "../../etc/passwd", 0)
    with pytest.raises(ValueError, match=r"tail_id 'nnnnn.*\.\.\.'"):
        parse_request(0, "n" * 10_000, 0)
    assert parse_request(-1, "", 0) == (-1, None, 0)


def test_a_slow_follower_is_ended_not_the_publisher() -> None:
    ring = ev.EventRing()

    async def go() -> int:
        seen = 0
        it = ring.watch()
        first = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0)  # the follower is registered and waiting
        for i in range(ev.FOLLOW_QUEUE + 5):
            ring.publish(ev.TaskEvent(str(i), "START"))
        await first
        seen = 1
        with pytest.raises(ev.EventsOverrunError):
            async for _ in it:
                seen += 1
        return seen

    seen = asyncio.run(go())
    assert seen == ev.FOLLOW_QUEUE  # it got what fitted, then the error, never a silent gap
    assert ring.published == ev.FOLLOW_QUEUE + 5


def test_sequencer_publishes_sequence_phase_and_task_events() -> None:
    ring = ev.EventRing()
    seq = Sequencer(Console(fd=2), ring)

    async def ok() -> None:
        return None

    async def boom() -> None:
        raise RuntimeError("no")

    asyncio.run(seq.run("boot", [Phase("one", [("a", ok), ("b", ok)])]))
    with pytest.raises(TaskFailedError):
        asyncio.run(seq.run("install", [Phase("two", [("c", boom)])]))
    seen = [
        (type(e.payload).__name__, *vars(e.payload).values()) for e in _drain(ring, tail_events=-1)
    ]
    assert seen == [
        ("SequenceEvent", "boot", "START", None, ""),
        ("PhaseEvent", "one", "START"),
        ("TaskEvent", "a", "START"),
        ("TaskEvent", "a", "STOP"),
        ("TaskEvent", "b", "START"),
        ("TaskEvent", "b", "STOP"),
        ("PhaseEvent", "one", "STOP"),
        ("SequenceEvent", "boot", "STOP", None, ""),
        ("SequenceEvent", "install", "START", None, ""),
        ("PhaseEvent", "two", "START"),
        ("TaskEvent", "c", "START"),
        ("TaskEvent", "c", "STOP"),
        ("PhaseEvent", "two", "STOP"),
        ("SequenceEvent", "install", "STOP", None, ""),
        (
            "SequenceEvent",
            "install",
            "NOOP",
            "FATAL",
            "sequence failed: install sequence: phase two: task c: internal error (RuntimeError)",
        ),
    ]


@pytest.fixture
def evnode(configured: Any, talosconfig_for: Any) -> tuple[Any, Any, str]:
    s, node = configured()
    node.event_ring = s.call(_make_ring())
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    return s, node, tc


async def _make_ring() -> ev.EventRing:
    ring = ev.EventRing()
    ring.publish(ev.SequenceEvent("boot", "START"))
    ring.publish(ev.TaskEvent("startAllServices", "START"))
    ring.publish(ev.ServiceStateEvent("etcd", "RUNNING", "Health check successful", True))
    ring.publish(ev.SequenceEvent("boot", "NOOP", "FATAL", "sequence failed: boom"))
    return ring


def _publish(s: Any, ring: ev.EventRing, payload: Any) -> None:
    async def go() -> None:
        ring.publish(payload)

    s.call(go())


def test_events_command_follows_new_events(evnode: tuple[Any, Any, str]) -> None:
    s, node, tc = evnode
    proc = subprocess.Popen(
        [TALOS_APPLY, "--talosconfig", tc, "events", "--tail", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.split() == ["NODE", "ID", "EVENT", "SOURCE", "MESSAGE"], header
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        cells = [line.split(None, 4) for line in lines]
        assert [c[0] for c in cells] == [s.endpoint, s.endpoint]
        assert cells[0][2:] == [
            "talos/runtime/machine.ServiceStateEvent",
            "etcd",
            "RUNNING: Health check successful\n",
        ]
        assert cells[1][2:] == [
            "talos/runtime/machine.SequenceEvent",
            "boot",
            "error: sequence failed: boom\n",
        ]
        # a new event reaches the follower (which had printed only the two of history)
        _publish(s, node.event_ring, ev.PhaseEvent("followed", "START"))
        line = proc.stdout.readline()
        assert line.split()[2:] == ["talos/runtime/machine.PhaseEvent", "followed", "START"]
        assert proc.poll() is None  # still following
    finally:
        proc.kill()
        proc.communicate(timeout=BOUND)  # reaps it and closes the pipes


def test_events_since_and_bad_options(
    evnode: tuple[Any, Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    s, node, tc = evnode
    ids = [e.id for e in node.event_ring.history(tail_events=-1)]
    _publish(s, node.event_ring, ev.TaskEvent("last", "STOP"))
    proc = subprocess.Popen(
        [TALOS_APPLY, "--talosconfig", tc, "events", "--since", ids[2]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert [line.split()[1] for line in lines[1:]][:1] == [ids[3]]  # after ids[2] only
        assert lines[2].split()[3:] == ["last", "STOP"], lines
    finally:
        proc.kill()
        proc.communicate(timeout=BOUND)
    code = main(["--talosconfig", tc, "events", "--since", "../../etc/passwd"])
    _out, err = capsys.readouterr()
    assert code == 1 and "tail_id" in err and "passwd" in err, err
    code = main(["--talosconfig", tc, "events", "--tail", "1", "--since", ids[0]])
    _out, err = capsys.readouterr()
    assert code == 2 and "exclude" in err, err
    code = main(["--talosconfig", tc, "events", "--duration", "soon"])
    _out, err = capsys.readouterr()
    assert code == 2 and "--duration" in err, err


def test_events_decode_with_betterproto(
    evnode: tuple[Any, Any, str], cluster: Any, admin: Any
) -> None:
    pytest.importorskip("betterproto", reason="betterproto==2.0.0b7 (requirements-dev.txt)")
    sys.path.insert(0, str(HERE))
    try:
        m = importlib.import_module("_gen.machine")
    finally:
        sys.path.remove(str(HERE))
    s, node, _tc = evnode
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)

    async def go() -> list[Any]:
        ch = ClosingChannel("127.0.0.1", s.port, ssl=ctx, pins=[])
        out: list[Any] = []
        try:
            stub = m.MachineServiceStub(ch)
            async for frame in stub.events(
                m.EventsRequest(tail_events=-1), metadata={"nodes": s.endpoint}
            ):
                out.append(frame)
                if len(out) == 4:
                    break
        finally:
            ch.close()
        return out

    frames = asyncio.run(go())
    assert all(f.metadata.hostname == s.endpoint for f in frames)
    assert [f.data.type_url for f in frames] == [
        "talos/runtime/machine.SequenceEvent",
        "talos/runtime/machine.TaskEvent",
        "talos/runtime/machine.ServiceStateEvent",
        "talos/runtime/machine.SequenceEvent",
    ]
    svc = m.ServiceStateEvent().parse(frames[2].data.value)
    assert svc.service == "etcd" and svc.action == m.ServiceStateEventAction.RUNNING
    assert svc.health.healthy and not svc.health.unknown
    failed = m.SequenceEvent().parse(frames[3].data.value)
    assert failed.action == m.SequenceEventAction.NOOP
    assert failed.error.message == "sequence failed: boom"
    assert [f.id for f in frames] == [e.id for e in node.event_ring.history(tail_events=-1)]
