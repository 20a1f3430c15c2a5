"""``talos-apply health`` (and ``talosctl health``) against API servers on loopback.

Three control planes and a worker, each a real configured API server (mutual TLS, the proxy's
fan-out) over an in-memory node whose services and etcd member list the tests set; the real
cluster's faults are in tests/cluster/test_faults.py.
"""

from __future__ import annotations

import json
import threading

import pytest
import yaml

from talos_apply.cli import main
from talos_init.api.node import EtcdMember


def _cli(*args: str) -> int:
    return main(list(args))


def _members(n: int) -> list[EtcdMember]:
    return [
        EtcdMember(
            id=0x100 + i,
            hostname=f"cp{i}",
            peer_urls=[f"https://10.99.0.{i + 2}:2380"],  # data only: nothing dials them
            client_urls=[f"https://10.99.0.{i + 2}:2379"],
        )
        for i in range(n)
    ]


@pytest.fixture
def cluster3(configured, talosconfig_for):
    """Three control planes with etcd running and agreeing, one worker; the talosconfig's
    endpoints are the control planes (as cluster create writes it)."""
    cps = []
    for i in range(3):
        s, node = configured("controlplane", hostname=f"cp{i}")
        node.etcd_data, node.etcd = True, _members(3)
        cps.append((s, node))
    worker, wnode = configured("join", hostname="w0", services=("apid", "kubelet"))
    tc = talosconfig_for([s.endpoint for s, _ in cps])
    return cps, (worker, wnode), tc


def _rows(out: str) -> dict[tuple[str, str], list[str]]:
    """(node, check) -> [result, details] from the table."""
    rows = {}
    for line in out.splitlines()[1:]:
        node, rest = line.split(None, 1)
        for check in ("etcd members", "services", "etcd", "api"):
            if rest.startswith(check + " "):
                result, _, details = rest[len(check) :].strip().partition(" ")
                rows[(node, check)] = [result, details.strip()]
                break
    return rows


def test_healthy_cluster_every_check_ok(cluster3, capsys):
    cps, (worker, _), tc = cluster3
    code = _cli("--talosconfig", str(tc), "health", "--worker-nodes", worker.endpoint)
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = _rows(out)
    for s, _ in cps:
        for check in ("api", "services", "etcd", "etcd members"):
            assert rows[(s.endpoint, check)][0] == "OK", out
        assert "agree: cp0, cp1, cp2" in rows[(s.endpoint, "etcd members")][1]
    assert rows[(worker.endpoint, "api")][0] == "OK"
    assert rows[(worker.endpoint, "services")][0] == "OK"
    assert (worker.endpoint, "etcd") not in rows  # no etcd on workers
    assert len(rows) == 3 * 4 + 2


def test_stopped_control_plane_is_named(cluster3, capsys):
    cps, _, tc = cluster3
    dead = cps[2][0]
    dead.stop()
    code = _cli("--talosconfig", str(tc), "health", "--wait-timeout", "2s")
    out, err = capsys.readouterr()
    assert code == 1
    rows = _rows(out)
    assert rows[(dead.endpoint, "api")][0] == "FAIL"
    assert "not answering" in rows[(dead.endpoint, "api")][1]
    for s, _ in cps[:2]:
        assert all(rows[(s.endpoint, c)][0] == "OK" for c in ("api", "etcd", "etcd members"))
    # the error line names the node and its failed checks, and no other node
    error = next(line for line in err.splitlines() if line.startswith("error: "))
    assert f"{dead.endpoint}: api, services, etcd, etcd members" in error
    assert cps[0][0].endpoint not in error and cps[1][0].endpoint not in error


def test_disagreeing_member_lists_name_the_odd_node(cluster3, capsys):
    cps, _, tc = cluster3
    odd = cps[1]
    odd[1].etcd = _members(2)  # it does not know cp2
    code = _cli("--talosconfig", str(tc), "health", "--wait-timeout", "1s")
    out, _ = capsys.readouterr()
    assert code == 1
    rows = _rows(out)
    result, details = rows[(odd[0].endpoint, "etcd members")]
    assert result == "FAIL"
    assert "missing here: 102 cp2" in details and "2 members for 3 control-plane nodes" in details
    assert rows[(cps[0][0].endpoint, "etcd members")][0] == "OK"


def test_member_added_but_not_started_fails(cluster3, capsys):
    cps, _, tc = cluster3
    unstarted = EtcdMember(
        id=0x999, hostname="", peer_urls=["https://10.99.0.9:2380"], client_urls=[]
    )
    for _, node in cps:
        node.etcd = [*_members(2), unstarted]
    assert _cli("--talosconfig", str(tc), "health", "--wait-timeout", "1s") == 1
    out = capsys.readouterr().out
    assert "member 999 (not started): added but never started" in out


def test_services_failed_unhealthy_and_skipped(cluster3, capsys):
    cps, _, tc = cluster3
    (a, na), (b, nb), (c, nc) = cps
    na.services_by_id["apid"].set("Failed", "Failed to start: exit status 1")
    nb.services_by_id["etcd"].healthy = False
    nc.services_by_id["kubelet"].set("Skipped", "no kubelet binary on this node")
    nc.services_by_id["kubelet"].healthy = None
    code = _cli("--talosconfig", str(tc), "health", "--wait-timeout", "1s")
    out, _ = capsys.readouterr()
    assert code == 1
    rows = _rows(out)
    assert rows[(a.endpoint, "services")] == [
        "FAIL",
        "apid is Failed (Failed to start: exit status 1)",
    ]
    assert rows[(b.endpoint, "etcd")][0] == "FAIL"
    assert rows[(b.endpoint, "services")][0] == "FAIL" and "etcd is unhealthy" in out
    assert rows[(c.endpoint, "services")][0] == "OK"  # skipped with a reason is not a failure
    assert "kubelet skipped: no kubelet binary on this node" in rows[(c.endpoint, "services")][1]


def test_not_bootstrapped_then_bootstrapped_during_the_wait(cluster3, capsys):
    """The checks are retried: etcd missing at first, there a moment later -> exit 0."""
    cps, _, tc = cluster3
    for _, node in cps:
        node.etcd_data = False
    del cps[0][1].services_by_id["etcd"]

    def later() -> None:
        for _, node in cps:
            node.etcd_data = True
        cps[0][1].services_by_id["etcd"] = cps[1][1].services_by_id["etcd"]

    timer = threading.Timer(1.5, later)
    timer.start()
    try:
        code = _cli("--talosconfig", str(tc), "health", "--wait-timeout", "60s")
    finally:
        timer.cancel()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "waiting: " in err and "etcd is not running" in err  # it did wait
    assert "FAIL" not in out


def test_yaml_and_json_reports(cluster3, capsys):
    cps, _, tc = cluster3
    cps[0][0].stop()
    nodes = ",".join(s.endpoint for s, _ in cps)
    common = ("--talosconfig", str(tc), "health", "--control-plane-nodes", nodes)
    assert _cli(*common, "--wait-timeout", "1s", "-o", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert {"node", "check", "ok", "message"} == set(data[0])
    failed = {(d["node"], d["check"]) for d in data if not d["ok"]}
    assert (cps[0][0].endpoint, "api") in failed
    assert not any(node != cps[0][0].endpoint for node, _ in failed)
    assert _cli(*common, "--wait-timeout", "1s", "-o", "yaml") == 1
    assert yaml.safe_load(capsys.readouterr().out) == data


def test_nodes_flag_picks_the_control_planes(cluster3, capsys):
    cps, _, tc = cluster3
    one = cps[0][0].endpoint
    code = _cli("--talosconfig", str(tc), "health", "--nodes", one, "--wait-timeout", "1s")
    out, _ = capsys.readouterr()
    assert code == 1  # three members for one control-plane node
    rows = _rows(out)
    assert {node for node, _ in rows} == {one}
    assert "3 members for 1 control-plane node" in rows[(one, "etcd members")][1]


@pytest.mark.parametrize("bad", ["soon", "0s", "-1m"])
def test_bad_wait_timeout_is_usage(cluster3, capsys, bad):
    _, _, tc = cluster3
    assert _cli("--talosconfig", str(tc), "health", f"--wait-timeout={bad}") == 2
    assert "--wait-timeout" in capsys.readouterr().err


def test_no_endpoint_answers(configured, talosconfig_for, capsys):
    s, _ = configured("controlplane", hostname="gone")
    tc = talosconfig_for([s.endpoint])
    s.stop()
    assert _cli("--talosconfig", str(tc), "health", "--wait-timeout", "1s") == 1
    out = capsys.readouterr().out
    assert _rows(out)[(s.endpoint, "api")][0] == "FAIL"
    assert "no endpoint could be reached" in out


def test_talosctl_routes_health(cluster3, capsys):
    from talosctl.cli import main as talosctl

    _, _, tc = cluster3
    assert talosctl(["--talosconfig", str(tc), "health", "--wait-timeout", "30s"]) == 0
    assert "etcd members" in capsys.readouterr().out
    assert talosctl(["--help"]) == 0
    assert "health" in capsys.readouterr().out
