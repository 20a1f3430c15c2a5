"""``talos_init.reaper.run``: one command to its end through the reaper, bounded by a timeout."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from talos_init.health import run_check
from talos_init.reaper import ChildTimeoutError, Finished, Reaper, run
from talos_init.services import HealthCheck
from talos_init.spawn import EXIT_NOT_FOUND, SpawnError

POLL = 0.01  # the tests reap by themselves (no signal loop runs here)
QUICK = 60.0  # a bound a quick command never reaches, even on a loaded machine


def _reaper() -> Reaper:
    return Reaper(reap_orphans=False)  # only our own children: pytest's stay pytest's


def _gone(pid: int, within: float = 10.0) -> bool:
    """``pid`` has exited (a zombie or reaped) before ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


async def _read_pid(path: Path) -> int:
    for _ in range(1000):
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return int(text)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} was never written")


def test_quick_command_gives_its_status_and_output():
    script = "cat; echo to-stderr >&2; exit 3"
    done = asyncio.run(
        run(_reaper(), ["/bin/sh", "-c", script], timeout=QUICK, stdin=b"in\n", reap_every=POLL)
    )
    assert done == Finished(3 << 8, b"in\n", b"to-stderr\n")
    assert done.code == 3 and not done.ok
    ok = asyncio.run(run(_reaper(), ["/bin/true"], timeout=QUICK, reap_every=POLL))
    assert ok.ok and ok.code == 0 and ok.stdout == b"" and ok.stderr == b""


def test_without_capture_output_is_discarded_and_stdin_is_devnull():
    done = asyncio.run(
        run(
            _reaper(),
            ["/bin/sh", "-c", "cat; echo x; echo y >&2"],
            timeout=QUICK,
            capture=False,
            reap_every=POLL,
        )
    )
    assert done == Finished(0, b"", b"")


def test_timeout_kills_the_process_group_and_reports(tmp_path):
    pidfile = tmp_path / "pid"
    script = f"/bin/sleep 1000 & echo $! > {pidfile}; wait"  # a grandchild in the group

    async def scenario() -> tuple[ChildTimeoutError, float]:
        reaper = _reaper()
        start = time.monotonic()
        with pytest.raises(ChildTimeoutError) as info:
            await run(
                reaper, ["/bin/sh", "-c", script], timeout=1.0, what="waiter", reap_every=POLL
            )
        assert reaper.watching() == 0  # the killed child was reaped
        return info.value, time.monotonic() - start

    err, took = asyncio.run(scenario())
    assert err.message == "waiter: did not finish within 1s (killed)"
    assert err.what == "waiter" and err.timeout == 1.0
    assert took < 10.0
    assert _gone(int(pidfile.read_text())), "the grandchild outlived the timeout"


def test_timeout_message_names_the_program_by_default():
    with pytest.raises(ChildTimeoutError, match=r"^/bin/sleep: did not finish within 0.2s"):
        asyncio.run(run(_reaper(), ["/bin/sleep", "1000"], timeout=0.2, reap_every=POLL))


def test_cancellation_kills_the_child(tmp_path):
    pidfile = tmp_path / "pid"
    script = f"/bin/sleep 1000 & echo $! > {pidfile}; wait"

    async def scenario() -> tuple[int, Reaper]:
        reaper = _reaper()

        async def reap_forever() -> None:  # as the signal loop does on SIGCHLD
            while True:
                reaper.reap()
                await asyncio.sleep(POLL)

        reaping = asyncio.create_task(reap_forever())
        task = asyncio.create_task(run(reaper, ["/bin/sh", "-c", script], timeout=QUICK))
        grandchild = await _read_pid(pidfile)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        reaping.cancel()
        return grandchild, reaper

    grandchild, reaper = asyncio.run(scenario())
    assert reaper.watching() == 0 and reaper.children_reaped == 1
    assert _gone(grandchild), "the grandchild outlived the cancellation"


def test_wait_for_the_reap_after_a_kill_is_bounded():
    """Nobody reaps (a stopping node): the kill is not followed by an endless wait."""
    reaper = _reaper()

    async def scenario() -> float:
        start = time.monotonic()
        with pytest.raises(ChildTimeoutError):
            await run(reaper, ["/bin/sleep", "1000"], timeout=0.2, kill_bound=0.3)
        return time.monotonic() - start

    took = asyncio.run(scenario())
    assert 0.5 <= took < 5.0
    assert reaper.watching() == 1  # never reaped by the run itself...
    deadline = time.monotonic() + 10
    while reaper.reap() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reaper.watching() == 0  # ...but it was killed: reaping now collects it


def test_large_output_and_input_do_not_block():
    size = 8 << 20  # far more than a pipe holds (64 KiB)
    writer = (
        "import sys; data = sys.stdin.buffer.read(); "
        f"sys.stdout.buffer.write(data); sys.stderr.buffer.write(b'e' * {size})"
    )
    data = os.urandom(size)
    done = asyncio.run(
        run(_reaper(), [sys.executable, "-c", writer], timeout=QUICK, stdin=data, reap_every=POLL)
    )
    assert done.ok
    assert done.stdout == data
    assert done.stderr == b"e" * size


def test_spawn_errors_pass_through(tmp_path):
    with pytest.raises(SpawnError) as info:
        asyncio.run(run(_reaper(), [str(tmp_path / "nope")], timeout=QUICK, reap_every=POLL))
    assert info.value.code == EXIT_NOT_FOUND


# -- health-check commands go through it ----------------------------------------------------


def _check(reaper: Reaper, command: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    async def scenario() -> tuple[bool, str]:
        async def reap_forever() -> None:
            while True:
                reaper.reap()
                await asyncio.sleep(POLL)

        reaping = asyncio.create_task(reap_forever())
        try:
            return await run_check(HealthCheck("command", command=command, timeout=timeout), reaper)
        finally:
            reaping.cancel()

    return asyncio.run(scenario())


def test_health_command_results_and_timeout(tmp_path):
    reaper = _reaper()
    assert _check(reaper, ("/bin/true",), QUICK) == (True, "command succeeded")
    assert _check(reaper, ("/bin/sh", "-c", "exit 4"), QUICK) == (
        False,
        "command exited with code 4",
    )
    assert _check(reaper, ("/bin/sleep", "1000"), 0.3) == (False, "timed out after 0.3s")
    assert reaper.watching() == 0  # the timed-out command was killed and reaped
    missing = _check(reaper, (str(tmp_path / "nope"),), QUICK)
    assert missing[0] is False and "cannot execute" in missing[1]
