"""The test network the image's guests boot on, inside the pytest session's private netns.

tests/conftest.py moves the session into a network namespace of its own that holds only
``lo``; everything here is made in it and nothing leaves it: a bridge with the gateway address,
one tap per guest enslaved to the bridge (QEMU opens it by name), Debian's dnsmasq answering
DHCP on the bridge only (a fixed address per MAC, no DNS: ``--port=0``), and an HTTP server on
the gateway address that serves config files and records every request's path. There is no
route or NAT to any other interface: the namespace has none, and the gateway address is the
end of the road for the guests' packets.

:meth:`NetLab.close` ends dnsmasq and the HTTP server and deletes the links it made.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "tbr0"
GATEWAY = "10.88.0.1"
PREFIX = 24
DHCP_RANGE = ("10.88.0.100", "10.88.0.199")
MAC_PREFIX = "52:54:00:88:00:"  # QEMU's locally administered OUI, one octet per guest


def missing() -> str | None:
    """Why the lab cannot be made here, or ``None``."""
    if os.geteuid() != 0:
        return "the test network needs root (bridge, taps, dnsmasq)"
    for tool, package in (("ip", "iproute2"), ("dnsmasq", "dnsmasq-base")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (QEMU's tap needs it)"
    return None


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def _only_lo_or_ours() -> list[str]:
    """The links of this namespace other than ``lo`` and the lab's: must be none."""
    names = [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link").splitlines()]
    return [n for n in names if n not in ("lo", BRIDGE) and not n.startswith("ttap")]


@dataclass(frozen=True)
class Nic:
    """One guest's NIC: its tap on the bridge, its MAC and the address dnsmasq gives it."""

    tap: str
    mac: str
    address: str

    def qemu_args(self, model: str = "virtio-net-pci") -> list[str]:
        return [
            "-netdev",
            f"tap,id={self.tap},ifname={self.tap},script=no,downscript=no",
            "-device",
            f"{model},netdev={self.tap},mac={self.mac}",
        ]


@dataclass
class Served:
    """What the HTTP server hands out (path -> bytes) and the request paths it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with served.lock:
                served.requests.append(self.path)
                body = served.files.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base's name
            return  # the requests are recorded in ``served``

    return Handler


class NetLab:
    """The bridge, a tap per guest (``guests`` of them, :attr:`nics`), dnsmasq and the HTTP
    server. The taps exist before dnsmasq starts, so that it reads every MAC at once."""

    def __init__(self, work: Path, guests: int = 2) -> None:
        self.work = work
        self.guests = guests
        self.hosts = work / "dhcp-hosts"
        self.leases = work / "dnsmasq.leases"
        self.log = work / "dnsmasq.log"
        self.nics: list[Nic] = []
        self.served = Served()
        self._dnsmasq: subprocess.Popen[bytes] | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> NetLab:
        stray = _only_lo_or_ours()
        if stray:  # not the session's private namespace: touch nothing
            raise RuntimeError(f"refusing to build the test network beside links {stray}")
        self.work.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text("")
        ip("link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        ip("addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        self._http = http.server.ThreadingHTTPServer((GATEWAY, 0), _handler(self.served))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        for _ in range(self.guests):
            self._add()
        first, last = DHCP_RANGE
        self._dnsmasq = subprocess.Popen(
            [
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                f"--interface={BRIDGE}",
                "--bind-interfaces",
                "--except-interface=lo",
                f"--dhcp-range={first},{last},255.255.255.0,1h",
                f"--dhcp-hostsfile={self.hosts}",
                f"--dhcp-leasefile={self.leases}",
                f"--dhcp-option=option:router,{GATEWAY}",
                "--log-dhcp",
                f"--log-facility={self.log}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def close(self) -> None:
        if self._dnsmasq is not None:
            self._dnsmasq.terminate()
            try:
                self._dnsmasq.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._dnsmasq.kill()
                self._dnsmasq.wait()
            self._dnsmasq = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for nic in self.nics:
            subprocess.run(["ip", "link", "delete", nic.tap], capture_output=True, check=False)
        self.nics.clear()
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)

    def __enter__(self) -> NetLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- guests -----------------------------------------------------------------------------

    def _add(self) -> Nic:
        """A tap on the bridge and a fixed address for a new MAC."""
        n = len(self.nics) + 1
        nic = Nic(f"ttap{n}", f"{MAC_PREFIX}{n:02x}", f"10.88.0.{10 + n}")
        ip("tuntap", "add", "dev", nic.tap, "mode", "tap")
        ip("link", "set", nic.tap, "master", BRIDGE)
        ip("link", "set", nic.tap, "up")
        self.nics.append(nic)
        self.hosts.write_text("".join(f"{x.mac},{x.address}\n" for x in self.nics))
        return nic

    # -- the HTTP server --------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._http is not None, "start() first"
        return int(self._http.server_address[1])

    def url(self, path: str) -> str:
        return f"http://{GATEWAY}:{self.port}{path}"

    def serve(self, path: str, body: bytes) -> str:
        """Serve ``body`` at ``path``; its URL."""
        with self.served.lock:
            self.served.files[path] = body
        return self.url(path)

    def requests(self) -> list[str]:
        with self.served.lock:
            return list(self.served.requests)

    def dnsmasq_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
