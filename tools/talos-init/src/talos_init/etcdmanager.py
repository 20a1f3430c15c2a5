"""etcd on a control-plane node: bootstrap, join, restart with its data, leave.

:class:`EtcdManager` runs etcd as a supervised service of the :class:`~talos_init.node.Node`:

- :meth:`~EtcdManager.restart`: a control plane with etcd data in EPHEMERAL starts etcd with it;
- :meth:`~EtcdManager.bootstrap`: etcd as a new cluster (the Bootstrap call);
- :meth:`~EtcdManager.join`: a control plane without data joins the cluster of the control-plane
  endpoint once that has been bootstrapped (member add there, then etcd with ``existing``);
- :meth:`~EtcdManager.leave`: a graceful reset removes this member while the others keep quorum.

Once etcd is up, the control plane's static pods, their certificates and kubeconfigs are rendered
and talos-vip starts when the config has a shared IP (:mod:`talos_init.vip`). Certificates and
etcd's command line come from the issuer child (:mod:`talos_init.api.issuer`: PID 1 never loads
``cryptography``), reached through the ``issue`` callable it is given. Everything runs on the
node's loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from libtalos.errors import TalosError
from talos_init import etcd
from talos_init.addresses import Addresses, is_loopback
from talos_init.background import Background

if TYPE_CHECKING:
    from talos_init.node import Node
    from talos_init.services import ServiceSpec

JOIN_RETRY = 0.5  # seconds between a control plane's attempts to join etcd
JOIN_PATIENCE = 20.0  # seconds a joining node waits for another's join to complete
LEAVE_WAIT = 15.0  # seconds a graceful reset waits for etcd to accept the member's removal

Issue = Callable[[dict[str, Any]], Awaitable[Any]]  # one request to the issuer child: its reply


class EtcdExistsError(TalosError):
    """Bootstrap refused: etcd has data or runs on this node already."""


NOT_FOUND = 5  # gRPC status codes of the refusals below
FAILED_PRECONDITION = 9


class EtcdRefusedError(TalosError):
    """A membership change refused before etcd is asked: ``status`` is the gRPC code it
    answers with (:data:`NOT_FOUND`, :data:`FAILED_PRECONDITION`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _names(members: list[dict[str, Any]]) -> str:
    return ", ".join(sorted(str(m.get("name") or f"(unstarted {m.get('ID')})") for m in members))


class EtcdManager:
    def __init__(self, node: Node, addresses: Addresses, issue: Issue) -> None:
        self.node = node
        self.addresses = addresses
        self._issue = issue
        self._lock = asyncio.Lock()  # one of bootstrap, join, restart at a time
        self._background = Background()

    # -- facts ------------------------------------------------------------------------------

    def layout(self) -> etcd.EtcdLayout:
        return etcd.EtcdLayout(
            pki_dir=self.node.system_dir() / "secrets" / "etcd",
            data_dir=self.node.ephemeral_dir() / "lib" / "etcd",
        )

    def has_data(self) -> bool:
        return self.layout().has_data()

    def running(self) -> bool:
        """etcd is a service of this node (started, or starting)."""
        return etcd.SERVICE_ID in self.node.supervisor.services

    async def members(self) -> list[dict[str, Any]]:
        """The cluster's members, as this node's etcd lists them (EtcdError if it cannot)."""
        return await etcd.member_list(self.layout())

    # -- start ------------------------------------------------------------------------------

    def start_restart(self) -> None:
        """:meth:`restart` in the background (the boot does not wait for it)."""
        self._background.spawn(self.restart(), "etcd-restart")

    def start_join(self) -> None:
        """:meth:`join` in the background."""
        self._background.spawn(self.join(), "etcd-join")

    async def restart(self) -> None:
        await self.addresses.get()
        async with self._lock:
            self.node.console.log("etcd: data found in EPHEMERAL: starting with it")
            try:
                spec = await self._spec("existing-data")
            except TalosError as exc:
                self.node.console.log(f"etcd: not started: {exc.message}")
                return
            self._start(spec)

    async def bootstrap(self) -> None:
        """etcd as a new cluster; EtcdExistsError when it has data or runs already, another
        TalosError when it cannot be prepared."""
        async with self._lock:
            if self.has_data():
                raise EtcdExistsError("etcd data directory is not empty")
            if self.running():
                raise EtcdExistsError("etcd is already running on this node")
            await self.addresses.get()
            spec = await self._spec("new")
            self.node.console.log("bootstrap: starting etcd as a new cluster")
            self._start(spec)

    async def join(self) -> None:
        """Join the cluster at the control-plane endpoint (a node that is the endpoint is
        bootstrapped instead: it does not join)."""
        from urllib.parse import urlsplit

        from libtalos.k8s.etcd import peer_url

        config = self.node.config
        if config is None:
            return
        cp = config.model.cluster.control_plane
        host = urlsplit(cp.endpoint).hostname if cp is not None and cp.endpoint else None
        addresses = await self.addresses.get()
        if not host or host in addresses or is_loopback(host):
            return
        layout = self.layout()
        hostname = self.node.hostname()
        # the client certificate the member calls below need, made by the issuer child
        await self._issue(
            {
                "op": "etcd-certs",
                "config": config.text,
                "hostname": hostname,
                "ips": [*addresses, "127.0.0.1"],
                "pki_dir": str(layout.pki_dir),
                "data_dir": str(layout.data_dir),
            }
        )
        own = peer_url(self.addresses.advertise_ip())
        self.node.console.log(f"etcd: waiting to join the cluster at {host}")
        last = ""
        patience: float | None = None  # until when another member's join is waited for
        while True:
            async with self._lock:
                if self.running():
                    return  # bootstrapped here meanwhile
                try:
                    members = await etcd.member_list(layout, host)
                    known = {str(m.get("name", "")) for m in members}
                    peers = {u for m in members for u in m.get("peerURLs", [])}
                    joining = [m for m in members if not m.get("name")]
                    if not joining or own in peers:
                        patience = None
                    elif patience is None:
                        patience = time.monotonic() + JOIN_PATIENCE
                    if patience is not None and time.monotonic() < patience:
                        # another node is joining (added, not started): one join at a time
                        # keeps quorum within reach; a member that never starts is waited
                        # for only so long, then this node joins beside it
                        raise etcd.EtcdError("another member is joining; waiting for it")
                    if not (own in peers and hostname not in known):
                        # not a member yet (one added by an earlier attempt that died is
                        # reused as it is): add it, then list the members that include it
                        await etcd.member_add(layout, host, own)
                        members = await etcd.member_list(layout, host)
                    spec = await self._spec("existing", _initial_cluster(members, hostname, own))
                except TalosError as exc:
                    if exc.message != last:
                        self.node.console.log(f"etcd: join: {exc.message}; retrying")
                        last = exc.message
                    await asyncio.sleep(JOIN_RETRY)
                    continue
                self.node.console.log(f"etcd: joining as {hostname} ({own})")
                self._start(spec)
                return

    async def _spec(
        self, state: str, initial_cluster: dict[str, list[str]] | None = None
    ) -> ServiceSpec:
        """Certificates written and the service spec made (the caller has listed the
        addresses): the certificates and the command line come from the issuer child."""
        config = self.node.config
        if config is None:
            raise etcd.EtcdError("the node has no config")
        layout = self.layout()
        made = await self._issue(
            {
                "op": "etcd",
                "config": config.text,
                "hostname": self.node.hostname(),
                "ips": [*self.addresses.listed, "127.0.0.1"],
                "advertise_ip": self.addresses.advertise_ip(),
                # With data in the data directory etcd ignores the initial-cluster flags: "new" is
                # fine.
                "state": "existing" if state == "existing" else "new",
                "initial_cluster": initial_cluster,
                "pki_dir": str(layout.pki_dir),
                "data_dir": str(layout.data_dir),
            }
        )
        return etcd.spec_for(layout, [str(a) for a in made["argv"]])

    def _start(self, spec: ServiceSpec) -> None:
        sup = self.node.supervisor
        sup.add(spec)
        sup.start(spec.id)
        self._background.spawn(self._after_up(), "etcd-up")

    async def _after_up(self) -> None:
        sup = self.node.supervisor
        while self.node.supervisor is sup and etcd.SERVICE_ID in sup.services:
            if sup.services[etcd.SERVICE_ID].up:
                await self.render()
                self._start_vip()
                return
            await sup.changed(5.0)

    def _start_vip(self) -> None:
        """talos-vip once etcd is up, on a control plane whose config has a shared IP."""
        from talos_init import vip

        config = self.node.config
        if config is None:
            return
        spec = vip.service_spec(config.model, self.layout(), self.node.hostname())
        sup = self.node.supervisor
        if spec is None or spec.id in sup.services:
            return
        if not vip.talos_vip().exists():
            self.node.console.log(f"vip: {vip.talos_vip()} is not installed; the shared IP is off")
            return
        sup.add(spec)
        sup.start(spec.id)

    # -- control plane ----------------------------------------------------------------------

    async def render(self) -> None:
        """Static pods, their certificates and kubeconfigs, written by the issuer child."""
        config = self.node.config
        if config is None:
            return
        request = {
            "op": "render",
            "config": config.text,
            "hostname": self.node.hostname(),
            "ips": [*self.addresses.listed, "127.0.0.1"],
            "system": str(self.node.system_dir()),
        }
        try:
            made = await self._issue(request)
            message = str(made["message"])
        except TalosError as exc:
            message = f"control plane: static pods not rendered: {exc.message}"
        self.node.console.log(message)

    def config_changed(self) -> None:
        """A config applied without a reboot: re-render what depends on ``cluster``."""
        if self.running():
            self._background.spawn(self.render(), "render-control-plane")

    # -- leave and stop ---------------------------------------------------------------------

    async def leave(self) -> None:
        """Remove this member from etcd while the others keep quorum (a single member is left
        alone: etcd refuses to remove the last member); TalosError when it cannot."""
        layout = self.layout()
        hostname = self.node.hostname()
        deadline = time.monotonic() + LEAVE_WAIT
        while True:
            try:
                members = await etcd.member_list(layout)
                own = [m for m in members if m.get("name") == hostname]
                if len(members) > 1 and own:
                    await etcd.member_remove(layout, int(own[0].get("ID", 0)))
                    self.node.console.log(f"reset: left etcd (member {hostname})")
                return
            except etcd.EtcdError as exc:
                # etcd refuses a removal until its leader has seen every member for 5 s (a
                # member that has just reconnected): that passes, so wait for it, bounded
                if exc.code == etcd.UNHEALTHY and time.monotonic() < deadline:
                    await asyncio.sleep(JOIN_RETRY)
                    continue
                raise

    async def _remove(self, member_id: int) -> None:
        """Remove a member, waiting (bounded) while etcd answers "unhealthy cluster" (a member
        that has just reconnected)."""
        deadline = time.monotonic() + LEAVE_WAIT
        while True:
            try:
                await etcd.member_remove(self.layout(), member_id)
                return
            except etcd.EtcdError as exc:
                if exc.code == etcd.UNHEALTHY and time.monotonic() < deadline:
                    await asyncio.sleep(JOIN_RETRY)
                    continue
                raise

    async def remove_member(self, name: str) -> None:
        """EtcdRemoveMember: remove the member called ``name`` (a node that cannot leave by
        itself); the last member is never removed."""
        async with self._lock:
            members = await etcd.member_list(self.layout())
            found = [m for m in members if m.get("name") == name]
            if not found:
                raise EtcdRefusedError(
                    f"etcd member {name!r} not found (members: {_names(members)})", NOT_FOUND
                )
            if len(members) == 1:
                raise EtcdRefusedError(
                    f"etcd member {name!r} is the only member: etcd cannot remove the last one",
                    FAILED_PRECONDITION,
                )
            await self._remove(int(found[0].get("ID", 0)))
            self.node.console.log(f"etcd: member {name} removed through the API")

    async def leave_cluster(self) -> None:
        """EtcdLeaveCluster: remove this node's member, stop etcd (and talos-vip, which
        needs it) and remove etcd's data, which is no use once the member is gone."""
        import shutil

        from talos_init import vip

        hostname = self.node.hostname()
        async with self._lock:
            members = await etcd.member_list(self.layout())
            own = [m for m in members if m.get("name") == hostname]
            if not own:
                raise EtcdRefusedError(
                    f"this node ({hostname}) is not an etcd member (members: {_names(members)})",
                    NOT_FOUND,
                )
            if len(members) == 1:
                raise EtcdRefusedError(
                    f"this node ({hostname}) is the only etcd member: etcd cannot remove the "
                    "last one",
                    FAILED_PRECONDITION,
                )
            await self._remove(int(own[0].get("ID", 0)))
            sup = self.node.supervisor
            for sid in (vip.SERVICE_ID, etcd.SERVICE_ID):
                if sid in sup.services:
                    await sup.stop(sid)
                    sup.services.pop(sid, None)
            await asyncio.to_thread(shutil.rmtree, self.layout().data_dir, True)
            self.node.console.log(
                f"etcd: left the cluster (member {hostname}): etcd stopped, its data removed"
            )

    async def forfeit_leadership(self) -> str:
        """EtcdForfeitLeadership: when this node's member leads, hand the leadership to
        another started member; returns that member's name ("" when this one did not lead)."""
        hostname = self.node.hostname()
        layout = self.layout()
        members = await etcd.member_list(layout)
        if len(members) == 1:
            raise EtcdRefusedError(
                "cannot forfeit leadership: this node is the only etcd member",
                FAILED_PRECONDITION,
            )
        own = [m for m in members if m.get("name") == hostname]
        if not own:
            raise EtcdRefusedError(f"this node ({hostname}) is not an etcd member", NOT_FOUND)
        own_id = int(own[0].get("ID", 0))
        if int((await etcd.status(layout)).get("leader", 0)) != own_id:
            return ""
        for m in members:
            if int(m.get("ID", 0)) != own_id and m.get("name") and not m.get("isLearner"):
                await etcd.move_leader(layout, int(m["ID"]))
                self.node.console.log(f"etcd: leadership moved from {hostname} to {m['name']}")
                return str(m["name"])
        raise EtcdRefusedError(
            "cannot forfeit leadership: no other started member to hand it to",
            FAILED_PRECONDITION,
        )

    def stop(self) -> None:
        """The node stops: its background work (start, join, render) is cancelled."""
        self._background.cancel()


def _initial_cluster(
    members: list[dict[str, Any]], hostname: str, own: str
) -> dict[str, list[str]]:
    """Every member with its peer URLs, this node under its hostname. Another member added but
    not started yet (two nodes joining at once) has no name: it gets a stand-in, as names must
    be unique in ``--initial-cluster`` and etcd matches members by peer URLs. Folded into this
    node's entry, it would be missing, and etcd would refuse every start with "member count is
    unequal"."""
    initial: dict[str, list[str]] = {}
    for m in members:
        urls = [str(u) for u in m.get("peerURLs", [])]
        name = hostname if own in urls else str(m.get("name", ""))
        initial[name or f"unstarted-{m.get('ID', len(initial))}"] = urls
    initial[hostname] = [own]
    return initial
