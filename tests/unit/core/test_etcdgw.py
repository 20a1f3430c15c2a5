"""libtalos.etcdgw against a fake etcd gateway: requests on the wire, answers decoded, and etcd's
refusals mapped to a code (``unhealthy cluster`` -> UNHEALTHY; any other refusal -> None), also
through talos-init's member calls over mutual TLS."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from libtalos import etcdgw, pki
from libtalos.errors import NetworkError

UNHEALTHY_ANSWER = {
    "error": "etcdserver: unhealthy cluster",
    "code": 14,
    "message": "etcdserver: unhealthy cluster",
}
NOT_FOUND_ANSWER = {
    "error": "etcdserver: member not found",
    "code": 5,
    "message": "etcdserver: member not found",
}
MEMBERS = {
    "members": [
        {"ID": "10276657743932975437", "name": "cp1", "peerURLs": ["https://10.5.0.2:2380"]},
        {"ID": "2", "peerURLs": ["https://10.5.0.3:2380"]},
    ]
}


class FakeGateway:
    """Answers POST /v3/<path> with ``answers[path]`` (status, JSON) and records each request."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.requests: list[tuple[str, Any]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gateway.requests.append((self.path, body))
                status, answer = gateway.answers.get(self.path, (404, {"message": "Not Found"}))
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    fake = FakeGateway()
    yield fake
    fake.close()


def _client(fake: FakeGateway) -> etcdgw.Client:
    return etcdgw.Client([etcdgw.Endpoint("http", "127.0.0.1", fake.port)], timeout=5.0)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("etcdserver: unhealthy cluster", etcdgw.UNHEALTHY),
        ("etcdserver: member not found", None),  # negative control: another refusal
        ("etcdserver: request timed out", None),
        ("etcdserver: unhealthy clusters are fine", None),  # etcd's message, not a substring
        ("", None),
    ],
)
def test_error_code_of_etcd_messages(message: str, code: str | None) -> None:
    assert etcdgw.error_code(message) == code


def test_unhealthy_refusal_carries_its_code(gateway: FakeGateway) -> None:
    gateway.answers["/v3/cluster/member/remove"] = (503, UNHEALTHY_ANSWER)
    client = _client(gateway)
    try:
        with pytest.raises(etcdgw.EtcdError) as refused:
            client.member_remove(10276657743932975437)
    finally:
        client.close()
    assert refused.value.code == etcdgw.UNHEALTHY == "unhealthy"
    assert refused.value.message == (
        f"etcd http://127.0.0.1:{gateway.port}: cluster/member/remove: "
        "HTTP 503: etcdserver: unhealthy cluster"
    )
    assert isinstance(refused.value, NetworkError)  # talos-vip's exit code for etcd failures
    assert gateway.requests == [("/v3/cluster/member/remove", {"ID": "10276657743932975437"})]


def test_other_refusals_and_failures_have_no_code(gateway: FakeGateway) -> None:
    """Negative controls: a different refusal, an error in a 200 answer, a non-JSON answer and
    an endpoint that does not answer all raise EtcdError without a code."""
    gateway.answers["/v3/cluster/member/remove"] = (404, NOT_FOUND_ANSWER)
    gateway.answers["/v3/kv/range"] = (200, {"error": "etcdserver: unhealthy clusters are fine"})
    client = _client(gateway)
    try:
        with pytest.raises(etcdgw.EtcdError) as refused:
            client.member_remove(7)
        assert refused.value.code is None
        assert refused.value.message.endswith("HTTP 404: etcdserver: member not found")
        with pytest.raises(etcdgw.EtcdError) as in_ok:
            client.range_prefix("/a")
        assert in_ok.value.code is None and "HTTP 200:" in in_ok.value.message
        gateway.answers["/v3/kv/deleterange"] = (503, b"etcdserver: unhealthy cluster")
        with pytest.raises(etcdgw.EtcdError) as not_json:
            client.delete("/a")
        assert not_json.value.code is None
        assert not_json.value.message.endswith("kv/deleterange: answer is not JSON (HTTP 503)")
    finally:
        client.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    unreachable = etcdgw.Client([etcdgw.Endpoint("http", "127.0.0.1", closed)], timeout=2.0)
    with pytest.raises(etcdgw.EtcdError) as down:
        unreachable.member_list()
    assert down.value.code is None
    assert down.value.message == f"etcd http://127.0.0.1:{closed}: cluster/member/list: " + (
        "ConnectionRefusedError"
    )


def test_member_calls_on_the_wire(gateway: FakeGateway) -> None:
    gateway.answers["/v3/cluster/member/list"] = (200, MEMBERS)
    gateway.answers["/v3/cluster/member/add"] = (200, {"header": {}, **MEMBERS})
    client = _client(gateway)
    try:
        assert client.member_list() == MEMBERS["members"]
        assert client.member_add(["https://10.5.0.3:2380"]) == MEMBERS["members"]
    finally:
        client.close()
    assert gateway.requests == [
        ("/v3/cluster/member/list", {}),
        ("/v3/cluster/member/add", {"peerURLs": ["https://10.5.0.3:2380"]}),
    ]


@pytest.fixture
def tls_gateway(tmp_path: Path) -> Iterator[tuple[FakeGateway, Any]]:
    """A gateway over mutual TLS with a node's etcd certificates, and its talos-init layout."""
    from libtalos.k8s.etcd import issue_etcd_certs
    from talos_init import etcd

    ca = pki.new_ca(organizations=["etcd"])
    certs = issue_etcd_certs(ca, hostname="cp1", ips=["127.0.0.1"])
    for name, (data, _mode) in certs.files().items():
        (tmp_path / name).write_bytes(data)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server.load_verify_locations(cafile=tmp_path / "ca.crt")
    server.verify_mode = ssl.CERT_REQUIRED  # as etcd: the client certificate is required
    fake = FakeGateway(server)
    yield fake, etcd.EtcdLayout(tmp_path, tmp_path / "data")
    fake.close()


def test_talos_init_member_calls_and_unhealthy_code(
    tls_gateway: tuple[FakeGateway, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from talos_init import etcd

    fake, layout = tls_gateway
    monkeypatch.setattr(etcd, "CLIENT_PORT", fake.port)
    fake.answers["/v3/cluster/member/list"] = (200, MEMBERS)
    fake.answers["/v3/cluster/member/add"] = (200, MEMBERS)
    fake.answers["/v3/cluster/member/remove"] = (503, UNHEALTHY_ANSWER)
    assert asyncio.run(etcd.member_list(layout)) == MEMBERS["members"]
    added = asyncio.run(etcd.member_add(layout, "127.0.0.1", "https://10.5.0.3:2380"))
    assert added == {"cp1": ["https://10.5.0.2:2380"], "": ["https://10.5.0.3:2380"]}
    with pytest.raises(etcd.EtcdError) as refused:
        asyncio.run(etcd.member_remove(layout, 2))
    assert refused.value.code == etcd.UNHEALTHY
    assert "unhealthy cluster" in refused.value.message
    fake.answers["/v3/cluster/member/remove"] = (404, NOT_FOUND_ANSWER)
    with pytest.raises(etcd.EtcdError) as other:
        asyncio.run(etcd.member_remove(layout, 2))
    assert other.value.code is None  # negative control
    assert [path for path, _ in fake.requests] == [
        "/v3/cluster/member/list",
        "/v3/cluster/member/add",
        "/v3/cluster/member/remove",
        "/v3/cluster/member/remove",
    ]
    assert fake.requests[-1][1] == {"ID": "2"}
