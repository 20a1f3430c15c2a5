"""The time service: a real SNTP query over UDP to a small SNTP server on loopback (in the test
session's network namespace), through the API and ``talosctl time``.

The server below answers RFC 4330 client packets with a clock set an hour ahead, so that the
reply's time can only have come from it; a silent socket and a kiss-o'-death server are the
negative controls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libtalos.api import tls
from libtalos.api.channel import ClosingChannel
from talos_init.api.time import NtpError, parse_server, query
from talosctl.cli import main

NTP_EPOCH = 2_208_988_800
AHEAD = 3600.0  # the test server's clock runs this far ahead of the real one
HERE = Path(__file__).resolve().parent / "independent"


class SntpServer:
    """Answers each client packet with a server packet (stratum ``stratum``), in a thread."""

    def __init__(self, stratum: int = 2, answer: bool = True) -> None:
        self.stratum = stratum
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            if len(data) < 48 or data[0] & 7 != 3:
                continue
            self.requests += 1
            if not self.answer:
                continue
            now = time.time() + AHEAD
            whole, frac = int(now) + NTP_EPOCH, int((now % 1) * (1 << 32))
            origin = data[40:48]  # the client's transmit field, echoed
            ref = b"KISS" if self.stratum == 0 else b"TEST"
            reply = (
                struct.pack("!BBbb", 0x24, self.stratum, 4, -20)
                + struct.pack("!II", 0, 0)
                + ref
                + struct.pack("!II", whole, frac)
                + origin
                + struct.pack("!IIII", whole, frac, whole, frac)
            )
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def sntp() -> Iterator[SntpServer]:
    server = SntpServer()
    yield server
    server.close()


def test_query_gets_the_servers_time(sntp: SntpServer) -> None:
    got = asyncio.run(query(sntp.address))
    assert sntp.requests == 1
    assert got.stratum == 2
    assert abs(got.remote - got.local - AHEAD) < 60  # the server's clock, not ours
    assert abs(got.local - time.time()) < 60


def test_query_failures_are_errors() -> None:
    silent = SntpServer(answer=False)
    kiss = SntpServer(stratum=0)
    try:
        with pytest.raises(NtpError, match="no answer within"):
            asyncio.run(query(silent.address, timeout=0.5))
        assert silent.requests == 1  # it was asked: the silence is the server's
        with pytest.raises(NtpError, match="kiss code KISS"):
            asyncio.run(query(kiss.address))
    finally:
        silent.close()
        kiss.close()


def test_server_names_parse() -> None:
    assert parse_server("pool.ntp.org") == ("pool.ntp.org", 123)
    assert parse_server("10.0.0.1:1123") == ("10.0.0.1", 1123)
    assert parse_server("[::1]:124") == ("::1", 124)
    assert parse_server("fd00::1") == ("fd00::1", 123)
    for bad, why in [
        ("", "empty"),
        ("a" * 10_000, "limit"),
        ("x\0y", "control"),
        ("host:0", "port"),
        ("host:http", "port"),
        ("[::1", "HOST"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_server(bad)


def _talosctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_time_check_command(
    configured: Any, talosconfig_for: Any, sntp: SntpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    s, _node = configured()
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    code, out, err = _talosctl(capsys, "--talosconfig", tc, "time", "--check", sntp.address)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["NODE", "NTP-SERVER", "NODE-TIME", "NTP-SERVER-TIME"]
    cells = row.split("   ")
    cells = [c.strip() for c in cells if c.strip()]
    assert cells[:2] == [s.endpoint, sntp.address], row
    node_time = dt.datetime.strptime(cells[2].split(".")[0].split(" +")[0], "%Y-%m-%d %H:%M:%S")
    server_time = dt.datetime.strptime(cells[3].split(".")[0].split(" +")[0], "%Y-%m-%d %H:%M:%S")
    assert cells[2].endswith(" +0000 UTC") and cells[3].endswith(" +0000 UTC")
    assert abs((server_time - node_time).total_seconds() - AHEAD) < 60, row
    # the config's servers (none: pool.ntp.org, unreachable from this namespace) -> an error
    code, out, err = _talosctl(capsys, "--talosconfig", tc, "time")
    assert code == 1 and "pool.ntp.org" in err, (out, err)


def test_time_check_refuses_bad_servers(
    configured: Any, talosconfig_for: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s, _node = configured()
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    for bad in ("../../etc/passwd:x", "n" * 10_000, "a\x01b"):
        code, out, err = _talosctl(capsys, "--talosconfig", tc, "time", "-c", bad)
        assert code == 1 and "server" in err and out.count("\n") <= 1, (bad[:20], out, err)
        assert len(err) < 2000


def test_time_uses_the_configured_server(
    configured: Any,
    talosconfig_for: Any,
    cluster: Any,
    sntp: SntpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    data = yaml.safe_load(cluster.configs["init"])
    data["machine"]["time"] = {"servers": [sntp.address, "192.0.2.1"]}
    s, node = configured()
    node._config = yaml.safe_dump(data)
    tc = str(talosconfig_for([s.endpoint], [s.endpoint]))
    code, out, err = _talosctl(capsys, "--talosconfig", tc, "time")
    assert code == 0, err
    assert sntp.address in out.splitlines()[1] and sntp.requests == 1


def test_time_replies_decode_with_betterproto(
    configured: Any, cluster: Any, admin: Any, sntp: SntpServer
) -> None:
    pytest.importorskip("betterproto", reason="betterproto==2.0.0b7 (requirements-dev.txt)")
    sys.path.insert(0, str(HERE))
    try:
        bp_time = importlib.import_module("_gen.time")
    finally:
        sys.path.remove(str(HERE))
    s, _node = configured()
    ctx = tls.client_context(cluster.bundle.talos_ca.crt, admin.crt, admin.key)

    async def go() -> Any:
        ch = ClosingChannel("127.0.0.1", s.port, ssl=ctx, pins=[])
        try:
            stub = bp_time.TimeServiceStub(ch)
            return await stub.time_check(
                bp_time.TimeRequest(server=sntp.address), metadata={"nodes": s.endpoint}
            )
        finally:
            ch.close()

    reply = asyncio.run(go())
    (msg,) = reply.messages
    assert msg.metadata.hostname == s.endpoint and msg.server == sntp.address
    ahead = (msg.remotetime - msg.localtime).total_seconds()
    assert abs(ahead - AHEAD) < 60, ahead
