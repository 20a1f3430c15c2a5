"""Hostile ApplyConfiguration requests against a node in maintenance mode, with Version polled on
a connection of its own the whole time.

Run inside the node's network namespace: ``hostile_client.py PORT CASE...`` sends each case in
turn (``flood`` sends them all again and again until killed; ``idle`` waits 4 s) and prints JSON
lines: ``polling`` once Version has answered, then one object with, per case, the gRPC status,
the length of the message and how long the refusal took, and the Version latencies seen.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from google.protobuf import empty_pb2
from grpclib import GRPCError
from grpclib.exceptions import StreamTerminatedError

from libtalos.api import machine_pb2, tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
from libtalos.api.channel import ClosingChannel

HEAD = "version: v1alpha1\nmachine:\n    type: controlplane\n"


def alias_bomb_lists(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def alias_bomb_maps(levels: int = 9, width: int = 9) -> str:
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: x" for j in range(width)) + "}"]
    for i in range(1, levels):
        refs = ", ".join(f"k{j}: *m{i - 1}" for j in range(width))
        lines.append(f"m{i}: &m{i} {{{refs}}}")
    return "\n".join(lines) + "\n"


def many_problems(keys: int) -> str:
    """A config whose every one of ``keys`` extra keys is a problem (unknown key)."""
    return HEAD + "".join(f"    unknown{i}: b\n" for i in range(keys))


def lines_of(size: int) -> str:
    """``size`` bytes of ``a: b`` lines: one problem or node each."""
    out, n, i = [], 0, 0
    while n < size:
        line = f"a{i}: b\n"
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out)[:size]


CASES: dict[str, Any] = {
    "alias-lists": lambda: alias_bomb_lists().encode(),
    "alias-maps": lambda: alias_bomb_maps().encode(),
    "problems-50k": lambda: many_problems(2_500).encode(),  # ~50 KB, every line a problem
    "lines-1m": lambda: lines_of(1 << 20).encode(),
    "lines-4m": lambda: lines_of((4 << 20) - 1024).encode(),
    "oversize-100m": lambda: b"x" * (100 << 20),
}


async def poll_version(stub: MachineServiceStub, seen: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        start = time.monotonic()
        try:
            await asyncio.wait_for(stub.Version(empty_pb2.Empty()), 30)
            seen.append(time.monotonic() - start)
        except (TimeoutError, GRPCError, OSError, StreamTerminatedError):
            seen.append(float("inf"))
        await asyncio.sleep(0.05)


async def apply(port: int, data: bytes) -> dict[str, Any]:
    channel = ClosingChannel("127.0.0.1", port, ssl=tls.insecure_client_context())
    stub = MachineServiceStub(channel)
    start = time.monotonic()
    try:
        await stub.ApplyConfiguration(machine_pb2.ApplyConfigurationRequest(data=data))
        result: dict[str, Any] = {"status": "OK", "message": ""}
    except GRPCError as exc:
        result = {"status": exc.status.name, "message": exc.message or ""}
    except (StreamTerminatedError, OSError) as exc:
        result = {"status": type(exc).__name__, "message": str(exc)}
    finally:
        channel.close()
    result["seconds"] = time.monotonic() - start
    result["message_bytes"] = len(result["message"].encode())
    result["message"] = result["message"][:8192]
    return result


async def main(port: int, names: list[str]) -> None:
    channel = ClosingChannel("127.0.0.1", port, ssl=tls.insecure_client_context())
    stub = MachineServiceStub(channel)
    seen: list[float] = []
    stop = asyncio.Event()
    poller = asyncio.ensure_future(poll_version(stub, seen, stop))
    while not seen and not poller.done():
        await asyncio.sleep(0.01)
    if poller.done():
        poller.result()  # the poll failed: say why
    print(json.dumps({"polling": seen[0]}), flush=True)
    results: dict[str, Any] = {}
    flood = names == ["flood"]
    while True:
        for name in CASES if flood else names:
            if name == "idle":  # only poll, for a while
                await asyncio.sleep(4)
                continue
            results[name] = await apply(port, CASES[name]())
            if flood:
                print(json.dumps({"sent": name}), flush=True)
        if not flood:
            break
    await asyncio.sleep(0.3)
    stop.set()
    await poller
    channel.close()
    print(json.dumps({"cases": results, "version": seen}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
