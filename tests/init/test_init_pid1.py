"""talos-init as a real PID 1: reaping, signals, shutdown order, clean children."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from .harness import PYTHON, TALOS_INIT, NodeRun, helper, write_config, write_service

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

ORPHANS = 10_000


def _orphan_node(run_node, tmp_path: Path, services_dir: Path, fork_orphans: str, *extra: str):
    state = tmp_path / "node"
    (state / "ephemeral").mkdir(parents=True)
    # Inside the node the host's /tmp is replaced: the helper binary goes to EPHEMERAL (/var).
    shutil.copy(fork_orphans, state / "ephemeral" / "fork_orphans")
    write_service(
        services_dir,
        "orphans",
        command="/var/fork_orphans",
        args=[str(ORPHANS)],
        restart="until-success",
    )
    return run_node(
        *extra,
        state_dir=state,
        services=services_dir,
        config=str(write_config(tmp_path / "config.yaml")),
    )


def _zombie_children(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    zombies = 0
    for child in children:
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            zombies += 1
    return zombies


@pytest.mark.slow
def test_ten_thousand_orphans_are_reaped(run_node, tmp_path, services_dir, fork_orphans):
    node = _orphan_node(run_node, tmp_path, services_dir, fork_orphans)
    node.expect(rf"orphans: orphans {ORPHANS} done")
    node.expect(r"service\[orphans\]\(Finished\): Service finished successfully")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    # Every grandchild had exited before the helper reported; the final reap collects the rest.
    (line,) = node.matching(r"reaper: \d+ orphans")
    assert f"reaper: {ORPHANS} orphans" in line


@pytest.mark.slow
def test_negative_control_zombies_remain_without_the_reaper(
    run_node, tmp_path, services_dir, fork_orphans
):
    node = _orphan_node(run_node, tmp_path, services_dir, fork_orphans, "--no-reap-orphans")
    node.expect(rf"orphans: orphans {ORPHANS} done")
    node.expect(r"service\[orphans\]\(Finished\)")
    # All grandchildren have exited; without waitpid(-1) they stay zombies of PID 1. The count
    # settles once each has finished exiting (bounded poll, not a timing assertion).
    import time

    deadline = time.monotonic() + 60
    while (zombies := _zombie_children(node.pid1)) < ORPHANS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zombies == ORPHANS
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert any("reaper: 0 orphans" in line for line in node.lines)


def _chain(services_dir: Path, *, grace: str = "20s") -> None:
    """a <- b <- c (c depends on b, b on a); c ignores SIGTERM."""
    printer = helper("print_signals.py")
    write_service(services_dir, "a", command=PYTHON, args=[printer], stopGrace=grace)
    write_service(services_dir, "b", command=PYTHON, args=[printer], depends=["a"], stopGrace=grace)
    write_service(
        services_dir,
        "c",
        command=PYTHON,
        args=[printer, "--ignore-term"],
        depends=["b"],
        stopGrace="300ms",
    )


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_services_in_reverse_order(run_node, tmp_path, services_dir, signum, code):
    _chain(services_dir)
    node = run_node(services=services_dir, config=str(write_config(tmp_path / "c.yaml")))
    for name in "abc":
        node.seen(rf"^{name}: ready pid \d+")
    node.signal(signum)
    assert node.wait() == code
    finished = node.matching(r"service\[[abc]\]\(Finished\)")
    order = [line.split("service[")[1][0] for line in finished]
    assert order == ["c", "b", "a"]
    # c ignored SIGTERM (it said so) and was killed after its grace; a and b stopped in theirs.
    assert node.matching(r"^c: signal SIGTERM")
    assert node.matching(r"service\[c\]\(Stopping\): Sending SIGKILL to \d+ after 0.3s")
    assert not node.matching(r"service\[[ab]\]\(Stopping\): Sending SIGKILL")
    assert node.matching(r"^a: signal SIGTERM") and node.matching(r"^b: signal SIGTERM")
    # Each service was told only after its dependents had finished.
    first_b_stop = node.lines.index(node.matching(r"service\[b\]\(Stopping\)")[0])
    c_done = node.lines.index(node.matching(r"service\[c\]\(Finished\)")[0])
    assert c_done < first_b_stop


def test_children_have_a_clean_signal_mask(run_node, tmp_path, services_dir):
    write_service(
        services_dir,
        "sigstate",
        command="/bin/grep",
        args=["-E", "^Sig(Blk|Ign):", "/proc/self/status"],
        restart="until-success",
    )
    node = run_node(services=services_dir, config=str(write_config(tmp_path / "c.yaml")))
    blk = node.expect(r"^sigstate: SigBlk:\s+([0-9a-f]+)").group(1)
    ign = node.expect(r"^sigstate: SigIgn:\s+([0-9a-f]+)").group(1)
    assert int(blk, 16) == 0
    assert int(ign, 16) == 0
    # ... while PID 1 itself blocks nearly everything (the contrast makes the check meaningful).
    status = Path(f"/proc/{node.pid1}/status").read_text()
    pid1_blk = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    assert int(pid1_blk.split()[1], 16) != 0
    node.signal(signal.SIGTERM)
    assert node.wait() == 143


def test_forwarded_signals_reach_the_service_that_asked(run_node, tmp_path, services_dir):
    printer = helper("print_signals.py")
    write_service(services_dir, "wants", command=PYTHON, args=[printer], forwardSignals=["SIGHUP"])
    write_service(services_dir, "other", command=PYTHON, args=[printer])
    node = run_node(services=services_dir, config=str(write_config(tmp_path / "c.yaml")))
    node.seen(r"^wants: ready pid")
    node.seen(r"^other: ready pid")
    node.signal(signal.SIGHUP)
    node.expect(r"^wants: signal SIGHUP")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert not node.matching(r"^other: signal SIGHUP")


def test_subreaper_mode_reaps_orphans_without_pid_namespace(tmp_path, services_dir):
    """Not PID 1: with --no-isolate talos-init makes itself a child subreaper."""
    script = "import os\nfor _ in range(50):\n    if os.fork() == 0:\n        os._exit(0) if os.fork() else os._exit(0)\n"
    write_service(
        services_dir, "orph", command=PYTHON, args=["-c", script], restart="until-success"
    )
    state = tmp_path / "node"
    state.mkdir()
    node = NodeRun(
        [
            TALOS_INIT,
            "--mode",
            "container",
            "--state-dir",
            str(state),
            "--no-isolate",
            "--services-dir",
            str(services_dir),
            "--config",
            str(write_config(tmp_path / "c.yaml")),
        ],
        wrap=(),
    )
    try:
        node.expect(r"service\[orph\]\(Finished\)")
        node.signal(signal.SIGTERM)
        assert node.wait() == 143
        (line,) = node.matching(r"reaper: \d+ orphans")
        assert int(line.split("reaper: ")[1].split()[0]) >= 1
    finally:
        node.kill()
