"""Starting and stopping nodes: each a talos-init PID 1 in its own namespaces.

A node is started as::

    nsenter --net=/run/netns/NODE -- unshare --pid --fork --mount-proc --uts --kill-child \
        talos-init --mode container --state-dir DIR [--config FILE] --cmdline talos.hostname=NODE

detached from create (its own session, output to the node's console log). ``unshare`` stays
outside the node's PID namespace as the launcher whose one child is the node's PID 1;
``--kill-child`` ties the two together: when the launcher is killed, PID 1 is killed, and with it
every process of the node's PID namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from libtalos.errors import TalosError
from talos_cluster import cgroups
from talos_cluster.state import is_ours, process_start_time

API_PORT = 50000
STOP_GRACE = 15.0  # talos-init gives each service 10 s from SIGTERM to SIGKILL


class NodeStartError(TalosError):
    """A node could not be started, or exited while the cluster was coming up."""


def talos_init_command() -> list[str]:
    """talos-init beside this interpreter (the .venv), else on PATH."""
    beside = Path(sys.executable).parent / "talos-init"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("talos-init")
    if found is None:
        raise NodeStartError(
            "talos-init is not installed (the nodes' PID 1)", hint="run bash scripts/setup"
        )
    return [found]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodeStartError(f"{name} is not installed (Debian package util-linux)")
    return path


def launch(
    *,
    netns: str,
    node_command: list[str],
    console: Path,
    cgroup_procs: list[str],
) -> tuple[int, int]:
    """Start the node; returns (launcher PID, its start time)."""
    argv = [
        _tool("nsenter"),
        f"--net=/run/netns/{netns}",
        "--",
        _tool("unshare"),
        "--pid",
        "--fork",
        "--mount-proc",
        "--uts",
        "--kill-child",
        "--",
        *node_command,
    ]
    argv = cgroups.wrap(cgroup_procs, argv)
    console.parent.mkdir(parents=True, exist_ok=True)
    # posix_spawn, not Popen: the node outlives create and nobody here waits for it (destroy
    # collects it when it runs in the same process). Its own session, so a Ctrl-C aimed at
    # create does not reach the nodes.
    log = os.open(console, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
            setsigmask=set(),
            setsigdef={signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE},
        )
    except OSError as exc:
        raise NodeStartError(f"{netns}: cannot start: {exc.strerror}") from None
    finally:
        os.close(log)
        os.close(null)
    start = process_start_time(pid)
    if start is None:  # pragma: no cover - it died before we looked: collect it
        reap(pid)
        raise NodeStartError(f"{netns}: exited at once; see {console}")
    return pid, start


def node_pid1(launcher: int) -> int | None:
    """The launcher's child: the node's PID 1 as the host sees it."""
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (create and destroy in one process, as in tests)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, start_time: int) -> bool:
    reap(pid)
    if not is_ours(pid, start_time):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def listening(pid: int, port: int) -> bool:
    """Whether a TCP socket in ``pid``'s network namespace listens on ``port`` (no packet sent)."""
    want = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(want) and fields[3] == "0A":  # LISTEN
                return True
    return False


def stop(pid: int, start_time: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM the node's PID 1 (an orderly shutdown), then SIGKILL the launcher after ``grace``."""
    if not alive(pid, start_time):
        return
    child = node_pid1(pid)
    target = child if child is not None else pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(target, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid, start_time):
            return
        time.sleep(0.05)
    for p in (pid, child):
        if p is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid, start_time) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid, start_time):
        raise TalosError(f"process {pid} did not exit after SIGKILL")


def kill_all(pids: list[int]) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
        reap(p)
