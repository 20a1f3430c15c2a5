"""Refusing hostile configs: talos-init as PID 1 in maintenance mode (its own PID, UTS and network
namespaces; the client runs in that network namespace), same run, same connection:

* the time to refuse a 4 MiB bad config, of two shapes: 4 MiB of ``a: b`` lines (refused when
  the YAML node count passes its limit) and 4 MiB under that limit (19 000 keys with 200-byte
  values, every key unknown: parsed, validated and reported in full), beside the refusal of a
  1 KiB bad config (the reference);
* Version latency (p50/p99) polled on a connection of its own while each kind is refused in a
  loop, beside Version on an idle node;
* PID 1's peak RSS over the run.

Run as root: ``python bench/run.py hostile`` or ``python bench/hostile_bench.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

HEAD = "version: v1alpha1\nmachine:\n    type: controlplane\n"
MIB = 1 << 20


def _lines(size: int) -> bytes:
    out, n, i = [], 0, 0
    while n < size:
        line = f"a{i}: b\n"
        out.append(line)
        n += len(line)
        i += 1
    return "".join(out)[:size].encode()


def _wide(size: int) -> bytes:
    value = "v" * 200
    keys = size // (len(value) + 20)
    return (HEAD + "".join(f"    k{i:07d}: {value}\n" for i in range(keys))).encode()[:size]


def _small() -> bytes:
    return (HEAD + "".join(f"    unknown{i}: b\n" for i in range(50))).encode()


KINDS = {
    "small": _small,
    "lines-4m": lambda: _lines(4 * MIB - 1024),
    "wide-4m": lambda: _wide(4 * MIB - 1024),
}


# --------------------------------------------------------------------------- client side


async def _client(port: int, runs: int) -> dict[str, Any]:
    from google.protobuf import empty_pb2
    from grpclib import GRPCError

    from libtalos.api import machine_pb2, tls
    from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
    from libtalos.api.channel import ClosingChannel

    ctx = tls.insecure_client_context()
    poll_ch = ClosingChannel("127.0.0.1", port, ssl=ctx)
    poll = MachineServiceStub(poll_ch)
    samples: list[float] = []
    stop = asyncio.Event()

    async def poller() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await poll.Version(empty_pb2.Empty(), timeout=60)
            samples.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)

    async def refuse(data: bytes) -> float:
        ch = ClosingChannel("127.0.0.1", port, ssl=ctx)
        start = time.perf_counter()
        try:
            await MachineServiceStub(ch).ApplyConfiguration(
                machine_pb2.ApplyConfigurationRequest(data=data), timeout=120
            )
            raise SystemExit("bench: a bad config was accepted")
        except GRPCError:
            return time.perf_counter() - start
        finally:
            ch.close()

    task = asyncio.ensure_future(poller())
    out: dict[str, Any] = {}
    await asyncio.sleep(2)
    out["idle"] = {"version": samples[:]}
    for name, make in KINDS.items():
        data = make()
        samples.clear()
        times = [await refuse(data) for _ in range(runs)]
        out[name] = {"bytes": len(data), "refuse": times, "version": samples[:]}
    stop.set()
    await task
    poll_ch.close()
    return out


# --------------------------------------------------------------------------- node side


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(asyncio.run(_client(args.client, args.runs))))
        return 0

    from init_bench import NODE_NS, TALOS_INIT, _pid1_below, _stop, _wait_line

    with tempfile.TemporaryDirectory() as work:
        argv_node = [*NODE_NS, TALOS_INIT, "--mode", "container", "--state-dir", work]
        proc = subprocess.Popen(argv_node, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        pid1 = _pid1_below(proc.pid)
        try:
            _wait_line(proc, "maintenance service listening on :50000")
            netns = ["nsenter", f"--net=/proc/{pid1}/ns/net", "--"]
            client = subprocess.run(
                [*netns, sys.executable, __file__, "--client", "50000", "--runs", str(args.runs)],
                capture_output=True,
                text=True,
                check=False,
                timeout=1800,
            )
            if client.returncode != 0:
                raise SystemExit(f"bench: client failed:\n{client.stderr}")
            status = Path(f"/proc/{pid1}/status").read_text()
            peak = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
        finally:
            _stop(proc, pid1)
    result = json.loads(client.stdout)

    small = statistics.median(result["small"]["refuse"])
    print(f"hostile configs to a maintenance-mode talos-init (median of {args.runs})")
    for name in ("lines-4m", "wide-4m"):
        took = statistics.median(result[name]["refuse"])
        print(
            f"  refuse {name:<9} ({result[name]['bytes'] / MIB:.1f} MiB) {took * 1000:8.1f} ms"
            f"   1 KiB bad config {small * 1000:6.1f} ms   ratio {took / small:6.1f}x"
        )
    idle = result["idle"]["version"]
    print(f"  Version idle: p50 {_p(idle, 0.5) * 1000:.2f} ms, p99 {_p(idle, 0.99) * 1000:.2f} ms")
    for name in KINDS:
        v = result[name]["version"]
        print(
            f"  Version while refusing {name:<9}: p50 {_p(v, 0.5) * 1000:7.2f} ms, "
            f"p99 {_p(v, 0.99) * 1000:7.2f} ms (p99 {_p(v, 0.99) / _p(idle, 0.99):5.1f}x idle), "
            f"max {max(v) * 1000:7.1f} ms, {len(v)} calls   (goal: max < 2 s)"
        )
    print(f"  PID 1 peak RSS over the run: {peak / 1024:.1f} MiB   (goal < 100 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
