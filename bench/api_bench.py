"""Machine API on loopback: Version latency (p50/p99, one client) and throughput (50 concurrent
clients), through our server with and without a proxy hop, beside a bare grpclib server (same
TLS, a fixed reply: the ceiling for our stack) and grpcio with ECDSA certificates (the fastest
Python gRPC; it cannot use Talos's Ed25519 certificates,
docs/architecture.md#why-grpclib-not-grpcio). Also the apply-config round trip to a maintenance-mode
node.

Each server runs in its own process (``--serve``), so server and client do not share a GIL.
Run: ``python bench/run.py api`` or ``python bench/api_bench.py``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The in-memory node (tests/memory_node.py) is a test double: it lives with the tests, not in
# talos-init, and this benchmark (run from the repository, also as its own --serve children)
# borrows it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

LATENCY_CALLS = 400
THROUGHPUT_CALLS = 3000
CONCURRENCY = 50
APPLY_RUNS = 30


# --------------------------------------------------------------------------- servers


def _read(d: Path, name: str) -> bytes:
    return (d / name).read_bytes()


async def _serve(kind: str, d: Path) -> None:
    from libtalos.secrets import CertKey

    server_cert = CertKey(_read(d, "server.crt"), _read(d, "server.key"))
    ca = _read(d, "ca.crt")
    if kind in ("ours", "maintenance"):
        from memory_node import MemoryNode

        from talos_init.api import ApiServer, MaintenanceCert

        if kind == "ours":
            node = MemoryNode("bench", config_text=(d / "init.yaml").read_text())
            server: Any = ApiServer.configured(node, server_cert, ca)
        else:
            node = MemoryNode("bench")
            server = ApiServer.maintenance(node, MaintenanceCert.create(["127.0.0.1"]))
        port = await server.start("127.0.0.1", 0)
    elif kind == "bare":
        from grpclib.server import Server

        from libtalos.api import machine_pb2, tls
        from libtalos.api._gen.machine import machine_grpc

        reply = machine_pb2.VersionResponse(
            messages=[machine_pb2.Version(version=machine_pb2.VersionInfo(tag="bare"))]
        )

        class Echo(machine_grpc.MachineServiceBase):
            async def Version(self, stream: Any) -> None:  # noqa: N802 - proto name
                await stream.recv_message()
                await stream.send_message(reply)

        for name in list(machine_grpc.MachineServiceBase.__abstractmethods__):
            if name != "Version":
                setattr(Echo, name, None)
        Echo.__abstractmethods__ = frozenset()
        grpc_server = Server([Echo()])
        await grpc_server.start(
            "127.0.0.1", 0, ssl=tls.server_context(server_cert.crt, server_cert.key, ca)
        )
        port = grpc_server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    else:
        raise SystemExit(f"unknown server kind {kind}")
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def _serve_grpcio(d: Path) -> None:
    from concurrent import futures

    import grpc

    from libtalos.api import machine_pb2

    reply = machine_pb2.VersionResponse(
        messages=[machine_pb2.Version(version=machine_pb2.VersionInfo(tag="grpcio"))]
    ).SerializeToString()
    handler = grpc.method_handlers_generic_handler(
        "machine.MachineService",
        {
            "Version": grpc.unary_unary_rpc_method_handler(
                lambda _req, _ctx: reply,
                request_deserializer=lambda b: b,
                response_serializer=lambda b: b,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(_read(d, "ecdsa.key"), _read(d, "ecdsa.crt"))],
        root_certificates=_read(d, "ecdsa-ca.crt"),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.wait_for_termination()


# --------------------------------------------------------------------------- clients


async def _grpclib_bench(
    port: int, ssl_ctx: Any, metadata: list[tuple[str, str]]
) -> tuple[list[float], float]:
    from google.protobuf import empty_pb2
    from grpclib.client import Channel

    from libtalos.api._gen.machine.machine_grpc import MachineServiceStub

    channel = Channel("127.0.0.1", port, ssl=ssl_ctx)
    stub = MachineServiceStub(channel)
    req = empty_pb2.Empty()
    for _ in range(20):  # warm up (connection, TLS)
        await stub.Version(req, metadata=metadata)
    samples = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        await stub.Version(req, metadata=metadata)
        samples.append(time.perf_counter() - start)
    per_worker = THROUGHPUT_CALLS // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_worker):
            await stub.Version(req, metadata=metadata)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    rate = per_worker * CONCURRENCY / (time.perf_counter() - start)
    channel.close()
    return samples, rate


def _grpcio_bench(port: int, d: Path) -> tuple[list[float], float]:
    from concurrent import futures

    import grpc

    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(d, "ecdsa-ca.crt"),
        private_key=_read(d, "ecdsa-client.key"),
        certificate_chain=_read(d, "ecdsa-client.crt"),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        call = channel.unary_unary(
            "/machine.MachineService/Version",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        for _ in range(20):
            call(b"")
        samples = []
        for _ in range(LATENCY_CALLS):
            start = time.perf_counter()
            call(b"")
            samples.append(time.perf_counter() - start)
        per_worker = THROUGHPUT_CALLS // CONCURRENCY

        def worker() -> None:
            for _ in range(per_worker):
                call(b"")

        start = time.perf_counter()
        with futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            for f in [pool.submit(worker) for _ in range(CONCURRENCY)]:
                f.result()
        rate = per_worker * CONCURRENCY / (time.perf_counter() - start)
    return samples, rate


# --------------------------------------------------------------------------- orchestration


def _materials(d: Path) -> None:
    from libtalos import config as config_model
    from libtalos import pki
    from talos_init.api import node_server_cert

    bundle = pki.generate_secrets()
    ca = bundle.talos_ca
    server = node_server_cert(ca, ["127.0.0.1"], "bench")
    admin = pki.admin_client_cert(ca)
    inp = config_model.GenerateInput(cluster_name="bench", endpoint="https://127.0.0.1:6443")
    configs = config_model.generate(inp, bundle)
    files = {
        "ca.crt": ca.crt,
        "server.crt": server.crt,
        "server.key": server.key,
        "admin.crt": admin.crt,
        "admin.key": admin.key,
        "init.yaml": config_model.encode(configs["init"], comments=False).encode(),
    }
    ecdsa_ca = pki.new_ca(algorithm="ecdsa", organizations=["bench"], hash_name="sha256")
    ecdsa_server = pki.issue(ecdsa_ca, kind="server", ip_addresses=["127.0.0.1"])
    ecdsa_client = pki.issue(ecdsa_ca, kind="client")
    files |= {
        "ecdsa-ca.crt": ecdsa_ca.crt,
        "ecdsa.crt": ecdsa_server.crt,
        "ecdsa.key": ecdsa_server.key,
        "ecdsa-client.crt": ecdsa_client.crt,
        "ecdsa-client.key": ecdsa_client.key,
    }
    for name, data in files.items():
        fd = os.open(d / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def _start(kind: str, d: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, str(d)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"bench: the {kind} server did not start")
    return proc, int(line)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(label: str, samples: list[float], rate: float, ref: dict[str, float] | None) -> None:
    p50, p99 = statistics.median(samples), _pct(samples, 0.99)
    text = f"{label:<40} p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  {rate:7.0f} calls/s"
    if ref is not None:
        text += (
            f"   vs bare grpclib: p50 x{p50 / ref['p50']:.2f}, throughput x{rate / ref['rate']:.2f}"
        )
    print(text, flush=True)


def _apply_round_trip(port: int, text: str) -> tuple[float, float]:
    from google.protobuf import empty_pb2

    from libtalos.api import machine_pb2, tls
    from libtalos.api.channel import ClosingChannel

    async def run() -> tuple[float, float]:
        apply_s, version_s = [], []
        for _ in range(APPLY_RUNS):
            ch = ClosingChannel("127.0.0.1", port, ssl=tls.insecure_client_context(), pins=[])
            from libtalos.api._gen.machine.machine_grpc import MachineServiceStub

            stub = MachineServiceStub(ch)
            start = time.perf_counter()
            await stub.Version(empty_pb2.Empty())
            version_s.append(time.perf_counter() - start)
            ch.close()
            ch = ClosingChannel("127.0.0.1", port, ssl=tls.insecure_client_context(), pins=[])
            stub = MachineServiceStub(ch)
            start = time.perf_counter()
            await stub.ApplyConfiguration(machine_pb2.ApplyConfigurationRequest(data=text.encode()))
            apply_s.append(time.perf_counter() - start)
            ch.close()
        return statistics.median(apply_s), statistics.median(version_s)

    return asyncio.run(run())


def main() -> None:
    from libtalos.api import tls

    print(
        f"== machine API on loopback (latency: {LATENCY_CALLS} sequential Version calls; "
        f"throughput: {THROUGHPUT_CALLS} calls from {CONCURRENCY} concurrent clients)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _materials(d)
        client_ctx = tls.client_context(
            _read(d, "ca.crt"), _read(d, "admin.crt"), _read(d, "admin.key")
        )
        results: dict[str, tuple[list[float], float]] = {}
        procs = []
        try:
            bare, bare_port = _start("bare", d)
            procs.append(bare)
            results["bare"] = asyncio.run(_grpclib_bench(bare_port, client_ctx, []))
            ours, ours_port = _start("ours", d)
            procs.append(ours)
            results["ours"] = asyncio.run(_grpclib_bench(ours_port, client_ctx, []))
            results["ours+hop"] = asyncio.run(
                _grpclib_bench(ours_port, client_ctx, [("nodes", f"127.0.0.1:{ours_port}")])
            )
            try:
                import grpc  # noqa: F401 - only to see whether the reference is available
            except ImportError:
                grpcio = None
            else:
                gp, gport = _start("grpcio", d)
                procs.append(gp)
                grpcio = _grpcio_bench(gport, d)
            maint, mport = _start("maintenance", d)
            procs.append(maint)
            apply_s, version_s = _apply_round_trip(mport, (d / "init.yaml").read_text())
        finally:
            for p in procs:
                p.kill()
                p.wait()
        ref = {"p50": statistics.median(results["bare"][0]), "rate": results["bare"][1]}
        _report("bare grpclib (Ed25519 mTLS, fixed reply)", *results["bare"], None)
        _report("talos-init api (Ed25519 mTLS)", *results["ours"], ref)
        _report("talos-init api, nodes=[self] (proxy hop)", *results["ours+hop"], ref)
        if grpcio is None:
            print("grpcio (ECDSA mTLS): not installed, skipped (pip install grpcio)")
        else:
            _report("grpcio (ECDSA mTLS; Ed25519 unsupported)", *grpcio, ref)
        print(
            f"{'apply-config round trip (maintenance)':<40} p50 {apply_s * 1000:6.2f} ms"
            f"   vs Version on a new connection: {version_s * 1000:6.2f} ms"
            f" (x{apply_s / version_s:.2f}; includes strict load + validation)"
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        kind, folder = sys.argv[2], Path(sys.argv[3])
        if kind == "grpcio":
            _serve_grpcio(folder)
        else:
            asyncio.run(_serve(kind, folder))
    else:
        main()
