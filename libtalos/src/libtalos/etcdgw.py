"""A small etcd v3 client over the JSON gateway etcd serves at ``/v3/...`` on its client port.

etcd's gRPC gateway takes and answers JSON: keys and values travel base64-encoded and 64-bit
numbers arrive as decimal strings. :class:`Client` has what this project's tools ask of etcd:
leases (grant, keep-alive, revoke, time-to-live), a prefix range, a create-if-absent
transaction and a delete (talos-vip's election), and the member list, add and remove (a
control-plane node joining or leaving). Every call has a timeout, so a caller that keeps its own
deadline is never blocked past it.

Errors are one class, :class:`EtcdError`; its ``code`` says, for the refusals a caller acts on,
which one it was (:data:`UNHEALTHY`), and is ``None`` otherwise. :func:`error_code` is the one
place that reads etcd's wire errors. ``http.client`` is imported on the first connection, not
with this module: talos-init (PID 1) imports it at start and keeps its memory small.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libtalos.errors import NetworkError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client

UNHEALTHY = "unhealthy"
"""etcd refused because the cluster is not healthy enough for the request ("etcdserver:
unhealthy cluster": e.g. a member removal while the leader has not yet seen every member)."""

_CODES = {"etcdserver: unhealthy cluster": UNHEALTHY}  # etcd's error message -> our code


class EtcdError(NetworkError):
    """etcd cannot be used: it could not be reached, timed out or answered with an error (or,
    where a tool runs etcd itself, it could not be prepared).

    ``code`` is one of this module's codes (:data:`UNHEALTHY`) when etcd's answer says which
    refusal it is, ``None`` otherwise.
    """

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


def error_code(message: str) -> str | None:
    """The code of etcd's error ``message`` (the gateway's ``message`` or ``error``), if any."""
    return _CODES.get(message.strip())


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    lease: int


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def client_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """TLS towards etcd: the server chains to the CA file ``ca`` (to the system's CAs when none
    is given) and names the endpoint; the client certificate ``cert`` with ``key`` is presented
    when given. ``ssl.SSLError`` or ``OSError`` when the files cannot be used."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode(errors="replace")


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return base64.b64encode(bytes(raw[: i + 1])).decode()
    return base64.b64encode(b"\0").decode()


def _members(answer: Any) -> list[dict[str, Any]]:
    members = answer.get("members", []) if isinstance(answer, dict) else []
    return members if isinstance(members, list) else []


class Client:
    """Talks to the first endpoint that answers; moves to the next one on failure.

    ``context`` is the TLS used for ``https`` endpoints (see :func:`client_context`). One
    connection is kept open between calls; :meth:`close` drops it.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        context: ssl.SSLContext | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._current = 0
        self._conn: http.client.HTTPConnection | None = None
        self._ssl = context

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        if self._conn is None:
            ep = self.endpoints[self._current]
            if ep.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    ep.host, ep.port, timeout=timeout, context=self._ssl
                )
            else:
                self._conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def call(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """POST ``body`` to ``/v3/<path>`` and return the decoded answer."""
        import http.client

        t = self.timeout if timeout is None else max(0.01, timeout)
        data = json.dumps(body).encode()
        ep = self.endpoints[self._current]
        try:
            conn = self._connect(t)
            conn.request(
                "POST", f"/v3/{path}", body=data, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            payload = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:  # timeouts are OSError
            self.close()
            self._current = (self._current + 1) % len(self.endpoints)
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise EtcdError(f"etcd {ep}: {path}: {reason}") from None
        try:
            answer = json.loads(payload)
        except ValueError:
            self.close()
            raise EtcdError(f"etcd {ep}: {path}: answer is not JSON (HTTP {status})") from None
        if status != 200 or (isinstance(answer, dict) and "error" in answer):
            message = ""
            if isinstance(answer, dict):
                message = str(answer.get("message") or answer.get("error") or "")
            raise EtcdError(
                f"etcd {ep}: {path}: HTTP {status}: {message}", code=error_code(message)
            )
        return answer

    # --- leases -------------------------------------------------------------------------

    def grant(self, ttl: int, *, timeout: float | None = None) -> tuple[int, int]:
        """A new lease: returns ``(id, granted_ttl)``."""
        ans = self.call("lease/grant", {"TTL": ttl}, timeout=timeout)
        return int(ans["ID"]), int(ans.get("TTL", 0))

    def keepalive(self, lease: int, *, timeout: float | None = None) -> int:
        """Renew a lease; returns its TTL, 0 when etcd no longer has it."""
        ans = self.call("lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        result = ans.get("result", ans)
        return int(result.get("TTL", 0))

    def revoke(self, lease: int, *, timeout: float | None = None) -> None:
        try:
            self.call("lease/revoke", {"ID": str(lease)}, timeout=timeout)
        except EtcdError as exc:
            if "not found" not in str(exc):
                raise

    def time_to_live(self, lease: int, *, timeout: float | None = None) -> tuple[int, int]:
        """``(remaining_ttl, granted_ttl)``; remaining is -1 when the lease is gone."""
        ans = self.call("kv/lease/timetolive", {"ID": str(lease)}, timeout=timeout)
        return int(ans.get("TTL", -1)), int(ans.get("grantedTTL", 0))

    # --- keys ----------------------------------------------------------------------------

    def range_prefix(self, prefix: str, *, timeout: float | None = None) -> list[KeyValue]:
        """Every key under ``prefix``, oldest creation first."""
        ans = self.call(
            "kv/range",
            {
                "key": _b64(prefix),
                "range_end": prefix_end(prefix),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
            },
            timeout=timeout,
        )
        out = [
            KeyValue(
                key=_unb64(kv["key"]),
                value=_unb64(kv.get("value", "")),
                create_revision=int(kv.get("create_revision", 0)),
                lease=int(kv.get("lease", 0)),
            )
            for kv in ans.get("kvs", [])
        ]
        out.sort(key=lambda kv: kv.create_revision)
        return out

    def create(self, key: str, value: str, lease: int, *, timeout: float | None = None) -> bool:
        """Put ``key`` only if it does not exist; True when this call created it."""
        k = _b64(key)
        ans = self.call(
            "kv/txn",
            {
                "compare": [
                    {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                ],
                "success": [{"request_put": {"key": k, "value": _b64(value), "lease": str(lease)}}],
            },
            timeout=timeout,
        )
        return bool(ans.get("succeeded", False))

    def delete(self, key: str, *, timeout: float | None = None) -> None:
        self.call("kv/deleterange", {"key": _b64(key)}, timeout=timeout)

    # --- members -------------------------------------------------------------------------

    def member_list(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every member as etcd describes it (``ID``, ``name``, ``peerURLs``, ``clientURLs``)."""
        return _members(self.call("cluster/member/list", {}, timeout=timeout))

    def member_add(
        self, peer_urls: Sequence[str], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Add a member with ``peer_urls``; returns every member after the addition (the new
        one has no name until it starts)."""
        answer = self.call("cluster/member/add", {"peerURLs": list(peer_urls)}, timeout=timeout)
        return _members(answer)

    def member_remove(self, member_id: int, *, timeout: float | None = None) -> None:
        self.call("cluster/member/remove", {"ID": str(member_id)}, timeout=timeout)
