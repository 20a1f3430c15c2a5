"""talos-vip's etcd: the endpoints and TLS files named by its ``--etcd-*`` options.

The client itself, with the lease, range, transaction and delete calls the election makes, is
:mod:`libtalos.etcdgw` (etcd's JSON gateway at ``/v3/...``). Here the options become a
:class:`Client`: endpoints are parsed, and the TLS files are checked and loaded with messages
that name the option (never what was read from the files).
"""

from __future__ import annotations

import http.client  # noqa: F401 - loaded now, not inside the first call and its deadline
import os
import ssl
import urllib.parse
from collections.abc import Sequence

from libtalos import etcdgw
from libtalos.errors import TalosError, UsageError
from libtalos.etcdgw import Endpoint, EtcdError, KeyValue

__all__ = ["Client", "Endpoint", "EtcdError", "KeyValue", "parse_endpoints"]


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


class Client(etcdgw.Client):
    """The gateway client, with TLS from the ``--etcd-ca``, ``--etcd-cert`` and ``--etcd-key``
    files (used for ``https`` endpoints, and whenever a CA or certificate is given)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        timeout: float = 1.0,
    ) -> None:
        context = None
        if any(e.scheme == "https" for e in endpoints) or ca or cert:
            context = _tls_context(ca, cert, key)
        super().__init__(endpoints, context=context, timeout=timeout)


def _tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    if (cert is None) != (key is None):
        raise TalosError("--etcd-cert and --etcd-key go together: give both or neither")
    for flag, path in (("--etcd-ca", ca), ("--etcd-cert", cert), ("--etcd-key", key)):
        if path is not None and not os.path.isfile(path):
            raise TalosError(f"{flag}: {path}: no such file")
        if path is not None and not os.access(path, os.R_OK):
            raise TalosError(f"{flag}: {path}: permission denied")
    try:
        ctx = etcdgw.client_context(ca, cert, key)
        if ca:
            ctx.load_default_certs()  # --etcd-ca adds to the system's CAs, it does not replace them
    except (ssl.SSLError, OSError):
        # Only the file names: never what was read from them.
        raise TalosError(
            f"etcd TLS material is not valid PEM or does not match "
            f"(ca={ca}, cert={cert}, key={key})"
        ) from None
    return ctx
