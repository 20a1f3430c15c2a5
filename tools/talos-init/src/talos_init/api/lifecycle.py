"""The machine API on a talos-init node: its servers and their certificates, over the node's life.

:class:`ApiLifecycle` is the :class:`~talos_init.node.NodeHooks` of a node that serves the API
(attached by :func:`talos_init.wiring.make_node`):

- ``enter_maintenance()`` / ``leave_maintenance()``: no config yet: the maintenance server
  (ephemeral Ed25519 certificate, server-only TLS) on the API port, and the console banner; an
  accepted config goes through ``Node.apply_configuration`` like a dropped file;
- ``configured()``: a config is loaded, services are about to start: etcd when this
  control-plane node has etcd data (it restarts with it), and, in the background, the configured
  server (mutual TLS with ``machine.ca``). A control plane issues its own certificate, serves
  trustd on :50001 and joins etcd when it has no data (:func:`serve_control_plane`); a worker
  asks trustd of the control-plane endpoint with ``machine.token`` (:func:`certify_worker`);
- ``stop()``: the node reboots or stops.

Certificates and CSR signatures are made by a short-lived child (:mod:`talos_init.api.issuer`),
so that PID 1 never loads ``cryptography``; the API certificate is renewed at half-life
(:mod:`talos_init.api.renewal`). The API's calls reach the node through
:class:`~talos_init.api.adapter.InitBackend`; etcd is the node's
:class:`~talos_init.etcdmanager.EtcdManager`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from libtalos.errors import TalosError
from libtalos.secrets import CertKey
from talos_init.api.adapter import InitBackend
from talos_init.background import Background

if TYPE_CHECKING:
    from talos_init.addresses import Addresses
    from talos_init.api.issuer import Issuer
    from talos_init.api.renewal import CertRenewal, Issued
    from talos_init.api.server import ApiServer
    from talos_init.api.trustd import TrustdServer
    from talos_init.etcdmanager import EtcdManager
    from talos_init.node import Node

STOP_GRACE = 2.0  # seconds calls in flight get when a server stops
TRUSTD_RETRY = 1.0  # seconds between a worker's certificate requests

Reissue = Callable[[], Awaitable["Issued"]]
Certified = tuple["Issued", Reissue, bytes]  # the certificate, how to renew it, the client CA


def _import_api() -> None:
    """Load the API modules (grpclib, protobuf: a few hundred ms) in a worker thread."""
    import importlib

    for name in ("talos_init.api.server", "talos_init.api.trustd"):
        importlib.import_module(name)


def _b64pair(pair: Any, key: str) -> CertKey:
    if pair is None or not pair.crt:
        raise TalosError(f"{key}: missing")
    try:
        return CertKey(base64.b64decode(pair.crt), base64.b64decode(pair.key or ""))
    except ValueError:
        raise TalosError(f"{key}: not valid base64") from None


def _issued(made: dict[str, Any]) -> Issued:
    cert = CertKey(str(made["crt"]).encode(), str(made["key"]).encode())
    return cert, float(made["not_before"]), float(made["not_after"])


def trustd_endpoints(cfg: Any) -> list[str]:
    """trustd of the control-plane endpoint (``host:50001``), or none without an endpoint."""
    from urllib.parse import urlsplit

    from libtalos.api import TRUSTD_PORT

    cp = cfg.cluster.control_plane
    host = urlsplit(cp.endpoint).hostname if cp is not None and cp.endpoint else None
    if not host:
        return []
    shown = f"[{host}]" if ":" in host else host
    return [f"{shown}:{TRUSTD_PORT}"]


class ApiLifecycle:
    """The API servers of one talos-init node (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        port: int,
        etcd: EtcdManager,
        addresses: Addresses,
        issue: Issuer,
        *,
        host: str | None = None,
        cert_ttl: float | None = None,
        cert_check: float = 3600.0,
    ) -> None:
        self.node = node
        self.port = port
        self.host = host
        self.etcd = etcd
        self.addresses = addresses
        self.issue = issue
        self.cert_ttl = cert_ttl
        self.cert_check = cert_check
        self.backend = InitBackend(node, etcd, issue, lambda: self.maintenance)
        self.maintenance = False
        self.server: ApiServer | None = None
        self.trustd: TrustdServer | None = None
        self.renewal: CertRenewal | None = None
        self._task: asyncio.Task[None] | None = None
        self._background = Background()

    def log(self, message: str) -> None:
        self.node.console.log(message)

    # -- maintenance ----------------------------------------------------------------------

    async def enter_maintenance(self) -> None:
        await asyncio.to_thread(_import_api)  # off the loop: services keep being supervised
        from talos_init.api import ApiServer, MaintenanceCert, maintenance_banner

        addresses = await self.addresses.get()
        try:
            made = await self.issue(
                {"op": "maintenance", "addresses": addresses, "hostname": self.node.hostname()}
            )
        except TalosError as exc:
            self.log(f"maintenance service: {exc.message}")
            return
        # The ephemeral CA's key is never needed again: the child kept it, and is gone.
        server_cert = CertKey(made["crt"].encode(), made["key"].encode())
        cert = MaintenanceCert(CertKey(b""), server_cert, made["fingerprint"])
        server = ApiServer.maintenance(self.backend, cert)
        try:
            port = await server.start(host=self.host, port=self.port)
        except OSError as exc:
            self.log(f"maintenance service: cannot listen on :{self.port}: {exc.strerror}")
            return
        self.server = server
        self.maintenance = True
        for line in maintenance_banner(addresses, cert.fingerprint):
            if line != "starting maintenance service":  # the node has said it already
                self.log(line)
        self.log(f"maintenance service listening on :{port}")

    async def leave_maintenance(self) -> None:
        await self._stop_server()
        self.maintenance = False
        self.addresses.clear()  # listed again once the config's network is set up

    # -- configured -----------------------------------------------------------------------

    def configured(self) -> None:
        """The configured server, and etcd on a control plane that has etcd data (it restarts
        with it), started in the background: the boot does not wait for them."""
        config = self.node.config
        if config is None:
            return
        if config.model.machine.is_control_plane() and self.etcd.has_data():
            self.etcd.start_restart()
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="machine-api")
        self._task.add_done_callback(self._serve_done)

    def _serve_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            what = exc.message if isinstance(exc, TalosError) else type(exc).__name__
            self.log(f"machine API: not started: {what}")

    async def _serve(self) -> None:
        await asyncio.to_thread(_import_api)
        config = self.node.config
        if config is None:
            raise TalosError("the node has no config")
        cfg = config.model
        names = {
            "addresses": [*await self.addresses.get(), "127.0.0.1"],
            "hostname": self.node.hostname(),
            "sans": [str(s) for s in cfg.machine.cert_sans or []],
        }
        certified: Certified | None
        if cfg.machine.is_control_plane():
            certified = await serve_control_plane(self, cfg, names)
        else:
            certified = await certify_worker(self, cfg, names)
        if certified is not None:
            await self._listen(*certified)

    async def _listen(self, issued: Issued, reissue: Reissue, ca_crt: bytes) -> None:
        """The configured server with ``issued``, renewed at half-life through ``reissue``."""
        from talos_init.api import ApiServer
        from talos_init.api.renewal import CertRenewal

        server = ApiServer.configured(self.backend, issued[0], ca_crt)
        try:
            port = await server.start(host=self.host, port=self.port)
        except OSError as exc:
            self.log(f"machine API: cannot listen on :{self.port}: {exc.strerror}")
            return
        self.server = server
        self.log(f"machine API listening on :{port} (mutual TLS)")
        self.renewal = CertRenewal(
            issued, reissue, self._install_cert, self.log, period=self.cert_check
        )
        self._background.spawn(self.renewal.run(), "cert-renewal")

    def _install_cert(self, cert: CertKey) -> None:
        if self.server is not None:
            self.server.renew(cert)
        if self.trustd is not None:
            self.trustd.renew(cert)

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
        self._background.cancel()
        self.etcd.stop()
        self.renewal = None
        self.maintenance = False
        self.addresses.clear()


async def serve_control_plane(api: ApiLifecycle, cfg: Any, names: dict[str, Any]) -> Certified:
    """A control plane's certificate from ``machine.ca``, trustd for the workers, and etcd's
    join when this node has no etcd data."""
    from talos_init.api.trustd import TrustdServer

    machine_ca = _b64pair(cfg.machine.ca, "machine.ca")
    if not machine_ca.key:
        raise TalosError("machine.ca.key: missing on a control-plane node")
    ca = {"ca_crt": machine_ca.crt.decode(), "ca_key": machine_ca.key.decode()}

    async def reissue() -> Issued:
        return _issued(await api.issue({"op": "node", **ca, **names, "ttl": api.cert_ttl}))

    async def sign(csr: bytes, peer: str | None, reserved: Sequence[str]) -> bytes:
        made = await api.issue(
            {
                "op": "sign",
                **ca,
                "csr": csr.decode("ascii"),
                "peer": peer,
                "reserved": list(reserved),
            }
        )
        return str(made["crt"]).encode()

    issued = await reissue()
    addresses = await api.addresses.get()
    trustd = TrustdServer(
        machine_ca,
        cfg.machine.token,
        addresses,
        names["hostname"],
        cert_sans=names["sans"],
        own=issued[0],
        signer=sign,
    )
    try:
        await trustd.start(host=api.host)
        api.trustd = trustd
    except OSError as exc:
        api.log(f"trustd: cannot listen: {exc.strerror}")
    if not api.etcd.has_data() and cfg.machine.type == "controlplane":
        api.etcd.start_join()  # an init node is bootstrapped instead
    return issued, reissue, machine_ca.crt


async def certify_worker(api: ApiLifecycle, cfg: Any, names: dict[str, Any]) -> Certified | None:
    """A worker's certificate from trustd of the control-plane endpoint, asked until it comes
    (None: no endpoint to ask, the API is not served)."""
    endpoints = trustd_endpoints(cfg)
    if not endpoints:
        api.log("machine API: no control-plane endpoint to ask trustd: API not served")
        return None
    api.log(f"trustd: asking {', '.join(endpoints)} for a certificate")
    request = {
        "op": "worker",
        "endpoints": endpoints,
        "token": cfg.machine.token,
        **names,
        "timeout": 5.0,
    }
    bound = 5.0 * len(endpoints) + 30.0

    async def reissue() -> Issued:
        return _issued(await api.issue(request, bound))

    last = ""
    while True:
        try:
            made = await api.issue(request, bound)
            break
        except TalosError as exc:
            if exc.message != last:
                api.log(f"trustd: {exc.message}; retrying")
                last = exc.message
            await asyncio.sleep(TRUSTD_RETRY)
    # A worker's config carries no machine CA (Talos's join.yaml may carry only its
    # certificate): trustd's reply names the CA that client certificates must chain to.
    left = [str(n) for n in made.get("uncertified", [])]
    note = f" (not certified: {', '.join(left)})" if left else ""
    api.log(f"trustd: certificate issued{note}")
    return _issued(made), reissue, str(made["ca"]).encode()
