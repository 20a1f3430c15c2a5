"""The supervisor inside a real PID 1: restart policies, back-off, dependencies, health."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from .harness import PYTHON, helper, write_config, write_service

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]


def _config(tmp_path):
    return str(write_config(tmp_path / "config.yaml"))


def test_crashing_service_restarts_with_growing_backoff(run_node, tmp_path, services_dir):
    write_service(
        services_dir,
        "crash",
        command="/bin/sh",
        args=["-c", "echo crashing; exit 3"],
        restartDelay="100ms",
    )
    node = run_node(services=services_dir, config=_config(tmp_path))
    delays = []
    for _ in range(3):
        node.expect(r"service\[crash\]\(Failed\): Process exited with code 3")
        delays.append(node.expect(r"service\[crash\]\(Failed\): Restarting in ([\d.]+)s").group(1))
    assert delays == ["0.1", "0.2", "0.4"]
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert len(node.matching(r"^crash: crashing")) >= 3


def test_until_success_stops_after_success(run_node, tmp_path, services_dir):
    # Fails twice (counting its runs in EPHEMERAL), then succeeds.
    script = (
        "n=$(cat /var/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /var/runs; "
        'echo "run $n"; [ $n -ge 3 ]'
    )
    write_service(
        services_dir,
        "once",
        command="/bin/sh",
        args=["-c", script],
        restart="until-success",
        restartDelay="50ms",
    )
    printer = helper("print_signals.py")
    # A dependent of a one-shot waits for its success.
    write_service(services_dir, "after", command=PYTHON, args=[printer], depends=["once"])
    node = run_node(services=services_dir, config=_config(tmp_path))
    node.expect(r"service\[once\]\(Finished\): Service finished successfully")
    node.seen(r"^after: ready pid")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert node.matching(r"^once: run \d") == ["once: run 1", "once: run 2", "once: run 3"]
    assert len(node.matching(r"service\[once\]\(Running\): Started process")) == 3
    started = node.lines.index(node.matching(r"service\[after\]\(Running\)")[0])
    succeeded = node.lines.index(node.matching(r"service\[once\]\(Finished\)")[0])
    assert succeeded < started


def test_restart_never_runs_once(run_node, tmp_path, services_dir):
    write_service(services_dir, "never", command="/bin/false", restart="never", restartDelay="10ms")
    node = run_node(services=services_dir, config=_config(tmp_path))
    node.expect(r"service\[never\]\(Failed\): Process exited with code 1")
    node.seen(r"services running")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert len(node.matching(r"service\[never\]\(Running\)")) == 1
    assert not node.matching(r"service\[never\].*Restarting")


def test_dependencies_hold_services_in_waiting(run_node, tmp_path, services_dir):
    printer = helper("print_signals.py")
    write_service(
        services_dir, "late", command=PYTHON, args=[printer], depends=[{"path": "/var/go"}]
    )
    write_service(services_dir, "after", command=PYTHON, args=[printer], depends=["late"])
    state = tmp_path / "node"
    node = run_node(state_dir=state, services=services_dir, config=_config(tmp_path))
    node.seen(r"service\[late\]\(Waiting\): Waiting for path /var/go")
    node.seen(r"service\[after\]\(Waiting\): Waiting for service late")
    assert not node.matching(r"service\[(late|after)\]\(Running\)")
    (state / "ephemeral" / "go").write_text("")  # /var/go inside the node
    node.seen(r"^after: ready pid")
    late = node.lines.index(node.matching(r"service\[late\]\(Running\)")[0])
    after = node.lines.index(node.matching(r"service\[after\]\(Running\)")[0])
    assert late < after
    node.signal(signal.SIGTERM)
    assert node.wait() == 143


def test_health_check_flips_state(run_node, tmp_path, services_dir):
    printer = helper("print_signals.py")
    write_service(
        services_dir,
        "probed",
        command=PYTHON,
        args=[printer],
        healthCheck={
            "command": ["/bin/test", "-e", "/var/healthy"],
            "initialDelay": 0,
            "period": "50ms",
            "timeout": "5s",
        },
    )
    # Waits for "probed" to be up, which needs it healthy, not just running.
    write_service(services_dir, "dependent", command=PYTHON, args=[printer], depends=["probed"])
    state = tmp_path / "node"
    node = run_node(state_dir=state, services=services_dir, config=_config(tmp_path))
    node.expect(r"service\[probed\]\(Running\): Health check failed: command exited with code 1")
    assert not node.matching(r"service\[dependent\]\(Running\)")
    healthy = state / "ephemeral" / "healthy"
    healthy.write_text("")
    node.expect(r"service\[probed\]\(Running\): Health check successful")
    node.seen(r"^dependent: ready pid")
    healthy.unlink()
    node.expect(r"service\[probed\]\(Running\): Health check failed")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143


def test_tcp_health_check(run_node, tmp_path, services_dir):
    server = "import socket,time\ns=socket.create_server(('127.0.0.1',18181))\nprint('ready',flush=True)\nwhile True: s.accept()[0].close()\n"
    write_service(
        services_dir,
        "listener",
        command=PYTHON,
        args=["-c", server],
        healthCheck={"tcp": "127.0.0.1:18181", "initialDelay": 0, "period": "100ms"},
    )
    write_service(
        services_dir,
        "nobody",
        command="/bin/sleep",
        args=["1000"],
        healthCheck={"tcp": "127.0.0.1:18182", "initialDelay": 0, "period": "100ms"},
    )
    # The node has its own network namespace: these ports are its own loopback's.
    node = run_node(services=services_dir, config=_config(tmp_path))
    node.seen(r"service\[listener\]\(Running\): Health check successful")
    m = node.seen(r"service\[nobody\]\(Running\): Health check failed: (.*)")
    assert re.search(r"refused", m.group(1), re.IGNORECASE)
    node.signal(signal.SIGTERM)
    assert node.wait() == 143


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["/bin/sh", "-c", "exit 0"], r"\(Finished\): Service finished successfully"),
        (["/bin/sh", "-c", "exit 3"], r"\(Failed\): Process exited with code 3"),
        (["/bin/sh", "-c", "kill -SEGV $$"], r"\(Failed\): Process killed by SIGSEGV"),
        (["/bin/sh", "-c", "kill -KILL $$"], r"\(Failed\): Process killed by SIGKILL"),
        (["/nonexistent/program"], r"\(Failed\): /nonexistent/program: cannot execute: No such"),
        (["/var/not-executable"], r"\(Failed\): /var/not-executable: cannot execute: Permission"),
    ],
)
def test_service_exit_status_is_reported(run_node, tmp_path, services_dir, command, expected):
    write_service(services_dir, "job", command=command[0], args=command[1:], restart="never")
    state = tmp_path / "node"
    (state / "ephemeral").mkdir(parents=True)
    (state / "ephemeral" / "not-executable").write_text("#!/bin/sh\n")  # mode 0644
    node = run_node(state_dir=state, services=services_dir, config=_config(tmp_path))
    node.seen(r"service\[job\]" + expected)
    node.signal(signal.SIGTERM)
    assert node.wait() == 143


def test_machine_files_are_written_under_var(run_node, tmp_path):
    files = [
        {"content": "hello", "permissions": 0o600, "path": "/var/hello.txt", "op": "create"},
        {"content": "nope", "permissions": 0o644, "path": "/usr/nope.txt", "op": "create"},
    ]
    config = write_config(tmp_path / "config.yaml", "join", files=files)
    state = tmp_path / "node"
    node = run_node(state_dir=state, config=str(config))
    # The root is read-only: only STATE and EPHEMERAL take writes, and the node says so.
    node.seen(r"machine\.files\[1\]: /usr/nope\.txt: cannot write: Read-only file system")
    node.seen(r"boot sequence: done")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    written = state / "ephemeral" / "hello.txt"
    assert written.read_text() == "hello"
    assert written.stat().st_mode & 0o777 == 0o600
    assert not Path("/usr/nope.txt").exists()


def test_pre_start_runs_before_the_process_and_its_failure_fails_the_start(
    run_node, tmp_path, services_dir
):
    write_service(
        services_dir,
        "prepared",
        command="/bin/sh",
        args=["-c", "cat /var/prepared"],
        preStart=["/bin/sh", "-c", "echo made > /var/prepared"],
        restart="until-success",
    )
    write_service(
        services_dir, "unprepared", command="/bin/true", preStart=["/bin/false"], restart="never"
    )
    node = run_node(services=services_dir, config=_config(tmp_path))
    node.seen(r"^prepared: made$")
    node.seen(r"service\[prepared\]\(Finished\): Service finished successfully")
    node.seen(r"service\[unprepared\]\(Failed\): Pre-start command failed with code 1")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert not node.matching(r"service\[unprepared\]\(Running\)")


def test_sigterm_while_boot_still_waits_for_an_unhealthy_service(run_node, tmp_path, services_dir):
    """SIGTERM lands while startEverything waits, right as a state change wakes it.

    Regression: with asyncio.wait_for the boot task could swallow its cancellation there and
    keep waiting, so the node never stopped. Repeated because it is a race.
    """
    write_service(
        services_dir,
        "unhealthy",
        command="/bin/sleep",
        args=["1000"],
        healthCheck={"tcp": "127.0.0.1:18183", "initialDelay": 0, "period": "20ms"},
    )
    # Health that flips on every probe: a stream of state changes waking the boot task.
    flip = "if [ -e /run/up ]; then rm /run/up; exit 1; fi; : > /run/up"
    write_service(
        services_dir,
        "flapping",
        command="/bin/sleep",
        args=["1000"],
        healthCheck={"command": ["/bin/sh", "-c", flip], "initialDelay": 0, "period": "1ms"},
    )
    config = _config(tmp_path)
    for i in range(25):
        node = run_node(state_dir=tmp_path / f"node-{i}", services=services_dir, config=config)
        node.seen(r"service\[unhealthy\]\(Running\): Health check failed")
        node.expect(r"service\[flapping\]\(Running\): Health check successful")
        node.signal(signal.SIGTERM)
        assert node.wait(30) == 143
        assert not node.matching(r"boot sequence: done")
        assert not node.matching(r"did not stop when cancelled")  # the fix, not the guard
