"""Configured mode end to end: talos-apply over mutual TLS against servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import stat
import threading
import time

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from libtalos import pki, talosconfig
from talos_apply.cli import main


def _cli(*args: str) -> int:
    return main(list(args))


# ------------------------------------------------------------------ mutual TLS


def test_version_over_mtls_tags_node(configured, talosconfig_for, capsys):
    s, _node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "version") == 0
    out = capsys.readouterr().out
    assert f"NODE:        {s.endpoint}" in out and "Tag:         v0.9.0-py" in out


def test_no_client_certificate_refused(configured):
    from google.protobuf import empty_pb2

    from libtalos.api import tls
    from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
    from libtalos.api.channel import ClosingChannel

    s, _node = configured()

    async def call():
        ch = ClosingChannel("127.0.0.1", s.port, ssl=tls.insecure_client_context(), pins=[])
        try:
            await MachineServiceStub(ch).Version(empty_pb2.Empty(), timeout=10)
        finally:
            ch.close()

    with pytest.raises(Exception) as err:
        asyncio.run(call())
    assert "GRPCError" not in type(err.value).__name__  # refused in the handshake, no RPC ran


def test_client_cert_from_other_ca_refused(configured, other_cluster, cluster, tmp_path, capsys):
    s, _node = configured()
    stranger = pki.admin_client_cert(other_cluster.bundle.talos_ca)
    cfg = talosconfig.for_cluster(
        "x", [s.endpoint], cluster.bundle.talos_ca.crt, stranger.crt, stranger.key
    )
    cfg.contexts["x"].nodes = [s.endpoint]
    talosconfig.save(cfg, tmp_path / "tc")
    assert _cli("--talosconfig", str(tmp_path / "tc"), "version") == 1
    assert "no endpoint could be reached" in capsys.readouterr().err


def test_expired_client_cert_refused(configured, cluster, tmp_path, capsys):
    s, _node = configured()
    past = pki.FixedClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    old = pki.issue(cluster.bundle.talos_ca, kind="client", ttl=dt.timedelta(hours=1), clock=past)
    cfg = talosconfig.for_cluster("x", [s.endpoint], cluster.bundle.talos_ca.crt, old.crt, old.key)
    cfg.contexts["x"].nodes = [s.endpoint]
    talosconfig.save(cfg, tmp_path / "tc")
    assert _cli("--talosconfig", str(tmp_path / "tc"), "version") == 1
    assert "no endpoint could be reached" in capsys.readouterr().err


def test_server_from_other_ca_refused_by_client(configured, other_cluster, tmp_path, capsys):
    s, _node = configured()
    admin = pki.admin_client_cert(other_cluster.bundle.talos_ca)
    cfg = talosconfig.for_cluster(
        "x", [s.endpoint], other_cluster.bundle.talos_ca.crt, admin.crt, admin.key
    )
    cfg.contexts["x"].nodes = [s.endpoint]
    talosconfig.save(cfg, tmp_path / "tc")
    assert _cli("--talosconfig", str(tmp_path / "tc"), "version") == 1
    assert "TLS" in capsys.readouterr().err


def test_endpoints_fail_over(configured, servers, talosconfig_for, capsys):
    dead, _ = configured(hostname="dead")
    live, _ = configured(hostname="live")
    dead.stop()
    tc = talosconfig_for([dead.endpoint, live.endpoint], [live.endpoint])
    assert _cli("--talosconfig", str(tc), "version") == 0
    assert f"NODE:        {live.endpoint}" in capsys.readouterr().out


# ------------------------------------------------------------------ fan-out


def test_fan_out_three_nodes_one_stopped(configured, talosconfig_for, capsys):
    a, _ = configured(hostname="a")
    b, _ = configured(hostname="b")
    c, _ = configured(hostname="c")
    c.stop()
    tc = talosconfig_for([a.endpoint], [a.endpoint, b.endpoint, c.endpoint])
    assert _cli("--talosconfig", str(tc), "version", "-o", "yaml") == 1
    captured = capsys.readouterr()
    replies = yaml.safe_load(captured.out)
    assert sorted(r["metadata"]["hostname"] for r in replies) == sorted([a.endpoint, b.endpoint])
    assert f"error: {c.endpoint}:" in captured.err and "1 node failed" in captured.err


def test_fan_out_table_has_node_column(configured, talosconfig_for, capsys):
    a, _ = configured(hostname="a")
    b, _ = configured(hostname="b")
    tc = talosconfig_for([a.endpoint], [a.endpoint, b.endpoint])
    assert _cli("--talosconfig", str(tc), "services") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["NODE", "SERVICE", "STATE"]
    assert {line.split()[0] for line in out[1:]} == {a.endpoint, b.endpoint}


def test_proxyfrom_is_never_forwarded_again(configured):
    """A call carrying proxyfrom runs locally even with nodes: no loops."""
    from google.protobuf import empty_pb2

    from libtalos.api._gen.machine.machine_grpc import MachineServiceStub
    from libtalos.api.channel import ClosingChannel

    s, _node = configured()
    cluster_ca = s.server.forwarder.client_ssl  # the node's own client context (mTLS)

    async def call():
        ch = ClosingChannel("127.0.0.1", s.port, ssl=cluster_ca, pins=[])
        try:
            return await MachineServiceStub(ch).Version(
                empty_pb2.Empty(),
                metadata=[("nodes", "127.0.0.1:1"), ("proxyfrom", "elsewhere")],
                timeout=10,
            )
        finally:
            ch.close()

    reply = asyncio.run(call())
    assert len(reply.messages) == 1 and reply.messages[0].metadata.hostname == ""


# ------------------------------------------------------------------ apply-config


def _changed_cluster(text: str) -> str:
    data = yaml.safe_load(text)
    data["cluster"]["clusterName"] = "renamed"
    return yaml.safe_dump(data)


def _changed_machine(text: str) -> str:
    data = yaml.safe_load(text)
    data["machine"]["certSANs"] = ["10.9.9.9"]
    return yaml.safe_dump(data)


@pytest.fixture
def apply_env(configured, talosconfig_for, cluster, tmp_path):
    s, node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])

    def run(text: str, *flags: str) -> int:
        f = tmp_path / "cfg.yaml"
        f.write_text(text)
        return _cli("--talosconfig", str(tc), "apply-config", "-f", str(f), *flags)

    return s, node, run, cluster


def test_apply_auto_cluster_only_change_is_no_reboot(apply_env, capsys):
    _s, node, run, cluster = apply_env
    assert run(_changed_cluster(cluster.configs["init"])) == 0
    assert node.actions == [("apply", node.actions[0][1])]
    assert node.actions[0][1].name == "NO_REBOOT"
    assert "no-reboot" in capsys.readouterr().out


def test_apply_auto_machine_change_reboots(apply_env):
    _s, node, run, cluster = apply_env
    assert run(_changed_machine(cluster.configs["init"])) == 0
    assert node.actions[0][1].name == "REBOOT"


def test_immediate_refused_when_machine_changed_lists_keys(apply_env, capsys):
    _s, node, run, cluster = apply_env
    assert run(_changed_machine(cluster.configs["init"]), "--immediate") == 1
    err = capsys.readouterr().err
    assert "FAILED_PRECONDITION" in err and "machine.certSANs" in err
    assert node.actions == []


def test_on_reboot_stages(apply_env):
    _s, node, run, cluster = apply_env
    new = _changed_machine(cluster.configs["init"])
    assert run(new, "--on-reboot") == 0
    assert node.actions[0][1].name == "STAGED"
    assert node.config_text() == cluster.configs["init"]  # staged: not active yet


def test_dry_run_changes_nothing(apply_env, capsys):
    _s, node, run, cluster = apply_env
    assert run(_changed_machine(cluster.configs["init"]), "--dry-run") == 0
    assert node.actions == []
    assert "machine.certSANs" in capsys.readouterr().out


def test_try_mode_passes_timeout(apply_env, capsys):
    _s, node, run, cluster = apply_env
    assert run(_changed_cluster(cluster.configs["init"]), "--mode", "try", "--timeout", "90s") == 0
    assert node.actions[0][1].name == "TRY"
    assert "0:01:30" in capsys.readouterr().out


def test_config_of_another_cluster_refused(apply_env, other_cluster, capsys):
    _s, node, run, _cluster = apply_env
    assert run(other_cluster.configs["init"]) == 1
    assert "another cluster" in capsys.readouterr().err
    assert node.actions == []


def test_concurrent_applies_are_serialized(apply_env, tmp_path):
    s, node, _run, cluster = apply_env
    gate = asyncio.Event()

    async def slow_apply(text, mode, try_timeout, _orig=node.apply_configuration):
        node.applying += 1
        node.max_applying = max(node.max_applying, node.applying)
        try:
            await gate.wait()
        finally:
            node.applying -= 1
        return await _orig(text, mode, try_timeout)

    s.call(_set(node, "apply_configuration", slow_apply))
    tc = tmp_path / "talosconfig"
    f = tmp_path / "c.yaml"
    f.write_text(_changed_cluster(cluster.configs["init"]))
    codes: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: codes.append(
                _cli("--talosconfig", str(tc), "apply-config", "-f", str(f))
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    lock = s.server.service.apply_lock
    # Both calls are in the server: one inside the node, one queued on the lock.
    deadline = time.monotonic() + 30
    while not (node.applying == 1 and lock._waiters):
        assert time.monotonic() < deadline, "the two applies never overlapped in the server"
        time.sleep(0.01)
    s.loop.call_soon_threadsafe(gate.set)
    for t in threads:
        t.join(30)
    assert codes == [0, 0]
    assert node.max_applying == 1


async def _set(obj, name, value):
    setattr(obj, name, value)


# ------------------------------------------------------------------ lifecycle


def test_bootstrap_then_refused_when_etcd_has_data(configured, talosconfig_for, capsys):
    s, node = configured("init")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "bootstrap") == 0
    assert ("bootstrap", None) in node.actions
    assert _cli("--talosconfig", str(tc), "bootstrap") == 1
    assert "etcd data directory is not empty" in capsys.readouterr().err


def test_bootstrap_refused_on_worker(configured, talosconfig_for, capsys):
    s, node = configured("join")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "bootstrap") == 1
    assert "not available on workers" in capsys.readouterr().err
    assert node.actions == []


def test_etcd_members_after_bootstrap(configured, talosconfig_for, capsys):
    s, _node = configured("init")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "etcd", "members") == 1  # no etcd yet
    capsys.readouterr()
    assert _cli("--talosconfig", str(tc), "bootstrap") == 0
    assert _cli("--talosconfig", str(tc), "etcd", "members") == 0
    out = capsys.readouterr().out
    assert "1234abcd" in out and "https://127.0.0.1:2380" in out


@pytest.mark.parametrize(
    ("args", "action"),
    [
        (["reboot"], ("reboot", False)),
        (["shutdown", "--force"], ("shutdown", True)),
        (
            [
                "reset",
                "--reboot",
                "--system-labels-to-wipe",
                "STATE",
                "--system-labels-to-wipe",
                "EPHEMERAL",
            ],
            ("reset", (True, True, ("STATE", "EPHEMERAL"))),
        ),
    ],
)
def test_lifecycle_calls_reach_node(configured, talosconfig_for, args, action):
    s, node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), *args) == 0
    assert node.actions == [action]


# ------------------------------------------------------------------ services and logs


def test_service_show_and_actions(configured, talosconfig_for, capsys):
    s, node = configured()
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "service", "etcd") == 0
    assert "STATE    Running" in capsys.readouterr().out
    assert _cli("--talosconfig", str(tc), "service", "etcd", "stop") == 0
    assert "Service 'etcd' stopped" in capsys.readouterr().out
    assert node.services_by_id["etcd"].state == "Finished"
    assert _cli("--talosconfig", str(tc), "service", "nosuch", "restart") == 1
    assert "not found" in capsys.readouterr().err


def test_logs_tail(configured, talosconfig_for, capsys):
    s, node = configured()
    svc = node.services_by_id["kubelet"]
    for i in range(5):
        svc.append(f"line {i}")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "logs", "kubelet", "--tail", "2") == 0
    assert capsys.readouterr().out.splitlines() == ["line 3", "line 4"]


def test_logs_follow_streams_new_lines(configured):
    from libtalos.api import machine_pb2, tls
    from talos_apply import client as api_client

    s, node = configured()
    svc = node.services_by_id["kubelet"]
    admin = pki.admin_client_cert(_ca_of(s))
    target = api_client.Target(
        [s.endpoint],
        [s.endpoint],
        tls.client_context(_ca_of(s).crt, admin.crt, admin.key),
    )
    got: list[bytes] = []

    async def follow():
        c = api_client.Client(target)
        req = machine_pb2.LogsRequest(id="kubelet", follow=True, tail_lines=0)
        async for frame in c.stream("Logs", req):
            got.append(frame.bytes)
            if len(got) == 2:
                return

    async def feed():
        await asyncio.sleep(0)
        svc.append("new 1")
        svc.append("new 2")

    follower_done = threading.Event()

    def poke():
        # wait until the follower is parked on the ring, then append from the server's loop
        deadline = time.monotonic() + 30
        while not svc.changed._waiters:
            if follower_done.is_set():
                return  # the follower failed: its error is this test's, reported below
            assert time.monotonic() < deadline
            time.sleep(0.01)
        s.call(feed())

    t = threading.Thread(target=poke)
    t.start()
    try:
        asyncio.run(follow())
    finally:
        follower_done.set()
        t.join(30)
    assert b"".join(got) == b"new 1\nnew 2\n"


def _ca_of(s):
    return s.ca


# ------------------------------------------------------------------ kubeconfig


def _kube_cert(path):
    data = yaml.safe_load(path.read_text())
    user = data["users"][0]["user"]
    return x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"])), data


def test_kubeconfig_written_0600_with_admin_cert(configured, talosconfig_for, cluster, tmp_path):
    s, _node = configured("init")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    out = tmp_path / "kc"
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(out)) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    cert, data = _kube_cert(out)
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    k8s_ca = pki.load_certificate(cluster.bundle.kubernetes_ca.crt)
    assert cert.issuer == k8s_ca.subject
    cert.verify_directly_issued_by(k8s_ca)
    assert data["current-context"] == "admin@demo"
    assert data["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_kubeconfig_merges_into_existing(configured, talosconfig_for, tmp_path, capsys):
    s, _node = configured("init")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    out = tmp_path / "config"
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(out)) == 0
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(out)) == 0
    data = yaml.safe_load(out.read_text())
    assert [c["name"] for c in data["contexts"]] == ["admin@demo", "admin@demo-1"]
    assert data["current-context"] == "admin@demo-1"
    assert "renamed" in capsys.readouterr().err
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(out), "--force") == 0
    data = yaml.safe_load(out.read_text())
    assert [c["name"] for c in data["contexts"]] == ["admin@demo-1", "admin@demo"]


def test_kubeconfig_refused_on_worker(configured, talosconfig_for, tmp_path, capsys):
    s, _node = configured("join")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(tmp_path / "kc")) == 1
    assert "control-plane" in capsys.readouterr().err
    assert not (tmp_path / "kc").exists()


def test_kubeconfig_to_stdout_and_no_merge_refuses_existing(
    configured, talosconfig_for, tmp_path, capsysbinary
):
    s, _node = configured("init")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    assert _cli("--talosconfig", str(tc), "kubeconfig", "-") == 0
    assert yaml.safe_load(capsysbinary.readouterr().out)["kind"] == "Config"
    out = tmp_path / "kc"
    out.write_text("keep me\n")
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(out), "--no-merge") == 1
    assert out.read_text() == "keep me\n"
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(out), "--merge") == 1  # not YAML
    assert out.read_text() == "keep me\n"


def test_kubeconfig_into_directory(configured, talosconfig_for, tmp_path):
    s, _node = configured("init")
    tc = talosconfig_for([s.endpoint], [s.endpoint])
    (tmp_path / "dir").mkdir()
    assert _cli("--talosconfig", str(tc), "kubeconfig", str(tmp_path / "dir")) == 0
    assert (tmp_path / "dir" / "kubeconfig").exists()


def test_logs_from_two_nodes_are_prefixed(configured, talosconfig_for, capsys):
    a, na = configured(hostname="a")
    b, nb = configured(hostname="b")
    na.services_by_id["etcd"].append("from a")
    nb.services_by_id["etcd"].append("from b")
    tc = talosconfig_for([a.endpoint], [a.endpoint, b.endpoint])
    assert _cli("--talosconfig", str(tc), "logs", "etcd", "--tail", "1") == 0
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines == sorted([f"{a.endpoint}: from a", f"{b.endpoint}: from b"])


@pytest.mark.parametrize("command", ["bootstrap", "kubeconfig"])
def test_single_node_commands_refuse_several_nodes(command, tmp_path, talosconfig_for, capsys):
    tc = talosconfig_for(["127.0.0.1:1"], ["127.0.0.1:1", "127.0.0.1:2"])  # from the context
    assert _cli("--talosconfig", str(tc), command) == 2
    assert "exactly one node" in capsys.readouterr().err


def test_try_mode_rolls_back_after_timeout(apply_env):
    _s, node, run, cluster = apply_env
    before = node.config_text()
    assert (
        run(_changed_cluster(cluster.configs["init"]), "--mode", "try", "--timeout", "200ms") == 0
    )
    assert node.config_text() != before  # applied now ...
    deadline = time.monotonic() + 30
    while ("rollback", None) not in node.actions:  # ... and rolled back by the node later
        assert time.monotonic() < deadline, "no rollback"
        time.sleep(0.02)
    assert node.config_text() == before
