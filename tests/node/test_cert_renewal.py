"""Renewal of the node's API certificate before it expires, on a real PID 1.

The node is started with a short certificate lifetime and check period (hidden test options
``--cert-ttl`` and ``--cert-check-period``): once half of the lifetime has passed it issues a new
certificate from ``machine.ca`` in a child process and swaps it into the running server. A client
in the node's network namespace sees the served certificate change, and its connection opened
before the swap keeps working. The negative control (a fresh certificate is not renewed, however
often it is checked) drives the same :class:`CertRenewal` with a fake clock.

Also here, the two things that keep PID 1 small (bench/init_bench.py, idle RSS under 40 MiB):
certificates made by the issuer child (``python -m talos_init.api.issuer``), TLS contexts built
without ``cryptography``, and the common command line parsed without Typer.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from libtalos.secrets import CertKey
from talos_init.api.renewal import CertRenewal

from .conftest import Material

MTLS = r"machine API listening on :50000 \(mutual TLS\)"
RENEWED = r"machine API: server certificate renewed, valid until \S+Z$"

# Runs in the node's network namespace; one command per stdin line, one answer per stdout line:
# "fp" -> SHA-256 of the certificate served to a new verified TLS connection;
# "old" -> Version over the gRPC connection opened at start; "new" -> Version on a new one.
CLIENT = r"""
import asyncio, base64, hashlib, socket, ssl, sys
from google.protobuf import empty_pb2
from grpclib.client import Channel
from libtalos import talosconfig
from libtalos.api import tls
from libtalos.api._gen.machine.machine_grpc import MachineServiceStub

from pathlib import Path
cfg = talosconfig.load(Path(sys.argv[1]))
ctx_cfg = cfg.contexts[cfg.context]
b = lambda v: base64.b64decode(v)
ctx = tls.client_context(b(ctx_cfg.ca), b(ctx_cfg.crt), b(ctx_cfg.key))

def served():
    with socket.create_connection(("127.0.0.1", 50000), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            return hashlib.sha256(conn.getpeercert(binary_form=True)).hexdigest()

async def version(channel):
    reply = await MachineServiceStub(channel).Version(empty_pb2.Empty(), timeout=20)
    return reply.messages[0].version.tag

async def main():
    old = Channel("127.0.0.1", 50000, ssl=ctx)
    print("ready", await version(old), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "fp":
            print(served(), flush=True)
        elif command == "old":
            print("ok", await version(old), flush=True)
        elif command == "new":
            new = Channel("127.0.0.1", 50000, ssl=ctx)
            try:
                print("ok", await version(new), flush=True)
            finally:
                new.close()
        else:
            old.close()
            return

asyncio.run(main())
"""


class Client:
    def __init__(self, pid1: int, talosconfig: Path, script: Path) -> None:
        script.write_text(CLIENT)
        self.proc = subprocess.Popen(
            [
                "nsenter",
                f"--net=/proc/{pid1}/ns/net",
                "--",
                sys.executable,
                str(script),
                str(talosconfig),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line:
            assert self.proc.stderr is not None
            self.proc.kill()
            raise AssertionError(f"client failed: {self.proc.stderr.read()[-2000:]}")
        return line

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)  # waits, and closes the pipes


@pytest.mark.system
def test_served_certificate_is_renewed_and_clients_keep_working(
    start_node, material: Material, tmp_path: Path
) -> None:
    node, _state = start_node(
        "--cert-ttl", "8", "--cert-check-period", "0.5", config=material.controlplane
    )
    node.expect(MTLS)
    client = Client(node.pid1, material.talosconfig, tmp_path / "client.py")
    try:
        assert client.read().startswith("ready v"), "Version before any renewal"
        first = client.ask("fp")
        # Renewals are logged; one that happened after `first` was read changes what is served.
        # Each turn waits for a renewal line: no sleeping, and a bound of a few renewals.
        for _ in range(4):
            node.expect(RENEWED)
            served = client.ask("fp")
            if served != first:
                break
        else:
            raise AssertionError(f"the served certificate never changed:\n{node.transcript()}")
        # the connection opened before the swap still works, and so does a new one
        assert client.ask("old").startswith("ok v")
        assert client.ask("new").startswith("ok v")
        assert "certificate renewal failed" not in node.transcript()
    finally:
        client.close()


def _cert(tag: bytes) -> CertKey:
    return CertKey(b"crt-" + tag, b"key-" + tag)


def test_renewal_runs_at_half_life_only() -> None:
    """Negative control: checks on a fresh certificate never renew it; past half-life, one does."""
    now = [1000.0]
    issued: list[CertKey] = []
    installed: list[CertKey] = []
    log: list[str] = []

    async def reissue() -> tuple[CertKey, float, float]:
        cert = _cert(str(len(issued)).encode())
        issued.append(cert)
        return cert, now[0], now[0] + 100.0

    renewal = CertRenewal(
        (_cert(b"first"), 1000.0, 1100.0),
        reissue,
        installed.append,
        log.append,
        clock=lambda: now[0],
    )

    async def checks(n: int) -> list[bool]:
        return [await renewal.check() for _ in range(n)]

    for t in (1000.0, 1010.0, 1049.9):  # fresh: before half of its 100 s
        now[0] = t
        assert asyncio.run(checks(3)) == [False, False, False]
    assert issued == [] and installed == [] and log == []
    assert renewal.cert == _cert(b"first")

    now[0] = 1050.0  # half-life: renewed once, then the new certificate is fresh again
    assert asyncio.run(checks(3)) == [True, False, False]
    assert installed == issued == [_cert(b"0")]
    assert renewal.cert == _cert(b"0") and renewal.not_after == 1150.0
    assert len(log) == 1 and "renewed" in log[0]
    assert renewal.checks == 12 and renewal.renewals == 1


def test_failed_renewal_is_logged_and_retried() -> None:
    from libtalos.errors import TalosError

    attempts: list[int] = []
    log: list[str] = []

    async def reissue() -> tuple[CertKey, float, float]:
        attempts.append(1)
        if len(attempts) == 1:
            raise TalosError("trustd: no endpoint issued a certificate")
        return _cert(b"new"), 10.0, 20.0

    installed: list[CertKey] = []
    renewal = CertRenewal(
        (_cert(b"old"), 0.0, 10.0),
        reissue,
        installed.append,
        log.append,
        period=0.0,
        clock=lambda: 10.0,
    )

    async def two_turns() -> None:
        task = asyncio.ensure_future(renewal.run())
        while renewal.renewals == 0:
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(two_turns())
    assert len(attempts) == 2 and installed == [_cert(b"new")]
    assert "certificate renewal failed: trustd: no endpoint" in log[0]
    assert "renewed" in log[1]


# -- issuance in a child, and PID 1 without cryptography ---------------------------------------


def _issue(request: dict[str, object], timeout: float = 120) -> dict[str, object]:
    """talos_init.api.issuer.issue run with a Reaper that this test process polls (the node's
    signal loop does it on SIGCHLD); the child is this process's only one at that time."""
    from talos_init.api.issuer import issue
    from talos_init.reaper import Reaper

    reaper = Reaper()

    async def go() -> dict[str, object]:
        task = asyncio.ensure_future(issue(reaper, request, timeout=timeout))
        while not task.done():
            reaper.reap()
            await asyncio.sleep(0.01)
        return task.result()

    return asyncio.run(go())


def test_child_issues_node_certificate_from_machine_ca() -> None:
    from libtalos import pki

    ca = pki.new_ca(algorithm="ed25519", organizations=["talos"])
    made = _issue(
        {
            "op": "node",
            "ca_crt": ca.crt.decode(),
            "ca_key": ca.key.decode(),
            "addresses": ["127.0.0.1", "10.0.0.5"],
            "hostname": "cp-1",
            "sans": ["api.example"],
            "ttl": 600,
        }
    )
    crt = str(made["crt"]).encode()
    pki.check_key_matches(crt, str(made["key"]).encode(), "node certificate")
    pki.verify_chain(ca.crt, crt)
    info = pki.inspect(crt)
    assert {"127.0.0.1", "10.0.0.5"} <= set(info.ip_addresses)
    assert {"cp-1", "api.example"} <= set(info.dns_names)
    assert float(made["not_after"]) - float(made["not_before"]) == pytest.approx(600, abs=2)


def test_child_failure_names_the_problem_without_the_key() -> None:
    from libtalos import pki
    from talos_init.api.issuer import IssueError

    ca = pki.new_ca(algorithm="ed25519", organizations=["talos"])
    other = pki.new_ca(algorithm="ed25519", organizations=["talos"])
    with pytest.raises(IssueError) as err:  # a key that is not the certificate's
        _issue(
            {
                "op": "node",
                "ca_crt": ca.crt.decode(),
                "ca_key": other.key.decode(),
                "addresses": [],
                "hostname": "n",
            }
        )
    assert "machine" in err.value.message.lower() or "key" in err.value.message.lower()
    assert "PRIVATE KEY" not in err.value.message
    with pytest.raises(IssueError, match="unknown request"):
        _issue({"op": "bogus"})


NO_CRYPTO = r"""
import sys
from pathlib import Path
import talos_init.node, talos_init.wiring, talos_init.etcdmanager, talos_init.addresses
import talos_init.api.lifecycle, talos_init.api.adapter, talos_init.api.server
import talos_init.api.trustd, talos_init.api.renewal, talos_init.api.issuer
from libtalos.api import tls
crt, key, ca = (Path(p).read_bytes() for p in sys.argv[1:4])
tls.server_context(crt, key, client_ca=ca)
tls.client_context(ca, crt, key)
print(sorted(m for m in ("cryptography", "typer", "pyroute2") if m in sys.modules))
"""


def test_pid1_modules_and_tls_contexts_load_no_cryptography(tmp_path: Path) -> None:
    """The API server of PID 1 builds its TLS contexts from a Talos-labelled Ed25519 key with
    no cryptography loaded; negative control: the same check sees libtalos.pki load it."""
    from libtalos import pki
    from talos_init.api import node_server_cert

    ca = pki.new_ca(algorithm="ed25519", organizations=["talos"])
    cert = node_server_cert(ca, ["127.0.0.1"], "n")
    assert b"ED25519 PRIVATE KEY" in cert.key
    paths = []
    for name, data in (("crt", cert.crt), ("key", cert.key), ("ca", ca.crt)):
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    run = [sys.executable, "-c", NO_CRYPTO, *paths]
    out = subprocess.run(run, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    control = NO_CRYPTO.replace("import sys\n", "import sys\nimport libtalos.pki\n")
    out = subprocess.run(
        [sys.executable, "-c", control, *paths], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['cryptography']"


def test_tls_context_from_a_mismatched_key_names_it(tmp_path: Path) -> None:
    from libtalos import pki
    from libtalos.api import tls
    from libtalos.errors import PKIError
    from talos_init.api import node_server_cert

    ca = pki.new_ca(algorithm="ed25519", organizations=["talos"])
    a = node_server_cert(ca, ["127.0.0.1"], "a")
    b = node_server_cert(ca, ["127.0.0.1"], "b")
    with pytest.raises(PKIError, match="server"):
        tls.server_context(a.crt, b.key)


def test_child_that_does_not_answer_is_killed_and_reported() -> None:
    """A worker asking a trustd that accepts but never answers: the child is killed at the
    bound and the failure names it; no child is left behind."""
    import socket

    from talos_init.api.issuer import IssueError

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(IssueError, match="no answer within 2s"):
            _issue(
                {
                    "op": "worker",
                    "endpoints": [f"127.0.0.1:{port}"],
                    "token": "t.t",
                    "addresses": ["127.0.0.1"],
                    "hostname": "w",
                    "timeout": 600,
                },
                timeout=2,
            )
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # reaped: no child of ours is left


# -- PID 1 memory: the common command line is parsed without Typer ------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--mode", "container", "--state-dir", "/s"],
        [
            "--mode",
            "metal",
            "--state-dir",
            "/s",
            "--no-api",
            "--api-port",
            "5000",
            "--config",
            "http://127.0.0.1:1/c",
            "--services-dir",
            "/sv",
            "--no-isolate",
            "--echo-services",
            "--manage-network",
            "--fetch-timeout",
            "3.5",
            "--cmdline",
            "talos.hostname=x",
            "--no-reap-orphans",
            "--cert-ttl",
            "8",
            "--cert-check-period=0.5",
        ],
    ],
)
def test_fast_command_line_gives_what_typer_gives(argv: list[str], monkeypatch) -> None:
    """The fast path hands boot_node exactly what the Typer app would."""
    from libtalos.cli import run
    from libtalos.fastpath import parse
    from talos_init import app as app_module
    from talos_init import boot, cli

    seen: list[object] = []
    monkeypatch.setattr(boot, "boot_node", lambda options: seen.append(options) or 0)
    monkeypatch.setattr(app_module, "boot_node", lambda options: seen.append(options) or 0)
    assert parse(cli.command_line(), argv) is not None
    assert cli.main(argv) == 0  # the fast path
    assert run(app_module.app, argv, prog="talos-init") == 0
    assert len(seen) == 2 and seen[0] == seen[1]


def test_common_command_line_imports_no_typer(tmp_path: Path) -> None:
    """In a fresh interpreter: the common form, failing on a usage check of boot_node, leaves
    Typer and click unimported; an unusual form imports them (the probe can see them)."""
    probe = (
        "import sys; from talos_init.cli import main; rc = main(sys.argv[1:]); "
        "print(rc, sorted(m for m in ('typer', 'click', 'typer._click') if m in sys.modules))"
    )

    def imports(*argv: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    missing = str(tmp_path / "missing")
    assert imports("--mode", "container", "--state-dir", missing) == "2 []"
    assert imports("--mode", "bogus", "--state-dir", missing) == "2 ['typer', 'typer._click']"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--mode", "bogus", "--state-dir", "/s"],
        ["--mode", "container"],
        ["--mode", "container", "--state-dir", "/s", "--unknown"],
        ["--mode", "container", "--state", "/s"],
        ["--mode", "container", "--state-dir"],
    ],
)
def test_unusual_command_lines_go_to_typer(argv: list[str]) -> None:
    from libtalos.fastpath import parse
    from talos_init.cli import command_line

    assert parse(command_line(), argv) is None
