"""Hostile input to a node waiting in maintenance mode (talos-init as PID 1, unauthenticated
ApplyConfiguration from the node's own loopback): alias bombs, configs of thousands of problems,
a million small nodes and a 100 MB request are refused with bounded messages, while Version keeps
answering and PID 1's memory stays small; SIGTERM is handled in the middle of a flood."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from init.harness import NodeRun

pytestmark = pytest.mark.system

CLIENT = str(Path(__file__).with_name("hostile_client.py"))
MIB = 1 << 20


def _client(node: NodeRun, *cases: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "nsenter",
            f"--net=/proc/{node.pid1}/ns/net",
            "--",
            sys.executable,
            CLIENT,
            "50000",
            *cases,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def _maintenance(start_node) -> NodeRun:
    node, _state = start_node()
    node.expect("maintenance service listening on :50000")
    return node


def test_hostile_configs_are_refused_while_version_answers(start_node) -> None:
    node = _maintenance(start_node)
    before = _peak_rss(node.pid1)
    cases = ["alias-lists", "alias-maps", "problems-50k", "lines-1m", "lines-4m", "oversize-100m"]
    client = _client(node, *cases)
    out, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    assert "polling" in json.loads(out.splitlines()[0])
    report = json.loads(out.splitlines()[-1])
    results = report["cases"]

    for name in cases[:5]:
        assert results[name]["status"] == "INVALID_ARGUMENT", (name, results[name])
        assert results[name]["message_bytes"] <= 4096, (name, results[name]["message_bytes"])
    assert "alias" in results["alias-lists"]["message"], results["alias-lists"]
    assert "alias" in results["alias-maps"]["message"], results["alias-maps"]
    # every line a problem: the count, the first twenty and how many more
    problems = results["problems-50k"]["message"]
    # 2500 unknown keys, and `cluster` is missing
    assert problems.startswith("2501 problems found\n"), problems
    assert "unknown0" in problems and "and 2481 more problems" in problems, problems
    assert "YAML nodes" in results["lines-1m"]["message"], results["lines-1m"]
    assert "YAML nodes" in results["lines-4m"]["message"], results["lines-4m"]
    # refused from its length prefix, before the body is read
    big = results["oversize-100m"]
    assert big["status"] == "RESOURCE_EXHAUSTED", big
    assert "ApplyConfiguration request is 104857605 bytes" in big["message"], big

    latencies = report["version"]
    assert len(latencies) >= 10, latencies
    assert max(latencies) < 2.0, sorted(latencies)[-5:]
    peak = _peak_rss(node.pid1)
    assert peak < 100 * MIB, f"PID 1 peaked at {peak / MIB:.0f} MiB (was {before / MIB:.0f})"

    # the node is still waiting, and still takes a good config afterwards
    assert node.proc.poll() is None
    assert not node.matching("Traceback")


def test_negative_control_the_poll_sees_a_stalled_loop(start_node) -> None:
    """The Version poll measures the node: with PID 1 stopped for 2.5 s, it reports that."""
    node = _maintenance(start_node)
    client = _client(node, "idle")
    assert client.stdout is not None
    assert "polling" in json.loads(client.stdout.readline())
    node.signal(signal.SIGSTOP)
    time.sleep(2.5)
    node.signal(signal.SIGCONT)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    latencies = json.loads(out.splitlines()[-1])["version"]
    assert max(latencies) >= 2.0 and not math.isinf(max(latencies)), latencies


def test_sigterm_is_handled_during_a_flood_of_hostile_configs(start_node) -> None:
    node = _maintenance(start_node)
    client = _client(node, "flood")
    try:
        assert client.stdout is not None
        assert "polling" in json.loads(client.stdout.readline())
        sent = [json.loads(client.stdout.readline())["sent"] for _ in range(8)]
        assert len(set(sent)) >= 4, sent  # several kinds in flight, the flood is on
        node.signal(signal.SIGTERM)
        assert node.wait(timeout=20) == 143
    finally:
        client.kill()
        client.communicate()
