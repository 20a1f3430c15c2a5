"""``talosctl dashboard`` against real API servers, driven in tmux at 80x24.

Each test starts its own tmux server (a socket under tmp_path, so nothing is shared with another
run) inside the session's private network namespace; the dashboard runs there as the installed
``talosctl`` console script with a 1s update interval. The screen is read with ``capture-pane``,
polled up to a deadline. The nodes are this test process (tests/api/conftest.py), so their
/proc is this machine's: a busy loop started here is a busy process of the node.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TALOSCTL = str(Path(sys.executable).parent / "talosctl")  # the installed console script
DEADLINE = 60.0  # seconds to wait for a screen to show something
EXIT_MARK = "[dashboard exit "
COLOUR_SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def _has_colour(sgr_params: str) -> bool:
    """Whether one SGR sequence's parameters set a colour (30-49 but 39/49, 90-107, 38/48)."""
    for p in re.split(r"[;:]", sgr_params):
        if p.isdigit():
            n = int(p)
            if (30 <= n <= 48 and n not in (39, 49)) or 90 <= n <= 107:
                return True
    return False


class Tmux:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
        }

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-u", "-S", str(self.socket), "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=True,
        )
        return done.stdout

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Run ``argv`` in a new 80x24 session; its exit status is printed when it ends."""
        command = f"{shlex.join(argv)}; echo '{EXIT_MARK}'$?']'; exec sleep 600"
        extra = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "dash", *extra, command)

    def screen(self, *, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", "-t", "dash", *(["-e"] if escapes else []))

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "dash", *keys)

    def wait(self, what: str, ok: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + DEADLINE
        while True:
            text = self.screen()
            if ok(text):
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not show {what} in {DEADLINE:g}s:\n{text}")
            time.sleep(0.2)

    def wait_text(self, needle: str) -> str:
        return self.wait(repr(needle), lambda s: needle in s)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is required (tools/talos-apply/apt-packages.txt)")
    t = Tmux(tmp_path / "tmux.sock")
    yield t
    subprocess.run(["tmux", "-S", str(t.socket), "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def dashboard(tmux: Tmux, talosconfig_for: Any) -> Callable[..., Tmux]:
    def start(endpoint: str, nodes: list[str], env: dict[str, str] | None = None) -> Tmux:
        tc = talosconfig_for([endpoint], nodes)
        argv = [TALOSCTL, "--talosconfig", str(tc), "dashboard", "-d", "1s"]
        tmux.start(argv, env)
        return tmux

    return start


def _restart(s: Any) -> None:
    """Serve again on the same port (after ``stop``). grpclib's Server keeps its closed
    asyncio server and refuses a second start: that is dropped first."""
    s.server._server._server = None
    s.call(s.server.start(s.host, s.port))
    s.running = True


def _first_pid(screen: str) -> int | None:
    lines = screen.splitlines()
    header = next((i for i, line in enumerate(lines) if line.split()[:2] == ["PID", "S"]), None)
    if header is None or header + 1 >= len(lines) or not lines[header + 1].split():
        return None
    return int(lines[header + 1].split()[0])


def _busy_cpu(screen: str, marker: str) -> float | None:
    """The CPU% column of the process row whose command starts with ``marker``."""
    for line in screen.splitlines():
        fields = line.split()
        # PID S CPU% MEM% VIRT RES TIME+ THR COMMAND (sizes are "14 MB": two words)
        if len(fields) > 3 and fields[0].isdigit() and f" {marker} " in f"{line} ":
            return float(fields[2])
    return None


def test_shows_the_node_and_its_services_and_q_exits_0(configured: Any, dashboard: Any) -> None:
    s, _node = configured(hostname="dash-alpha", services=("apid", "etcd", "trustd"))
    t = dashboard(s.endpoint, [s.endpoint])
    screen = t.wait_text("dash-alpha")
    screen = t.wait("the services", lambda x: "trustd Running" in x)
    assert "apid Running" in screen and "etcd Running" in screen
    assert "PID" in screen and "COMMAND" in screen
    assert f"[{s.endpoint}]" in screen  # the node's tab, the active one
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    # the second round gives rates and shares: the CPU figures are numbers, not placeholders
    screen = t.wait("CPU shares", lambda x: re.search(r"User\s+\d+\.\d%", x) is not None)
    assert re.search(r"CPU \|*\.*\s+\d+\.\d%\s+MEM", screen)
    assert re.search(r"NET\s+RX\s+\d", screen) and re.search(r"DISK RD\s+\d", screen)
    first = _first_pid(screen)
    # a page down shows other rows (the order also changes with every refresh, so this checks
    # only that the scroll keys are taken; q must still exit 0 after them)
    t.keys("C-f")
    t.wait("the next page of processes", lambda x: _first_pid(x) not in (None, first))
    t.keys("j", "k", "C-d", "C-u", "C-b")
    t.keys("q")
    t.wait_text(EXIT_MARK + "0]")


def test_a_busy_process_shows_its_cpu_share(configured: Any, dashboard: Any) -> None:
    marker = "dashbusyloop"
    s, _node = configured(hostname="dash-busy")
    t = dashboard(s.endpoint, [s.endpoint])
    t.wait("CPU shares", lambda x: re.search(r"User\s+\d+\.\d%", x) is not None)
    before = t.screen()
    assert _busy_cpu(before, marker) is None  # negative control: not running yet
    # niced up (root): the busy loop gets most of a core even when the machine is loaded
    loop = f"exec -a {marker} {shlex.quote(sys.executable)} -c 'while True: pass'"
    busy = subprocess.Popen(["nice", "-n", "-19", "bash", "-c", loop])
    try:
        screen = t.wait(
            "the busy process above 40% CPU",
            lambda x: (_busy_cpu(x, marker) or 0.0) > 40.0,
        )
        cpu = _busy_cpu(screen, marker)
        assert cpu is not None and cpu > 40.0
    finally:
        busy.kill()
        busy.wait()
    t.keys("q")
    t.wait_text(EXIT_MARK + "0]")


def test_switches_nodes_and_shows_a_stopped_node_as_unreachable(
    configured: Any, dashboard: Any
) -> None:
    x, _ = configured(hostname="dash-x", services=("apid", "etcd"))
    y, _ = configured(hostname="dash-y", services=("apid", "kubelet"))
    host = {x.endpoint: "dash-x", y.endpoint: "dash-y"}
    service = {x.endpoint: "etcd", y.endpoint: "kubelet"}
    a, b = sorted((x, y), key=lambda s: s.endpoint)  # the tabs are sorted, as talosctl's
    t = dashboard(a.endpoint, [b.endpoint, a.endpoint])
    screen = t.wait_text(host[a.endpoint])
    assert host[b.endpoint] not in screen
    assert f"[{a.endpoint}]  {b.endpoint}" in screen  # the tabs, the first one active
    t.keys("l")
    screen = t.wait_text(host[b.endpoint])
    assert f" {a.endpoint}  [{b.endpoint}]" in screen
    t.wait_text(f"{service[b.endpoint]} Running")
    t.keys("Left")
    t.wait_text(host[a.endpoint])
    t.keys("Right")
    t.wait_text(host[b.endpoint])

    b.stop()  # the second node stops answering; the first (the endpoint) reports it
    screen = t.wait_text("unreachable:")
    assert f"{b.endpoint}: unreachable:" in screen and host[b.endpoint] not in screen
    assert f" {a.endpoint}  [{b.endpoint}!]" in screen  # its tab is marked down
    t.keys("h")
    screen = t.wait_text(host[a.endpoint])  # the other node is still shown
    assert f"[{a.endpoint}]  {b.endpoint}!" in screen
    t.keys("l")
    t.wait_text("unreachable:")
    _restart(b)
    t.wait_text(host[b.endpoint])  # back when it answers again

    a.stop()  # the endpoint itself: every node is unreachable through it
    screen = t.wait_text("unreachable:")
    assert "no endpoint could be reached" in screen
    t.keys("q")
    t.wait_text(EXIT_MARK + "0]")


def test_no_color_has_no_colour_escapes(configured: Any, dashboard: Any) -> None:
    s, _node = configured(hostname="dash-mono")
    t = dashboard(s.endpoint, [s.endpoint], env={"NO_COLOR": "1"})
    t.wait("CPU shares", lambda x: re.search(r"User\s+\d+\.\d%", x) is not None)
    raw = t.screen(escapes=True)
    assert "dash-mono" in raw
    colours = [m.group(0) for m in COLOUR_SGR.finditer(raw) if _has_colour(m.group(1))]
    assert colours == [], colours[:5]
    t.keys("q")
    t.wait_text(EXIT_MARK + "0]")


def test_colour_is_used_without_no_color(configured: Any, dashboard: Any) -> None:
    """The control of the NO_COLOR test: the same screen has colours without it."""
    s, _node = configured(hostname="dash-colour")
    t = dashboard(s.endpoint, [s.endpoint])
    t.wait("CPU shares", lambda x: re.search(r"User\s+\d+\.\d%", x) is not None)
    raw = t.screen(escapes=True)
    assert any(_has_colour(m.group(1)) for m in COLOUR_SGR.finditer(raw))
    t.keys("q")
    t.wait_text(EXIT_MARK + "0]")


# ------------------------------------------------------------ the rate maths (no UI, no node)


def _cpu(**values: float) -> Any:
    from libtalos.api import machine_pb2

    return machine_pb2.CPUStat(**values)


def _round(
    *,
    node: str = "n1",
    user: float,
    idle: float,
    rx: int = 0,
    sectors: int = 0,
    procs: dict[int, float] | None = None,
    cores: int = 2,
) -> dict[str, list[Any]]:
    """One round's replies of one node, as the fan-out returns them."""
    from libtalos.api import machine_pb2

    def tagged(message: Any) -> list[Any]:
        message.metadata.hostname = node
        return [message]

    stat = machine_pb2.SystemStat(cpu_total=_cpu(user=user, idle=idle), boot_time=1)
    stat.cpu.extend(_cpu() for _ in range(cores))
    processes = [
        machine_pb2.ProcessInfo(pid=pid, cpu_time=t, resident_memory=1024 * 1024, args=f"p{pid}")
        for pid, t in (procs or {}).items()
    ]
    return {
        "Hostname": tagged(machine_pb2.Hostname(hostname=f"host-{node}")),
        "Version": tagged(machine_pb2.Version(version=machine_pb2.VersionInfo(tag="v0.9.3"))),
        "LoadAvg": tagged(machine_pb2.LoadAvg(load1=1.5)),
        "SystemStat": tagged(stat),
        "Memory": tagged(
            machine_pb2.Memory(meminfo=machine_pb2.MemInfo(memtotal=4096, memfree=1024))
        ),
        "Processes": tagged(machine_pb2.Process(processes=processes)),
        "NetworkDeviceStats": tagged(
            machine_pb2.NetworkDeviceStats(total=machine_pb2.NetDev(rx_bytes=rx, tx_bytes=rx))
        ),
        "DiskStats": tagged(
            machine_pb2.DiskStats(total=machine_pb2.DiskStat(read_sectors=sectors))
        ),
        "ServiceList": tagged(machine_pb2.ServiceList()),
    }


def test_cpu_shares_are_of_the_time_that_passed() -> None:
    from talos_apply.dashboard.data import cpu_shares

    shares = cpu_shares(_cpu(user=10, system=5, idle=85), _cpu(user=13, system=6, idle=91))
    assert shares.total == pytest.approx(10.0)
    assert (shares.user, shares.system, shares.idle) == pytest.approx((0.3, 0.1, 0.6))
    assert shares.usage == pytest.approx(0.4)
    same = cpu_shares(_cpu(user=10, idle=5), _cpu(user=10, idle=5))
    assert same.total == 0 and same.usage == 0  # no time passed: nothing, not a division by 0


def test_rates_are_per_second_and_a_reset_counter_is_no_change() -> None:
    from talos_apply.dashboard.data import delta, rate

    assert rate(1000, 4000, 2.0) == 1500.0
    assert delta(5000, 100) == 0.0 and rate(5000, 100, 1.0) == 0.0  # the node restarted
    assert rate(0, 10, 0.0) == 0.0


def test_tracker_computes_rates_shares_and_process_cpu_between_rounds() -> None:
    from talos_apply.dashboard.data import SECTOR, Tracker

    t = Tracker(["n1"])
    (first,) = t.round(_round(user=100, idle=100, rx=0, procs={1: 5.0, 2: 1.0}), {}, at=10.0)
    assert first.cpu is None and first.rx == 0  # nothing to compare with yet
    assert first.hostname == "host-n1" and first.cores == 2
    (v,) = t.round(
        _round(user=103, idle=101, rx=8000, sectors=40, procs={1: 5.5, 2: 2.0, 3: 0.2}),
        {},
        at=12.0,
    )
    assert v.cpu is not None and v.cpu.usage == pytest.approx(0.75)  # 3 of 4 seconds busy
    assert v.rx == 4000.0 and v.tx == 4000.0  # 8000 bytes in 2 s
    assert v.read == pytest.approx(40 * SECTOR / 2)
    # one core had 4 s / 2 cores = 2 s: pid 2 used 1 s of it (50%), pid 1 0.5 s (25%), the new
    # pid 3 counts from its first sight (0%)
    assert [(p.pid, round(p.cpu)) for p in v.processes] == [(2, 50), (1, 25), (3, 0)]
    assert v.mem_share == pytest.approx(0.75)
    assert list(v.history["cpu"]) == pytest.approx([0.75])


def test_a_node_that_fails_is_unreachable_and_recovers_over_the_gap() -> None:
    from talos_apply.dashboard.data import Tracker

    t = Tracker(["n1", "n2"])
    both = {**_round(user=100, idle=100, rx=0)}
    for method, messages in _round(node="n2", user=50, idle=50).items():
        both[method] = both[method] + messages
    v1, v2 = t.round(both, {}, at=0.0)
    assert not v1.error and not v2.error
    (v1, v2) = t.round(_round(user=101, idle=101, rx=100), {"n2": "connection refused"}, at=1.0)
    assert v2.error == "connection refused" and not v1.error
    assert v1.rx == 100.0
    # n2 answers again 3 s after its last answer: rates over the whole gap
    again = _round(node="n2", user=53, idle=53, rx=600)
    (v1, v2) = t.round(again, {"n1": "timeout"}, at=3.0)
    assert v1.error == "timeout" and not v2.error
    assert v2.rx == 200.0 and v2.cpu is not None and v2.cpu.usage == pytest.approx(0.5)


def test_a_node_missing_from_a_reply_is_not_taken_as_answered() -> None:
    from talos_apply.dashboard.data import Tracker

    t = Tracker(["n1"])
    replies = _round(user=1, idle=1)
    del replies["Memory"]
    (v,) = t.round(replies, {}, at=0.0)
    assert v.error == "no answer to Memory" and not v.has_data


def test_gather_gives_a_whole_failure_to_every_node() -> None:
    import asyncio

    from libtalos.api.wire import NodeError
    from libtalos.errors import NetworkError
    from talos_apply.dashboard.data import gather

    async def down(method: str) -> Any:
        raise NetworkError("no endpoint could be reached: 127.0.0.1:1: Connection refused")

    replies, errors = asyncio.run(gather(down, ["a", "b"], timeout=5))
    assert replies == {} and set(errors) == {"a", "b"}
    assert "Connection refused" in errors["a"]

    async def partial(method: str) -> Any:
        return [], [NodeError("b", "b is down", 14)]

    replies, errors = asyncio.run(gather(partial, ["a", "b"], timeout=5))
    assert errors == {"b": "b is down"}  # a is not blamed for b


def test_text_helpers() -> None:
    from talos_apply.dashboard.data import bar, go_duration, si, sparkline

    assert [go_duration(s) for s in (0, 45, 125, 3605)] == ["0s", "45s", "2m5s", "1h0m5s"]
    assert [si(v) for v in (950, 1200, 3_400_000)] == ["950", "1.2k", "3.4M"]
    assert bar(0.5, 10) == "|||||....." and bar(2.0, 4) == "||||"
    assert sparkline([0, 1, 2], 5, 2.0) == "   ▄█"
    assert sparkline([0.01], 1, 100.0) == "▁"  # a small value still shows


def test_talos_apply_start_up_does_not_import_textual() -> None:
    code = "import sys, talos_apply.app; print(sorted(m for m in sys.modules if 'textual' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bad_interval_and_no_terminal_are_usage_errors(
    talosconfig_for: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from talosctl.cli import main

    tc = str(talosconfig_for(["127.0.0.1:1"], ["127.0.0.1:1"]))
    assert main(["--talosconfig", tc, "dashboard", "--update-interval", "soon"]) == 2
    assert "--update-interval" in capsys.readouterr().err
    assert main(["--talosconfig", tc, "dashboard", "-d", "1s"]) == 2  # pytest's stdin: no tty
    assert "needs a terminal" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "dashboard" in capsys.readouterr().out
