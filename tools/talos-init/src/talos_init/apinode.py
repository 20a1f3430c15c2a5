"""The machine API on a talos-init node: the :class:`talos_init.api.node.Node` adapter and the
lifecycle of the API servers (maintenance, configured, trustd) and of etcd.

:class:`NodeApi` is what :class:`talos_init.node.Node` calls at four points of its life:

- ``enter_maintenance()`` / ``leave_maintenance()``: no config yet: the maintenance server
  (ephemeral Ed25519 certificate, server-only TLS) on the API port, and the console banner of
  TALOS-FACTS §7.3; an accepted config goes through ``Node.apply_configuration`` like a dropped
  file;
- ``configured()``: a config is loaded, services are about to start: the etcd service when this
  control-plane node has etcd data (it restarts with it), and, in the background, the configured
  server (mutual TLS with ``machine.ca``; control planes issue their own certificate and serve
  trustd on :50001, workers ask trustd of the control-plane endpoint with ``machine.token``);
- ``stop()``: the node reboots or stops.

Certificates, CSR signatures, etcd's certificates, the static pods and the admin kubeconfig are
made by a short-lived child (:mod:`talos_init.api.issuer`), so that PID 1 never loads
``cryptography``; the API certificate is renewed at half-life (:mod:`talos_init.api.renewal`).

:class:`ApiNode` translates the API's calls into the node's: apply (maintenance, reboot,
no_reboot, staged, try), bootstrap (etcd as a new cluster), services, logs, etcd members.
Everything runs on the node's asyncio loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import platform
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libtalos.errors import DocumentError, TalosError
from libtalos.secrets import CertKey
from talos_init import __version__, configsource
from talos_init import etcd as etcdmod
from talos_init.api.node import (
    AppliedConfig,
    ApplyMode,
    EtcdMember,
    NodeCallError,
    ServiceEvent,
    ServiceStatus,
    Status,
    VersionInfo,
)
from talos_init.supervisor import State, UnknownServiceError

if TYPE_CHECKING:
    from talos_init.api.renewal import CertRenewal, Issued
    from talos_init.api.server import ApiServer
    from talos_init.api.trustd import TrustdServer
    from talos_init.node import Node as InitNode

CONTROL_PLANE_TYPES = ("init", "controlplane")
WORKER_TYPES = ("join", "worker")
STOP_GRACE = 2.0  # seconds calls in flight get when a server stops
TRUSTD_RETRY = 1.0  # seconds between a worker's certificate requests
ETCD_JOIN_RETRY = 0.5  # seconds between a control plane's attempts to join etcd
ETCD_JOIN_PATIENCE = 20.0  # seconds a joining node waits for another's join to complete
ETCD_LEAVE_WAIT = 15.0  # seconds a graceful reset waits for etcd to accept the member's removal
NO_KUBELET = "kubelet binary not found: the kubelet service is skipped"


def _ts(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def node_addresses() -> list[str]:
    """The node's own addresses (its network namespace), loopback and link-local left out.

    Read with one ioctl (SIOCGIFCONF: IPv4) and /proc/net/if_inet6 (IPv6) rather than netlink:
    pyroute2 would add about 10 MiB to PID 1 for one listing.
    """
    import array
    import fcntl
    import struct

    siocgifconf = 0x8912
    entry = 40  # sizeof(struct ifreq) on 64-bit Linux
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        buf = array.array("B", b"\0" * entry * 128)
        addr, _ = buf.buffer_info()
        req = struct.pack("iL", len(buf), addr)
        size = struct.unpack("iL", fcntl.ioctl(sock.fileno(), siocgifconf, req))[0]
        raw = buf.tobytes()[:size]
        for off in range(0, size, entry):
            found.append(socket.inet_ntoa(raw[off + 20 : off + 24]))
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hexaddr = line.split()[0]
        found.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    out = []
    for text in found:
        ip = ipaddress.ip_address(text)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            out.append(str(ip))
    return list(dict.fromkeys(out))


def _b64pair(pair: Any, key: str) -> CertKey:
    if pair is None or not pair.crt:
        raise TalosError(f"{key}: missing")
    try:
        return CertKey(base64.b64decode(pair.crt), base64.b64decode(pair.key or ""))
    except ValueError:
        raise TalosError(f"{key}: not valid base64") from None


class ApiNode:
    """:class:`talos_init.api.node.Node` on top of talos-init's node and supervisor."""

    def __init__(self, api: NodeApi) -> None:
        self._api = api

    @property
    def _node(self) -> InitNode:
        return self._api.node

    # -- identity -------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        return self._api.hostname()

    @hostname.setter
    def hostname(self, value: str) -> None:
        raise AttributeError("hostname follows the node's config; it cannot be set")

    @property
    def machine_type(self) -> str:
        config = self._node.config
        return config.machine_type if config is not None else ""

    @machine_type.setter
    def machine_type(self, value: str) -> None:
        raise AttributeError("machine_type follows the node's config; it cannot be set")

    @property
    def platform_mode(self) -> str:
        return self._node.options.mode

    @platform_mode.setter
    def platform_mode(self, value: str) -> None:
        raise AttributeError("platform_mode follows the node's config; it cannot be set")

    def version(self) -> VersionInfo:
        mode = self._node.options.mode
        return VersionInfo(
            tag=f"v{__version__}",
            runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
            arch=platform.machine(),
            platform=mode,
            platform_mode=mode,
        )

    def config_text(self) -> str | None:
        config = self._node.config
        return config.text if config is not None else None

    # -- config ---------------------------------------------------------------------------

    async def apply_configuration(
        self, text: str, mode: ApplyMode, try_timeout: dt.timedelta | None
    ) -> AppliedConfig:
        node = self._node
        try:
            if self._api.maintenance:
                node.apply_configuration(text, "<api>")  # the maintenance wait takes it
                return AppliedConfig(ApplyMode.REBOOT, "Applied configuration with a reboot")
            config = configsource.parse(text, "<api>", node.options.mode)
        except DocumentError as exc:
            raise NodeCallError(Status.INVALID_ARGUMENT, exc.message) from None
        if mode is ApplyMode.STAGED:
            configsource.persist(node.state, config)
            return AppliedConfig(mode, "Staged configuration to be applied after a reboot")
        if mode is ApplyMode.TRY:
            previous = node.config
            node.config = config
            timeout = try_timeout or dt.timedelta(minutes=1)
            asyncio.get_running_loop().call_later(
                timeout.total_seconds(), self._rollback, config, previous
            )
            self._api.config_changed()
            return AppliedConfig(mode, f"Applied configuration in try mode for {timeout}")
        configsource.persist(node.state, config)
        if mode is ApplyMode.NO_REBOOT:
            node.config = config
            self._api.config_changed()
            return AppliedConfig(mode, "Applied configuration without a reboot")
        node.console.log("config applied through the API: rebooting")
        node.reboot()
        return AppliedConfig(ApplyMode.REBOOT, "Applied configuration with a reboot")

    def _rollback(self, tried: Any, previous: Any) -> None:
        node = self._node
        if node.config is tried:
            node.config = previous
            node.console.log("try mode: timeout reached, rolled back to the previous config")
            self._api.config_changed()

    async def admin_kubeconfig(self) -> bytes:
        """The Kubeconfig RPC's document, made in a child (a new admin certificate each call)."""
        config = self._node.config
        if config is None:
            raise NodeCallError(Status.FAILED_PRECONDITION, "the node has no config")
        try:
            made = await self._api.issue({"op": "kubeconfig", "config": config.text})
        except TalosError as exc:
            raise NodeCallError(Status.FAILED_PRECONDITION, exc.message) from None
        return str(made["kubeconfig"]).encode()

    # -- lifecycle ------------------------------------------------------------------------

    def etcd_data_exists(self) -> bool:
        return self._api.etcd_layout().has_data()

    async def bootstrap(self) -> None:
        await self._api.bootstrap_etcd()

    async def reboot(self, powercycle: bool) -> None:
        self._node.console.log("reboot requested through the API")
        self._node.reboot()

    async def shutdown(self, force: bool) -> None:
        self._node.console.log("shutdown requested through the API")
        self._node.shutdown()

    async def reset(self, graceful: bool, reboot: bool, wipe_labels: list[str]) -> None:
        labels = {label.upper() for label in wipe_labels} or {"STATE", "EPHEMERAL"}
        unknown = labels - {"STATE", "EPHEMERAL"}
        if unknown:
            raise NodeCallError(
                Status.INVALID_ARGUMENT,
                f"unknown system partition(s): {', '.join(sorted(unknown))} "
                "(STATE and EPHEMERAL can be wiped)",
            )
        node = self._node
        node.console.log(f"reset requested through the API: wiping {', '.join(sorted(labels))}")
        if graceful and etcdmod.SERVICE_ID in node.supervisor.services:
            await self._leave_etcd()
        await node.supervisor.stop_all()
        for label, path in (("STATE", node.state), ("EPHEMERAL", node.ephemeral)):
            if label in labels:
                _wipe(path)
        if reboot:
            node.reboot()
        else:
            node.shutdown()

    async def _leave_etcd(self) -> None:
        """Graceful reset: remove this member from etcd while the others keep quorum (a single
        member is left alone: removing the last member is refused by etcd)."""
        layout = self._api.etcd_layout()
        deadline = time.monotonic() + ETCD_LEAVE_WAIT
        while True:
            try:
                members = await etcdmod.member_list(layout)
                own = [m for m in members if m.get("name") == self.hostname]
                if len(members) > 1 and own:
                    await etcdmod.member_remove(layout, int(own[0].get("ID", 0)))
                    self._node.console.log(f"reset: left etcd (member {self.hostname})")
                return
            except TalosError as exc:
                # etcd refuses a removal until its leader has seen every member for 5 s (a
                # member that has just reconnected): that passes, so wait for it, bounded
                if "unhealthy cluster" in exc.message and time.monotonic() < deadline:
                    await asyncio.sleep(ETCD_JOIN_RETRY)
                    continue
                raise NodeCallError(
                    Status.FAILED_PRECONDITION, f"graceful reset: cannot leave etcd: {exc.message}"
                ) from None

    # -- services -------------------------------------------------------------------------

    def services(self) -> list[ServiceStatus]:
        out = []
        for svc in self._node.supervisor.services.values():
            events = [ServiceEvent(e.message, str(e.state), _ts(e.timestamp)) for e in svc.events]
            out.append(
                ServiceStatus(
                    id=svc.spec.id,
                    state=str(svc.state),
                    healthy=svc.healthy if svc.spec.health is not None else svc.up or None,
                    last_message=events[-1].message if events else "",
                    last_change=events[-1].ts if events else None,
                    events=events,
                )
            )
        kubelet = self._api.kubelet_skipped()
        if kubelet is not None:
            out.append(kubelet)
        return out

    async def service_action(self, service_id: str, action: str) -> str:
        sup = self._node.supervisor
        if service_id == "kubelet" and self._api.kubelet_skipped() is not None:
            raise NodeCallError(Status.FAILED_PRECONDITION, NO_KUBELET)
        try:
            if action == "start":
                sup.start(service_id)
                return f"Service {service_id!r} started"
            if action == "stop":
                await sup.stop(service_id)
                return f"Service {service_id!r} stopped"
            if action == "restart":
                await sup.restart(service_id)
                return f"Service {service_id!r} restarted"
        except UnknownServiceError:
            raise NodeCallError(Status.NOT_FOUND, f"service {service_id!r} not found") from None
        raise NodeCallError(Status.INVALID_ARGUMENT, f"unknown service action {action!r}")

    async def logs(self, service_id: str, follow: bool, tail: int | None) -> AsyncIterator[bytes]:
        node = self._node
        if service_id == "machined":
            ring = node.console.ring
        else:
            try:
                ring = node.supervisor.log(service_id)
            except UnknownServiceError:
                raise NodeCallError(Status.NOT_FOUND, f"service {service_id!r} not found") from None
        if not follow:
            for line in ring.lines(tail):
                yield (line + "\n").encode()
            return
        start = len(ring.lines()) if tail is None else tail
        async for line in ring.follow(start):
            yield (line + "\n").encode()

    # -- etcd -----------------------------------------------------------------------------

    async def etcd_members(self) -> list[EtcdMember]:
        if self.machine_type in WORKER_TYPES:
            raise NodeCallError(Status.FAILED_PRECONDITION, "etcd does not run on workers")
        if etcdmod.SERVICE_ID not in self._node.supervisor.services:
            raise NodeCallError(
                Status.FAILED_PRECONDITION, "etcd is not running on this node (bootstrap first)"
            )
        try:
            members = await etcdmod.member_list(self._api.etcd_layout())
        except TalosError as exc:
            raise NodeCallError(Status.UNAVAILABLE, exc.message) from None
        return [
            EtcdMember(
                id=int(m.get("ID", 0)),
                hostname=str(m.get("name", "")),
                peer_urls=list(m.get("peerURLs", [])),
                client_urls=list(m.get("clientURLs", [])),
                is_learner=bool(m.get("isLearner", False)),
            )
            for m in members
        ]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _import_api() -> None:
    """Load the API modules (grpclib, protobuf: a few hundred ms) in a worker thread."""
    import importlib

    for name in ("talos_init.api.server", "talos_init.api.trustd"):
        importlib.import_module(name)


def _issued(made: dict[str, Any]) -> Issued:
    cert = CertKey(str(made["crt"]).encode(), str(made["key"]).encode())
    return cert, float(made["not_before"]), float(made["not_after"])


def _wipe(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


class NodeApi:
    """The API servers and etcd of one talos-init node (see the module docstring)."""

    def __init__(self, node: InitNode, port: int, host: str | None = None) -> None:
        self.node = node
        self.port = port
        self.host = host
        self.adapter = ApiNode(self)
        self.maintenance = False
        self.server: ApiServer | None = None
        self.trustd: TrustdServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._addresses: list[str] | None = None
        self._etcd_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.renewal: CertRenewal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set once configured

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- node facts -----------------------------------------------------------------------

    def hostname(self) -> str:
        config = self.node.config
        name = (config.hostname if config is not None else None) or self.node.options.cmdline.get(
            "talos.hostname"
        )
        return name or socket.gethostname()

    async def addresses(self) -> list[str]:
        if self._addresses is None:
            try:
                self._addresses = await asyncio.to_thread(node_addresses)
            except OSError as exc:
                self.node.console.log(f"machine API: cannot list addresses: {exc.strerror}")
                self._addresses = []
        return self._addresses

    def _system_dir(self) -> Path:
        """/system inside an isolated node; the state directory's parent otherwise."""
        if self.node.state == Path("/system/state"):
            return Path("/system")
        return self.node.options.state_dir / "system"

    def etcd_layout(self) -> etcdmod.EtcdLayout:
        return etcdmod.EtcdLayout(
            pki_dir=self._system_dir() / "secrets" / "etcd",
            data_dir=self.node.ephemeral / "lib" / "etcd",
        )

    def _typed_config(self) -> Any:
        from libtalos.config import load

        config = self.node.config
        if config is None:
            raise NodeCallError(Status.FAILED_PRECONDITION, "the node has no config")
        return load(config.text, config.source).config

    def kubelet_skipped(self) -> ServiceStatus | None:
        if self.node.config is None or shutil.which("kubelet") is not None:
            return None
        now = dt.datetime.now(dt.UTC)
        return ServiceStatus(
            id="kubelet",
            state=str(State.SKIPPED),
            healthy=None,
            last_message=NO_KUBELET,
            last_change=now,
            events=[ServiceEvent(NO_KUBELET, str(State.SKIPPED), now)],
        )

    # -- maintenance ----------------------------------------------------------------------

    async def issue(self, request: dict[str, Any], timeout: float | None = None) -> Any:
        """Certificate work in a short-lived child (PID 1 never loads cryptography)."""
        from talos_init.api.issuer import ISSUE_TIMEOUT, issue

        return await issue(self.node.reaper, request, timeout or ISSUE_TIMEOUT)

    async def enter_maintenance(self) -> None:
        await asyncio.to_thread(_import_api)  # off the loop: services keep being supervised
        from talos_init.api import ApiServer, MaintenanceCert, maintenance_banner

        addresses = await self.addresses()
        try:
            made = await self.issue(
                {"op": "maintenance", "addresses": addresses, "hostname": self.hostname()}
            )
        except TalosError as exc:
            self.node.console.log(f"maintenance service: {exc.message}")
            return
        # The ephemeral CA's key is never needed again: the child kept it, and is gone.
        server_cert = CertKey(made["crt"].encode(), made["key"].encode())
        cert = MaintenanceCert(CertKey(b""), server_cert, made["fingerprint"])
        server = ApiServer.maintenance(self.adapter, cert)
        try:
            port = await server.start(host=self.host, port=self.port)
        except OSError as exc:
            self.node.console.log(
                f"maintenance service: cannot listen on :{self.port}: {exc.strerror}"
            )
            return
        self.server = server
        self.maintenance = True
        for line in maintenance_banner(addresses, cert.fingerprint):
            if line != "starting maintenance service":  # the node has said it already
                self.node.console.log(line)
        self.node.console.log(f"maintenance service listening on :{port}")

    async def leave_maintenance(self) -> None:
        await self._stop_server()
        self.maintenance = False

    # -- configured -----------------------------------------------------------------------

    def configured(self) -> None:
        """The configured server, and etcd on a control plane that has etcd data (it restarts
        with it), started in the background: the boot does not wait for them."""
        config = self.node.config
        if config is None:
            return
        self._loop = asyncio.get_running_loop()
        if config.machine_type in CONTROL_PLANE_TYPES and self.etcd_layout().has_data():
            self._spawn(self._restart_etcd(), "etcd-restart")
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="machine-api")
        self._task.add_done_callback(self._serve_done)

    async def _restart_etcd(self) -> None:
        await self.addresses()
        async with self._etcd_lock:
            self.node.console.log("etcd: data found in EPHEMERAL: starting with it")
            try:
                spec = await asyncio.to_thread(self._etcd_spec_sync, "existing-data")
            except TalosError as exc:
                self.node.console.log(f"etcd: not started: {exc.message}")
                return
            self._start_etcd(spec)

    def _serve_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            what = exc.message if isinstance(exc, TalosError) else type(exc).__name__
            self.node.console.log(f"machine API: not started: {what}")

    async def _serve(self) -> None:
        await asyncio.to_thread(_import_api)
        from talos_init.api import ApiServer
        from talos_init.api.renewal import CertRenewal
        from talos_init.api.trustd import TrustdServer

        cfg = self._typed_config()
        config = self.node.config
        assert config is not None  # noqa: S101 - _typed_config checked it
        addresses = await self.addresses()
        hostname = self.hostname()
        sans = [str(s) for s in cfg.machine.cert_sans or []]
        names = {"addresses": [*addresses, "127.0.0.1"], "hostname": hostname, "sans": sans}
        reissue: Any
        if config.machine_type in CONTROL_PLANE_TYPES:
            machine_ca = _b64pair(cfg.machine.ca, "machine.ca")
            if not machine_ca.key:
                raise TalosError("machine.ca.key: missing on a control-plane node")
            ca = {"ca_crt": machine_ca.crt.decode(), "ca_key": machine_ca.key.decode()}
            ttl = self.node.options.cert_ttl

            async def reissue() -> Issued:
                made = await self.issue({"op": "node", **ca, **names, "ttl": ttl})
                return _issued(made)

            async def sign(csr: bytes, peer: str | None, reserved: Sequence[str]) -> bytes:
                made = await self.issue({"op": "sign", **ca, "csr": csr.decode("ascii"),
                                         "peer": peer, "reserved": list(reserved)})  # fmt: skip
                return str(made["crt"]).encode()

            issued = await reissue()
            trustd = TrustdServer(
                machine_ca,
                cfg.machine.token,
                addresses,
                hostname,
                cert_sans=sans,
                own=issued[0],
                signer=sign,
            )
            try:
                await trustd.start(host=self.host)
                self.trustd = trustd
            except OSError as exc:
                self.node.console.log(f"trustd: cannot listen: {exc.strerror}")
            if not self.etcd_layout().has_data() and config.machine_type == "controlplane":
                self._spawn(self._join_etcd(), "etcd-join")
            ca_crt = machine_ca.crt
        else:
            endpoints = self._trustd_endpoints(cfg)
            if not endpoints:
                self.node.console.log(
                    "machine API: no control-plane endpoint to ask trustd: API not served"
                )
                return
            self.node.console.log(f"trustd: asking {', '.join(endpoints)} for a certificate")
            request = {"op": "worker", "endpoints": endpoints, "token": cfg.machine.token,
                       **names, "timeout": 5.0}  # fmt: skip
            bound = 5.0 * len(endpoints) + 30.0

            async def reissue() -> Issued:
                made = await self.issue(request, bound)
                return _issued(made)

            last = ""
            while True:
                try:
                    made = await self.issue(request, bound)
                    break
                except TalosError as exc:
                    if exc.message != last:
                        self.node.console.log(f"trustd: {exc.message}; retrying")
                        last = exc.message
                    await asyncio.sleep(TRUSTD_RETRY)
            issued = _issued(made)
            # A worker's config carries no machine CA (Talos's join.yaml may carry only its
            # certificate): trustd's reply names the CA that client certificates must chain to.
            ca_crt = str(made["ca"]).encode()
            left = [str(n) for n in made.get("uncertified", [])]
            note = f" (not certified: {', '.join(left)})" if left else ""
            self.node.console.log(f"trustd: certificate issued{note}")
        server = ApiServer.configured(self.adapter, issued[0], ca_crt)
        try:
            port = await server.start(host=self.host, port=self.port)
        except OSError as exc:
            self.node.console.log(f"machine API: cannot listen on :{self.port}: {exc.strerror}")
            return
        self.server = server
        self.node.console.log(f"machine API listening on :{port} (mutual TLS)")
        self.renewal = CertRenewal(
            issued, reissue, self._install_cert, self.node.console.log,
            period=self.node.options.cert_check,
        )  # fmt: skip
        self._spawn(self.renewal.run(), "cert-renewal")

    def _install_cert(self, cert: CertKey) -> None:
        if self.server is not None:
            self.server.renew(cert)
        if self.trustd is not None:
            self.trustd.renew(cert)

    @staticmethod
    def _trustd_endpoints(cfg: Any) -> list[str]:
        from urllib.parse import urlsplit

        from libtalos.api import TRUSTD_PORT

        cp = cfg.cluster.control_plane
        host = urlsplit(cp.endpoint).hostname if cp is not None and cp.endpoint else None
        if not host:
            return []
        shown = f"[{host}]" if ":" in host else host
        return [f"{shown}:{TRUSTD_PORT}"]

    def config_changed(self) -> None:
        """A config applied without a reboot: re-render what depends on ``cluster``."""
        if etcdmod.SERVICE_ID in self.node.supervisor.services:
            self._spawn(self._render(), "render-control-plane")

    # -- etcd -----------------------------------------------------------------------------

    def _advertise_ip(self) -> str:
        addresses = self._addresses or []
        v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
        return (v4 or addresses or ["127.0.0.1"])[0]

    def _etcd_spec_sync(
        self, state: str, initial_cluster: dict[str, list[str]] | None = None
    ) -> Any:
        """Certificates written and the service spec made, in a worker thread (the caller has
        listed the addresses). The certificates and the command line come from the issuer
        child (PID 1 never loads cryptography), started on the node's loop."""
        config = self.node.config
        if config is None or self._loop is None:
            raise NodeCallError(Status.FAILED_PRECONDITION, "the node has no config")
        layout = self.etcd_layout()
        request = {
            "op": "etcd",
            "config": config.text,
            "hostname": self.hostname(),
            "ips": [*(self._addresses or []), "127.0.0.1"],
            "advertise_ip": self._advertise_ip(),
            # With data in the data directory etcd ignores the initial-cluster flags: "new" is
            # fine.
            "state": "existing" if state == "existing" else "new",
            "initial_cluster": initial_cluster,
            "pki_dir": str(layout.pki_dir),
            "data_dir": str(layout.data_dir),
        }
        made = asyncio.run_coroutine_threadsafe(self.issue(request), self._loop).result()
        return etcdmod.spec_for(layout, [str(a) for a in made["argv"]])

    async def bootstrap_etcd(self) -> None:
        async with self._etcd_lock:
            if self.etcd_layout().has_data():
                raise NodeCallError(Status.ALREADY_EXISTS, "etcd data directory is not empty")
            if etcdmod.SERVICE_ID in self.node.supervisor.services:
                raise NodeCallError(Status.ALREADY_EXISTS, "etcd is already running on this node")
            await self.addresses()
            try:
                spec = await asyncio.to_thread(self._etcd_spec_sync, "new")
            except TalosError as exc:
                raise NodeCallError(Status.FAILED_PRECONDITION, exc.message) from None
            self.node.console.log("bootstrap: starting etcd as a new cluster")
            self._start_etcd(spec)

    def _start_etcd(self, spec: Any) -> None:
        sup = self.node.supervisor
        sup.add(spec)
        sup.start(spec.id)
        self._spawn(self._after_etcd_up(), "etcd-up")

    async def _after_etcd_up(self) -> None:
        sup = self.node.supervisor
        while self.node.supervisor is sup and etcdmod.SERVICE_ID in sup.services:
            if sup.services[etcdmod.SERVICE_ID].up:
                await self._render()
                self._start_vip()
                return
            await sup.changed(5.0)

    def _start_vip(self) -> None:
        """talos-vip once etcd is up, on a control plane whose config has a shared IP."""
        from talos_init import vip

        try:
            spec = vip.service_spec(self._typed_config(), self.etcd_layout(), self.hostname())
        except NodeCallError:
            return
        sup = self.node.supervisor
        if spec is None or spec.id in sup.services:
            return
        if not vip.talos_vip().exists():
            self.node.console.log(f"vip: {vip.talos_vip()} is not installed; the shared IP is off")
            return
        sup.add(spec)
        sup.start(spec.id)

    async def _join_etcd(self) -> None:
        """A control plane without data joins the cluster of the control-plane endpoint once
        that has been bootstrapped: member add there, then etcd with ``existing``."""
        from urllib.parse import urlsplit

        from libtalos.k8s.etcd import peer_url

        cfg = self._typed_config()
        cp = cfg.cluster.control_plane
        host = urlsplit(cp.endpoint).hostname if cp is not None and cp.endpoint else None
        addresses = await self.addresses()
        if not host or host in addresses or _is_loopback(host):
            return  # this node is the endpoint: it is bootstrapped, it does not join
        layout = self.etcd_layout()
        hostname = self.hostname()
        config = self.node.config
        if config is None:
            return
        # the client certificate the member calls below need, made by the issuer child (PID 1
        # never loads cryptography)
        await self.issue({
            "op": "etcd-certs", "config": config.text, "hostname": hostname,
            "ips": [*addresses, "127.0.0.1"],
            "pki_dir": str(layout.pki_dir), "data_dir": str(layout.data_dir),
        })  # fmt: skip
        own = peer_url(self._advertise_ip())
        self.node.console.log(f"etcd: waiting to join the cluster at {host}")
        last = ""
        patience: float | None = None  # until when another member's join is waited for
        while True:
            async with self._etcd_lock:
                if etcdmod.SERVICE_ID in self.node.supervisor.services:
                    return  # bootstrapped here meanwhile
                try:
                    members = await etcdmod.member_list(layout, host)
                    known = {str(m.get("name", "")) for m in members}
                    peers = {u for m in members for u in m.get("peerURLs", [])}
                    joining = [m for m in members if not m.get("name")]
                    if not joining or own in peers:
                        patience = None
                    elif patience is None:
                        patience = time.monotonic() + ETCD_JOIN_PATIENCE
                    if patience is not None and time.monotonic() < patience:
                        # another node is joining (added, not started): one join at a time
                        # keeps quorum within reach; a member that never starts is waited
                        # for only so long, then this node joins beside it
                        raise etcdmod.EtcdError("another member is joining; waiting for it")
                    if not (own in peers and hostname not in known):
                        # not a member yet (one added by an earlier attempt that died is
                        # reused as it is): add it, then list the members that include it
                        await etcdmod.member_add(layout, host, own)
                        members = await etcdmod.member_list(layout, host)
                    # Every member with its peer URLs, this node under its hostname. Another
                    # member added but not started yet (two nodes joining at once) has no
                    # name: it gets a stand-in, as names must be unique in --initial-cluster
                    # and etcd matches members by peer URLs. Folded into this node's entry,
                    # it would be missing, and etcd would refuse every start with "member
                    # count is unequal".
                    initial: dict[str, list[str]] = {}
                    for m in members:
                        urls = [str(u) for u in m.get("peerURLs", [])]
                        name = hostname if own in urls else str(m.get("name", ""))
                        initial[name or f"unstarted-{m.get('ID', len(initial))}"] = urls
                    initial[hostname] = [own]
                    spec = await asyncio.to_thread(self._etcd_spec_sync, "existing", initial)
                except TalosError as exc:
                    if exc.message != last:
                        self.node.console.log(f"etcd: join: {exc.message}; retrying")
                        last = exc.message
                    await asyncio.sleep(ETCD_JOIN_RETRY)
                    continue
                self.node.console.log(f"etcd: joining as {hostname} ({own})")
                self._start_etcd(spec)
                return

    async def _render(self) -> None:
        """Static pods, their certificates and kubeconfigs, written by the issuer child."""
        config = self.node.config
        if config is None:
            return
        request = {
            "op": "render",
            "config": config.text,
            "hostname": self.hostname(),
            "ips": [*(self._addresses or []), "127.0.0.1"],
            "system": str(self._system_dir()),
        }
        try:
            made = await self.issue(request)
            message = str(made["message"])
        except TalosError as exc:
            message = f"control plane: static pods not rendered: {exc.message}"
        self.node.console.log(message)

    # -- stop -----------------------------------------------------------------------------

    async def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop(grace=STOP_GRACE)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
        await self._stop_server()
        trustd, self.trustd = self.trustd, None
        if trustd is not None:
            await trustd.stop()
        for task in list(self._background):
            task.cancel()
        self.renewal = None
        self.maintenance = False
        self._addresses = None


def render_control_plane_files(cfg: Any, hostname: str, ips: list[str], system: Path) -> str:
    """Static pods, their certificates and kubeconfigs under ``system``; the console message
    (the issuer child runs this: it loads cryptography)."""
    from libtalos.fsutil import atomic_write
    from libtalos.k8s import ControlPlaneInput, render_control_plane

    try:
        secrets_dir = system / "secrets" / "kubernetes"
        assets = render_control_plane(
            cfg, ControlPlaneInput(hostname=hostname, ips=ips, secrets_dir=str(secrets_dir))
        )
        manifests = system / "kubernetes" / "manifests"
        manifests.mkdir(mode=0o755, parents=True, exist_ok=True)
        for rel, (data, mode) in assets.secrets.items():
            target = secrets_dir / rel
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(target, data, mode=mode)
        for name, text in assets.manifests.items():
            atomic_write(manifests / name, text, mode=0o600)
    except TalosError as exc:
        return f"control plane: static pods not rendered: {exc.message}"
    except OSError as exc:
        return f"control plane: static pods not rendered: {exc.strerror}"
    names = ", ".join(sorted(assets.manifests))
    return f"control plane: static pod manifests in {manifests}: {names}"
