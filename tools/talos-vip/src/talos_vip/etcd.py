"""A small etcd v3 client over the JSON gateway etcd 3.4 serves at ``/v3/...``.

Only what the election needs: lease grant / keep-alive / revoke / time-to-live, a prefix range,
a create-if-absent transaction and a delete. Keys and values travel base64-encoded; 64-bit
numbers arrive as decimal strings. Every call has a timeout so the caller (which fences the VIP
by its own clock) is never blocked past its deadline. TLS client certificates are used when
given; their contents never appear in messages.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libtalos.errors import NetworkError, TalosError, UsageError


class EtcdError(NetworkError):
    """etcd could not be reached, timed out, or answered with an error."""


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


def parse_endpoints(text: str | Sequence[str], *, what: str = "--etcd-endpoints") -> list[Endpoint]:
    """``http(s)://host:port`` entries, comma-separated or as a list."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[Endpoint] = []
    for raw in (i.strip() for i in items):
        if not raw:
            continue
        url = urllib.parse.urlsplit(raw)
        try:
            port = url.port
        except ValueError:
            port = None
            bad = True
        else:
            bad = False
        if (
            bad
            or url.scheme not in ("http", "https")
            or not url.hostname
            or url.path not in ("", "/")
        ):
            raise UsageError(
                f"{what}: {raw!r} is not an etcd endpoint",
                hint="use http://HOST:PORT or https://HOST:PORT, comma-separated",
            )
        out.append(Endpoint(url.scheme, url.hostname, port or 2379))
    if not out:
        raise UsageError(f"{what}: no endpoint given")
    return out


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


class Client:
    """Talks to the first endpoint that answers; moves to the next one on failure."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._current = 0
        self._conn: http.client.HTTPConnection | None = None
        self._ssl: ssl.SSLContext | None = None
        if any(e.scheme == "https" for e in self.endpoints) or ca or cert:
            self._ssl = self._tls_context(ca, cert, key)

    @staticmethod
    def _tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
        if (cert is None) != (key is None):
            raise TalosError("--etcd-cert and --etcd-key go together: give both or neither")
        for flag, path in (("--etcd-ca", ca), ("--etcd-cert", cert), ("--etcd-key", key)):
            if path is not None and not os.path.isfile(path):
                raise TalosError(f"{flag}: {path}: no such file")
            if path is not None and not os.access(path, os.R_OK):
                raise TalosError(f"{flag}: {path}: permission denied")
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            if ca:
                ctx.load_verify_locations(cafile=ca)
            if cert and key:
                ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError):
            # Only the file names: never what was read from them.
            raise TalosError(
                f"etcd TLS material is not valid PEM or does not match "
                f"(ca={ca}, cert={cert}, key={key})"
            ) from None
        return ctx

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
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
            raise EtcdError(f"etcd {ep}: {path}: HTTP {status}: {message}")
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
