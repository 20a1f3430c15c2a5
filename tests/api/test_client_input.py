"""talos-apply's bad input: endpoints, --tail, binary files, and --insecure to a configured node.

Each case checks the exit code (0 ok, 1 failure, 2 usage) and that the message names what is
wrong; none may end in "internal error".
"""

from __future__ import annotations

import io
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from libtalos.api import tls
from talos_apply.cli import main
from talos_init.api import node_server_cert


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert "internal error" not in err
    return code, err


# -- endpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://1.2.3.4", "without a scheme"),
        ("x:y:z", "has more than one ':'"),
        ("127.0.0.1:99999", "port 99999 is out of range (1-65535)"),
        ("a" * 5000, "is longer than 1024 characters"),
        ("a b", "contains whitespace"),
    ],
)
def test_bad_endpoint_flag_is_usage_error(talosconfig_for, capsys, value, reason):
    tc = talosconfig_for(["127.0.0.1"], ["127.0.0.1"])
    code, err = _run(capsys, "--talosconfig", str(tc), "-e", value, "version")
    assert code == 2
    assert "error: -e/--endpoints '" in err and reason in err
    code, err = _run(capsys, "version", "--talosconfig", str(tc), "--endpoints", value)
    assert code == 2 and reason in err  # the flag after the command too


def test_bad_insecure_node_is_usage_error(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("machine: {}\n")
    code, err = _run(capsys, "apply-config", "--insecure", "-n", "127.0.0.1:99999", "-f", str(f))
    assert code == 2
    assert "error: --nodes '127.0.0.1:99999': port 99999 is out of range" in err


def test_endpoint_forms_of_the_docs_reach_the_node(configured, talosconfig_for, capsys):
    """Negative control: host:port and [v6]-free host forms dial as before."""
    s, _node = configured()
    tc = talosconfig_for(["127.0.0.1:1"], [s.endpoint])
    code, err = _run(capsys, "--talosconfig", str(tc), "-e", s.endpoint, "version")
    assert (code, err) == (0, "")


def test_bad_talosconfig_endpoint_names_file_and_context(tmp_path, talosconfig_for, capsys):
    from libtalos import talosconfig

    tc = talosconfig_for(["127.0.0.1"], ["127.0.0.1"])
    cfg = talosconfig.load(tc)
    cfg.contexts["demo"].endpoints = ["10.5.0.2", "https://x:y:z"]
    talosconfig.save(cfg, tc)
    code, err = _run(capsys, "--talosconfig", str(tc), "version")
    assert code == 1
    assert f"error: {tc}: contexts.demo.endpoints[1]: endpoint 'https://x:y:z': " in err
    assert "config endpoint" in err  # the hint: how to repair it
    # ... and the file can be repaired with the tool itself
    assert main(["--talosconfig", str(tc), "config", "endpoint", "10.5.0.3"]) == 0
    assert talosconfig.load(tc).current().endpoints == ["10.5.0.3"]


# -- logs --tail --------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["99999999999999999999", "2147483648", "-2"])
def test_logs_tail_out_of_int32_is_usage_error(talosconfig_for, capsys, tail):
    tc = talosconfig_for(["127.0.0.1"], ["127.0.0.1"])
    code, err = _run(capsys, "--talosconfig", str(tc), "logs", "kubelet", "--tail", tail)
    assert code == 2
    assert "--tail: must be -1 (all) or a number of lines up to 2147483647" in err


def test_logs_tail_at_the_int32_bound_is_sent(configured, talosconfig_for, capsys):
    s, _node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    code, _err = _run(capsys, "--talosconfig", str(tc), "logs", "kubelet", "--tail", "2147483647")
    assert code == 0


# -- binary files -------------------------------------------------------------------------------

BINARY = [
    pytest.param(bytes(range(256)) * 8, "not a text file (contains NUL bytes)", id="random"),
    pytest.param(b"context: a\x00\n\xff\xfe", "not a text file (contains NUL bytes)", id="nul"),
    pytest.param(b"context: \xff\xfe\n", "not UTF-8 text (bad byte at offset 9)", id="latin"),
]


@pytest.mark.parametrize(("data", "message"), BINARY)
def test_binary_talosconfig_names_the_file(tmp_path, capsys, data, message):
    tc = tmp_path / "talosconfig"
    tc.write_bytes(data)
    code, err = _run(capsys, "--talosconfig", str(tc), "version", "-n", "127.0.0.1")
    assert (code, err.splitlines()[0]) == (1, f"error: {tc}: {message}")
    code, err = _run(capsys, "--talosconfig", str(tc), "config", "endpoint", "10.5.0.2")
    assert code == 1 and f"{tc}: {message}" in err
    assert tc.read_bytes() == data  # untouched


@pytest.mark.parametrize(("data", "message"), BINARY)
def test_binary_talosconfig_to_merge_names_the_file(
    tmp_path, talosconfig_for, capsys, data, message
):
    tc = talosconfig_for(["127.0.0.1"])
    before = tc.read_bytes()
    other = tmp_path / "other"
    other.write_bytes(data)
    code, err = _run(capsys, "--talosconfig", str(tc), "config", "merge", str(other))
    assert (code, err.splitlines()[0]) == (1, f"error: {other}: {message}")
    assert tc.read_bytes() == before


@pytest.mark.parametrize(("data", "message"), BINARY)
def test_binary_kubeconfig_names_the_file(
    configured, talosconfig_for, tmp_path, capsys, data, message
):
    s, _node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    kube = tmp_path / "kubeconfig"
    kube.write_bytes(data)
    code, err = _run(capsys, "--talosconfig", str(tc), "kubeconfig", str(kube))
    assert (code, err.splitlines()[0]) == (1, f"error: {kube}: {message}")
    assert kube.read_bytes() == data
    kube.unlink()  # negative control: without the bad file the same command works
    assert main(["--talosconfig", str(tc), "kubeconfig", str(kube)]) == 0
    assert b"clusters" in kube.read_bytes()


@pytest.mark.parametrize(("data", "message"), BINARY)
def test_apply_config_binary_stdin(maintenance, monkeypatch, capsys, data, message):
    s, node, _cert = maintenance()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, err = _run(capsys, "apply-config", "--insecure", "-n", s.endpoint, "--file", "-")
    assert (code, err.splitlines()[0]) == (1, f"error: <stdin>: {message}")
    assert node.accepted.empty()  # nothing was sent


def test_apply_config_text_stdin_is_sent_as_is(maintenance, cluster, monkeypatch):
    """Negative control: a UTF-8 config on stdin reaches the node byte for byte."""
    s, node, _cert = maintenance()
    text = cluster.configs["controlplane"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["apply-config", "--insecure", "-n", s.endpoint, "--file", "-"]) == 0
    assert node.accepted.get_nowait() == text


# -- --insecure to a configured node ------------------------------------------------------------


def test_insecure_apply_to_configured_node_says_so(configured, cluster, tmp_path, capsys):
    s, _node = configured()
    f = tmp_path / "cp.yaml"
    f.write_text(cluster.configs["controlplane"])
    code, err = _run(capsys, "apply-config", "--insecure", "-n", s.endpoint, "-f", str(f))
    assert code == 1
    assert f"error: {s.endpoint}: the node is already configured: it requires a client " in err
    assert "hint: drop --insecure and use the cluster's talosconfig" in err
    assert "StreamTerminatedError" not in err
    code, err = _run(capsys, "version", "--insecure", "-n", s.endpoint)
    assert code == 1 and "already configured" in err


class _TLSServer:
    """A blocking TLS server on loopback: each connection gets a handshake (OpenSSL sends its
    alerts, as Go's crypto/tls does) and is then closed (the asyncio server of talos-init drops
    a connection without its alert)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.dup() as raw:  # wrap_socket takes conn's descriptor
                try:
                    with self.context.wrap_socket(conn, server_side=True) as tconn:
                        tconn.recv(1)  # TLS 1.3: the client's certificate is checked here
                except (OSError, ssl.SSLError):
                    self._drain(raw)

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        """Read what the client sent before closing, so that the close is a FIN after the
        alert rather than a reset that may overtake it."""
        try:
            conn.settimeout(0.2)
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the thread
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def tls_server(cluster) -> Iterator[Callable[..., _TLSServer]]:
    started: list[_TLSServer] = []

    def start(*, client_ca: bool, version: ssl.TLSVersion) -> _TLSServer:
        cert = node_server_cert(cluster.bundle.talos_ca, ["127.0.0.1"], "node")
        ca = cluster.bundle.talos_ca.crt if client_ca else None
        context = tls.server_context(cert.crt, cert.key, ca)
        context.maximum_version = version
        server = _TLSServer(context)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"]
)
def test_insecure_to_a_server_that_requires_a_cert(tls_server, capsys, version):
    server = tls_server(client_ca=True, version=version)
    code, err = _run(capsys, "version", "--insecure", "-n", server.endpoint)
    assert code == 1 and "the node is already configured" in err


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"]
)
def test_insecure_to_a_server_that_just_hangs_up(tls_server, capsys, version):
    """Negative control: a server that asks for no certificate and closes is only unreachable."""
    server = tls_server(client_ca=False, version=version)
    code, err = _run(capsys, "version", "--insecure", "-n", server.endpoint)
    assert code == 1
    assert "no endpoint could be reached" in err and "configured" not in err


def test_certificate_required_alert_alone_is_enough(tls_server, monkeypatch, capsys):
    """Without the CertificateRequest note (a Python lacking the hook), TLS 1.3's
    ``certificate_required`` alert from the server still tells what happened."""
    from talos_apply import client

    monkeypatch.setattr(client.CertificateRequestWatch, "_message", lambda *_a: None)
    server = tls_server(client_ca=True, version=ssl.TLSVersion.TLSv1_3)
    code, err = _run(capsys, "version", "--insecure", "-n", server.endpoint)
    assert code == 1 and "the node is already configured" in err
