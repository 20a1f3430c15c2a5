"""A throwaway network for testing and benchmarking shared IPs (used by tests/vip and by
bench/vip_bench.py, which adds tests/ to its import path).

Everything lives in network namespaces created here, so no packet can leave the machine:

* ``<p>-br``: a bridge ``br0`` (the LAN), one port per node and one for the observer;
* ``<p>-n1`` .. ``<p>-nN``: a node each, ``eth0`` on the LAN and ``etcd0`` towards etcd;
* ``<p>-obs``: the observer, ``eth0`` on the LAN, capturing ARP and neighbour advertisements;
* ``<p>-etcd``: a real etcd on its own bridge ``ebr``, reachable from every node's ``etcd0``.

A node can be cut from the LAN (its bridge port goes down) or from etcd (its etcd port goes
down) separately. :meth:`Lab.close` kills every process started here and deletes every
namespace (which deletes the links), also after a failure. Shaped like pyroute2's fixtures:
unique names, one cleanup registry, a capability probe that names what is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from talos_vip.arp import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_P_ARP,
    ETH_P_IPV6,
    ICMPV6_NEIGHBOR_ADVERT,
    format_mac,
)

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
LAN4 = ipaddress.ip_network("10.66.0.0/24")
LAN6 = ipaddress.ip_network("fd66::/64")
ETCD_NET = ipaddress.ip_network("10.67.0.0/24")
ETCD_IP = "10.67.0.1"
T = TypeVar("T")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


def _setns(name: str) -> None:
    """Move the calling thread into network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread inside namespace ``name`` (sockets it makes stay there)."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            _setns(name)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            box["error"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def probe() -> str | None:
    """None when the lab can run here, else the missing capability, worded for a skip."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    name = f"tvprobe{secrets.token_hex(3)}"
    try:
        r = _run("ip", "netns", "add", name, check=False)
        if r.returncode != 0:
            return f"cannot create a network namespace: {r.stderr.strip()}"
        r = _run(
            "ip", "-n", name, "link", "add", "pa", "type", "veth", "peer", "name", "pb", check=False
        )
        if r.returncode != 0:
            return f"cannot create a veth pair: {r.stderr.strip()}"
        r = _run("ip", "-n", name, "link", "add", "br0", "type", "bridge", check=False)
        if r.returncode != 0:
            return f"cannot create a bridge: {r.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", name, check=False)
    return None


def etcd_probe() -> str | None:
    if shutil.which("etcd") is None:
        return "needs etcd (Debian package etcd-server)"
    return None


@dataclass
class Capture:
    """One announcement frame seen by the observer."""

    at: float  # monotonic
    kind: str  # "arp-request", "arp-reply", "na"
    mac: str  # Ethernet source
    ip: str  # the address announced
    detail: dict[str, Any] = field(default_factory=dict)


def parse_announcement(frame: bytes) -> tuple[str, str, str, dict[str, Any]] | None:
    """(kind, source MAC, address, details) for a gratuitous ARP or an unsolicited NA."""
    if len(frame) < 14:
        return None
    src = format_mac(frame[6:12])
    (ethertype,) = struct.unpack("!H", frame[12:14])
    if ethertype == ETH_P_ARP and len(frame) >= 42:
        _, ptype, _, _, op, sha, spa, tha, tpa = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
        if ptype != 0x0800 or spa != tpa or op not in (ARP_REQUEST, ARP_REPLY):
            return None
        kind = "arp-request" if op == ARP_REQUEST else "arp-reply"
        ip = str(ipaddress.IPv4Address(spa))
        return kind, src, ip, {"sha": format_mac(sha), "tha": format_mac(tha)}
    if ethertype == ETH_P_IPV6 and len(frame) >= 14 + 40 + 24:
        ip6 = frame[14:54]
        if ip6[6] != 58:
            return None
        icmp = frame[54:]
        if icmp[0] != ICMPV6_NEIGHBOR_ADVERT:
            return None
        (flags,) = struct.unpack("!I", icmp[4:8])
        target = str(ipaddress.IPv6Address(icmp[8:24]))
        lladdr = None
        if len(icmp) >= 32 and icmp[24] == 2:
            lladdr = format_mac(icmp[26:32])
        return (
            "na",
            src,
            target,
            {
                "hop_limit": ip6[7],
                "dst": str(ipaddress.IPv6Address(ip6[24:40])),
                "flags": flags,
                "lladdr": lladdr,
                "checksum_ok": _icmp6_ok(ip6, icmp),
            },
        )
    return None


def _icmp6_ok(ip6: bytes, icmp: bytes) -> bool:
    (plen,) = struct.unpack("!H", ip6[4:6])
    body = icmp[:plen]
    data = ip6[8:40] + struct.pack("!I3xB", len(body), 58) + body
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


class Observer:
    """Captures announcements on the observer's LAN port (AF_PACKET, all ethertypes)."""

    def __init__(self, netns: str, ifname: str = "eth0") -> None:
        self.captures: list[Capture] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

        def opener() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((ifname, 0))
            s.settimeout(0.1)
            return s

        self._sock = in_netns(netns, opener)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            got = parse_announcement(frame)
            if got is not None:
                kind, mac, ip, detail = got
                with self._lock:
                    self.captures.append(Capture(time.monotonic(), kind, mac, ip, detail))

    def seen(self, *, ip: str | None = None, after: float = 0.0) -> list[Capture]:
        with self._lock:
            return [c for c in self.captures if c.at >= after and (ip is None or c.ip == ip)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


class Sampler:
    """Samples, over and over, which nodes hold an address; counts rounds with two holders.

    Nodes marked dead (crashed and cut off the LAN) are left out: a powered-off machine holds
    nothing, whatever its namespace still lists.
    """

    def __init__(self, namespaces: dict[str, str], address: str) -> None:
        from pyroute2 import NetNS

        self.address = address
        self.rounds = 0
        self.overlaps: list[tuple[float, list[str]]] = []
        self.history: list[tuple[float, tuple[str, ...]]] = []  # changes only
        self._ipr = {node: NetNS(ns) for node, ns in namespaces.items()}
        self._dead: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def mark_dead(self, node: str) -> None:
        """``node`` crashed and is off the LAN: whatever its kernel still has is no holder."""
        with self._lock:
            self._dead.add(node)

    def holders_now(self) -> list[str]:
        out = []
        with self._lock:
            live = {n: i for n, i in self._ipr.items() if n not in self._dead}
        for node, ipr in live.items():
            for msg in ipr.get_addr():
                if msg.get_attr("IFA_ADDRESS") == self.address:
                    out.append(node)
                    break
        return out

    def _loop(self) -> None:
        last: tuple[str, ...] | None = None
        while not self._stop.is_set():
            try:
                # Two passes in the same node order: X1 Y1 .. X2 Y2. A hand-over that happens
                # inside one pass can make X1 and Y1 both true without any instant with two
                # holders, so a round counts as an overlap only when one node was seen holding
                # on both sides of another node's positive read (X1, Y1, X2 or Y1, X2, Y2).
                first = set(self.holders_now())
                second = set(self.holders_now())
            except Exception:  # a namespace going away at close time ends the loop quietly
                if self._stop.is_set():
                    return
                raise
            order = list(self._ipr)
            both: list[str] = []
            for i, x in enumerate(order):
                for y in order[i + 1 :]:
                    if (x in first and x in second and y in first) or (
                        y in first and y in second and x in second
                    ):
                        both.extend(n for n in (x, y) if n not in both)
            now = time.monotonic()
            holders = tuple(n for n in order if n in second)
            with self._lock:
                self.rounds += 1
                if both:
                    self.overlaps.append((now, both))
                if holders != last:
                    self.history.append((now, holders))
                    last = holders
            self._stop.wait(0.005)

    def holders(self) -> tuple[str, ...]:
        with self._lock:
            return self.history[-1][1] if self.history else ()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for ipr in self._ipr.values():
            with contextlib.suppress(Exception):
                ipr.close()


@dataclass
class Node:
    name: str
    netns: str
    mac: str
    lan4: str
    lan6: str
    etcd_ip: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None


class Lab:
    """N nodes, an observer, a bridge and (optionally) an etcd, all in fresh namespaces."""

    def __init__(
        self,
        nodes: int = 3,
        *,
        with_etcd: bool = True,
        etcd_tls: dict[str, str] | None = None,
    ) -> None:
        """``etcd_tls`` (keys ca, cert, key, client_cert, client_key: PEM file paths) serves
        etcd over HTTPS and requires client certificates."""
        self.etcd_tls = etcd_tls
        self.prefix = f"tv{secrets.token_hex(3)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nodes: list[Node] = []
        self.etcd: subprocess.Popen[bytes] | None = None
        self.br = self._ns("br")
        self.obs = self._ns("obs")
        self.etcd_ns = self._ns("etcd")
        try:
            self._build(nodes)
            if with_etcd:
                self.start_etcd()
        except BaseException:
            self.close()
            raise

    # --- building -------------------------------------------------------------------------

    def _ns(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _build(self, count: int) -> None:
        _run("ip", "-n", self.br, "link", "add", "br0", "type", "bridge")
        # Forward at once (no STP listening delay), and no multicast snooping surprises.
        _run(
            "ip",
            "-n",
            self.br,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        )
        _run("ip", "-n", self.br, "link", "set", "br0", "up")
        _run("ip", "-n", self.etcd_ns, "link", "add", "ebr", "type", "bridge")
        _run("ip", "-n", self.etcd_ns, "link", "set", "ebr", "type", "bridge", "forward_delay", "0")
        _run("ip", "-n", self.etcd_ns, "addr", "add", f"{ETCD_IP}/24", "dev", "ebr")
        _run("ip", "-n", self.etcd_ns, "link", "set", "ebr", "up")
        self._lan_port(self.obs, "obs", "02:66:00:00:00:fe")
        _run("ip", "-n", self.obs, "addr", "add", f"{LAN4[2]}/24", "dev", "eth0")
        for i in range(1, count + 1):
            ns = self._ns(f"n{i}")
            mac = f"02:66:00:00:00:{i:02x}"
            node = Node(
                name=f"node{i}",
                netns=ns,
                mac=mac,
                lan4=str(LAN4[10 + i]),
                lan6=str(LAN6[0x10 + i]),
                etcd_ip=str(ETCD_NET[10 + i]),
            )
            self._lan_port(ns, f"n{i}", mac)
            _run("ip", "-n", ns, "addr", "add", f"{node.lan4}/24", "dev", "eth0")
            _run("ip", "-n", ns, "addr", "add", f"{node.lan6}/64", "dev", "eth0", "nodad")
            _run(
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "etcd0",
                "type",
                "veth",
                "peer",
                "name",
                f"e{i}",
                "netns",
                self.etcd_ns,
            )
            _run("ip", "-n", ns, "addr", "add", f"{node.etcd_ip}/24", "dev", "etcd0")
            _run("ip", "-n", ns, "link", "set", "etcd0", "up")
            _run("ip", "-n", self.etcd_ns, "link", "set", f"e{i}", "master", "ebr", "up")
            self.nodes.append(node)

    def _lan_port(self, ns: str, port: str, mac: str) -> None:
        _run(
            "ip",
            "-n",
            ns,
            "link",
            "add",
            "eth0",
            "address",
            mac,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            self.br,
        )
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.br, "link", "set", port, "master", "br0", "up")

    # --- etcd -----------------------------------------------------------------------------

    @property
    def etcd_endpoint(self) -> str:
        return f"{'https' if self.etcd_tls else 'http'}://{ETCD_IP}:2379"

    def client_tls(self) -> dict[str, str | None]:
        t = self.etcd_tls or {}
        return {"ca": t.get("ca"), "cert": t.get("client_cert"), "key": t.get("client_key")}

    def start_etcd(self) -> None:
        data = self.tmp / "etcd"
        log = (self.tmp / "etcd.log").open("ab")
        argv = [
            "ip",
            "netns",
            "exec",
            self.etcd_ns,
            "etcd",
            "--name",
            "lab",
            "--data-dir",
            str(data),
            "--listen-client-urls",
            self.etcd_endpoint,
            "--advertise-client-urls",
            self.etcd_endpoint,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "lab=http://127.0.0.1:2380",
        ]
        if self.etcd_tls:
            argv += [
                "--cert-file",
                self.etcd_tls["cert"],
                "--key-file",
                self.etcd_tls["key"],
                "--trusted-ca-file",
                self.etcd_tls["ca"],
                "--client-cert-auth",
            ]
        self.etcd = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        self.procs.append(self.etcd)
        log.close()
        self.wait_etcd()

    def wait_etcd(self, timeout: float = 30.0) -> None:
        from talos_vip.etcd import Client, EtcdError, parse_endpoints

        def ask() -> bool:
            c = Client(parse_endpoints(self.etcd_endpoint), timeout=0.5, **self.client_tls())
            try:
                c.range_prefix("lab-probe")
                return True
            except EtcdError:
                return False
            finally:
                c.close()

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.etcd is not None and self.etcd.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.etcd.returncode}; see {self.tmp}")
            if in_netns(self.etcd_ns, ask):
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not answer within {timeout}s; see {self.tmp}/etcd.log")

    def stop_etcd(self, sig: int = signal.SIGKILL) -> None:
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.send_signal(sig)
            self.etcd.wait(timeout=10)
        self.etcd = None

    def etcd_call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)`` with an etcd client inside the etcd namespace."""
        from talos_vip.etcd import Client, parse_endpoints

        def body() -> T:
            c = Client(parse_endpoints(self.etcd_endpoint), timeout=2.0, **self.client_tls())
            try:
                return fn(c)
            finally:
                c.close()

        return in_netns(self.etcd_ns, body)

    # --- processes and faults -------------------------------------------------------------

    def spawn(self, node: Node, argv: list[str], *, log_name: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``node``'s namespace (``ip netns exec`` execs it: same pid)."""
        node.log = self.tmp / f"{log_name}.log"
        with node.log.open("ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", node.netns, *argv],
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: signal() reaches its children
            )
        node.proc = proc
        self.procs.append(proc)
        return proc

    def signal(self, node: Node, sig: int) -> None:
        """Send ``sig`` to the process group started on ``node`` (daemon and its children)."""
        if node.proc is not None and node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, sig)

    def cut_lan(self, node: Node, up: bool = False) -> None:
        port = f"n{self.nodes.index(node) + 1}"
        _run("ip", "-n", self.br, "link", "set", port, "up" if up else "down")

    def cut_etcd(self, node: Node, up: bool = False) -> None:
        port = f"e{self.nodes.index(node) + 1}"
        _run("ip", "-n", self.etcd_ns, "link", "set", port, "up" if up else "down")

    def node_by_name(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(pred: Callable[[], T | None], timeout: float, what: str, step: float = 0.02) -> T:
    """Poll ``pred`` until it returns something truthy; raise naming ``what`` after ``timeout``.

    The timeout is a bound against hanging, not a measurement: tests never assert durations.
    """
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= end:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
