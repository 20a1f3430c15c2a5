"""``config endpoint|node|merge|contexts|context|add`` on a talosconfig, and the talosctl routes."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from libtalos import pki, talosconfig
from talos_apply.cli import main


@pytest.fixture
def tc(tmp_path, cluster, admin):
    path = tmp_path / "talosconfig"
    cfg = talosconfig.for_cluster(
        "demo", ["127.0.0.1"], cluster.bundle.talos_ca.crt, admin.crt, admin.key
    )
    talosconfig.save(cfg, path)
    return path


def test_endpoint_and_node_replace_lists(tc):
    assert main(["--talosconfig", str(tc), "config", "endpoint", "10.5.0.2", "10.5.0.3"]) == 0
    assert main(["config", "node", "10.5.0.4", "--talosconfig", str(tc)]) == 0
    ctx = talosconfig.load(tc).current()
    assert ctx.endpoints == ["10.5.0.2", "10.5.0.3"] and ctx.nodes == ["10.5.0.4"]
    assert main(["--talosconfig", str(tc), "config", "node"]) == 0
    assert talosconfig.load(tc).current().nodes == []
    assert stat.S_IMODE(os.stat(tc).st_mode) == 0o600


def test_merge_renames_and_switches(tc, tmp_path, capsys):
    assert main(["--talosconfig", str(tc), "config", "merge", str(tc)]) == 0
    assert 'renamed talosconfig context "demo" -> "demo-1"' in capsys.readouterr().err
    cfg = talosconfig.load(tc)
    assert set(cfg.contexts) == {"demo", "demo-1"} and cfg.context == "demo-1"


def test_contexts_table_and_switch(tc, capsys):
    main(["--talosconfig", str(tc), "config", "merge", str(tc)])
    capsys.readouterr()
    assert main(["--talosconfig", str(tc), "config", "context", "demo"]) == 0
    assert main(["--talosconfig", str(tc), "config", "contexts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CURRENT", "NAME", "ENDPOINTS", "NODES"]
    assert lines[1].split()[:2] == ["*", "demo"]
    assert main(["--talosconfig", str(tc), "config", "context", "nosuch"]) == 2


def test_add_context_from_pem_files(tc, tmp_path, cluster, admin):
    for name, data in (
        ("ca.crt", cluster.bundle.talos_ca.crt),
        ("a.crt", admin.crt),
        ("a.key", admin.key),
    ):
        (tmp_path / name).write_bytes(data)
    args = [
        "--talosconfig",
        str(tc),
        "config",
        "add",
        "second",
        "--ca",
        str(tmp_path / "ca.crt"),
        "--crt",
        str(tmp_path / "a.crt"),
        "--key",
        str(tmp_path / "a.key"),
    ]
    assert main(args) == 0
    ctx = talosconfig.load(tc).contexts["second"]
    assert pki.load_certificate(base64.b64decode(ctx.crt))
    assert main(args) == 2  # exists already


def test_add_rejects_non_pem(tc, tmp_path, capsys):
    (tmp_path / "x").write_text("hello")
    args = [
        "--talosconfig",
        str(tc),
        "config",
        "add",
        "bad",
        "--ca",
        str(tmp_path / "x"),
        "--crt",
        str(tmp_path / "x"),
        "--key",
        str(tmp_path / "x"),
    ]
    assert main(args) == 2
    assert "not a PEM file" in capsys.readouterr().err
    assert "bad" not in talosconfig.load(tc).contexts


def test_talosctl_routes_seed_command_lines(configured, talosconfig_for, tmp_path, capsys):
    from talosctl.cli import main as talosctl

    s, node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert talosctl(["config", "endpoint", s.endpoint, "--talosconfig", str(tc)]) == 0
    assert talosctl(["version", "--talosconfig", str(tc), "--nodes", s.endpoint]) == 0
    assert "Tag:" in capsys.readouterr().out
    assert talosctl(["bootstrap", "--talosconfig", str(tc)]) == 0
    assert ("bootstrap", None) in node.actions


def test_talosctl_insecure_apply(maintenance, cluster, tmp_path):
    from talosctl.cli import main as talosctl

    s, node, _cert = maintenance()
    f = tmp_path / "cp0.yaml"
    f.write_text(cluster.configs["controlplane"])
    assert talosctl(["apply-config", "--insecure", "--nodes", s.endpoint, "--file", str(f)]) == 0
    assert node.accepted.get_nowait() == cluster.configs["controlplane"]


def test_nodes_required(tc, capsys):
    assert main(["--talosconfig", str(tc), "version"]) == 2
    assert "nodes are not set" in capsys.readouterr().err


def test_insecure_needs_exactly_one_node(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("machine: {}\n")
    assert main(["apply-config", "--insecure", "-n", "a,b", "-f", str(f)]) == 2
    assert "exactly one node" in capsys.readouterr().err


def test_bad_fingerprint_syntax_is_usage_error(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("machine: {}\n")
    code = main(
        [
            "apply-config",
            "--insecure",
            "-n",
            "127.0.0.1:1",
            "-f",
            str(f),
            "--cert-fingerprint",
            "not-base64!",
        ]
    )
    assert code == 2
    assert "--cert-fingerprint" in capsys.readouterr().err


def test_unreachable_node_is_failure_with_reason(tmp_path, capsys):
    import socket

    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        f = tmp_path / "c.yaml"
        f.write_text("machine: {}\n")
        assert main(["apply-config", "--insecure", "-n", f"127.0.0.1:{port}", "-f", str(f)]) == 1
    assert "no endpoint could be reached" in capsys.readouterr().err


def test_talosctl_aliases(tc):
    assert main(["--talosconfig", str(tc), "config", "endpoints", "10.5.0.9"]) == 0
    assert main(["--talosconfig", str(tc), "config", "nodes", "10.5.0.8"]) == 0
    ctx = talosconfig.load(tc).current()
    assert ctx.endpoints == ["10.5.0.9"] and ctx.nodes == ["10.5.0.8"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1.2.3.4:99999", "port 99999 is out of range (1-65535)"),
        ("https://1.2.3.4", "must be host or host:port, without a scheme"),
        ("x:y:z", "has more than one ':'"),
        ("a b", "contains whitespace"),
    ],
)
def test_endpoint_is_validated_before_storing(tc, capsys, value, reason):
    before = tc.read_bytes()
    assert main(["--talosconfig", str(tc), "config", "endpoint", "10.5.0.2", value]) == 2
    err = capsys.readouterr().err
    assert f"error: ENDPOINTS {value!r}: " in err and reason in err
    assert tc.read_bytes() == before


def test_endpoint_forms_talosctl_takes_are_stored(tc):
    values = ["10.5.0.2", "10.5.0.3:50000", "[fd00::1]:50000", "fd00::2", "node-1.example.org"]
    assert main(["--talosconfig", str(tc), "config", "endpoint", *values]) == 0
    assert talosconfig.load(tc).current().endpoints == values


def _pem_files(tmp_path, cluster, admin):
    files = {}
    for name, data in (
        ("ca.crt", cluster.bundle.talos_ca.crt),
        ("a.crt", admin.crt),
        ("a.key", admin.key),
        ("other.key", pki.admin_client_cert(cluster.bundle.talos_ca).key),
    ):
        (tmp_path / name).write_bytes(data)
        files[name] = str(tmp_path / name)
    garbled = tmp_path / "garbled.crt"
    garbled.write_bytes(admin.crt.replace(b"\n", b"\n!", 3))
    files["garbled.crt"] = str(garbled)
    return files


def _add(tc, name, ca, crt, key):
    return main(
        ["--talosconfig", str(tc), "config", "add", name, "--ca", ca, "--crt", crt, "--key", key]
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "NAME (the context name) must not be empty or only whitespace"),
        ("   ", "NAME (the context name) must not be empty or only whitespace"),
        ("a\nb", "NAME (the context name) 'a\\nb' contains a control character"),
    ],
)
def test_add_refuses_blank_context_name(tc, tmp_path, cluster, admin, capsys, name, message):
    f = _pem_files(tmp_path, cluster, admin)
    before = tc.read_bytes()
    assert _add(tc, name, f["ca.crt"], f["a.crt"], f["a.key"]) == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert tc.read_bytes() == before


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (("a.key", "a.crt", "a.key"), "--ca {ca}: no CERTIFICATE block found"),
        (("ca.crt", "a.key", "a.crt"), "--crt {crt}: no CERTIFICATE block found"),  # swapped
        (("ca.crt", "garbled.crt", "a.key"), "--crt {crt}: garbled PEM"),
        (("ca.crt", "a.crt", "a.crt"), "--key {key}: no PRIVATE KEY block found"),
        (
            ("ca.crt", "a.crt", "other.key"),
            "--crt {crt} and --key {key}: the certificate and the private key do not match",
        ),
    ],
)
def test_add_checks_cert_and_key(tc, tmp_path, cluster, admin, capsys, files, message):
    f = _pem_files(tmp_path, cluster, admin)
    ca, crt, key = (f[n] for n in files)
    before = tc.read_bytes()
    assert _add(tc, "second", ca, crt, key) == 2
    err = capsys.readouterr().err
    assert f"error: {message.format(ca=ca, crt=crt, key=key)}" in err
    assert tc.read_bytes() == before
    for line in admin.key.decode().splitlines()[1:-1]:
        assert line not in err  # no key material in the message
    # negative control: the right files in the right flags are accepted
    assert _add(tc, "second", f["ca.crt"], f["a.crt"], f["a.key"]) == 0
    assert "second" in talosconfig.load(tc).contexts
