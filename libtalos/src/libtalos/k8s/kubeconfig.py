"""Kubeconfig documents (docs/talos-facts.md#control-plane).

:func:`kubeconfig` builds one document for one cluster/user/context; :func:`admin_kubeconfig`
is what ``talosctl kubeconfig`` returns: a fresh client certificate from the Kubernetes CA,
O=system:masters, valid ``cluster.adminKubeconfig.certLifetime`` (default one year), cluster
NAME, user and context ``admin@NAME``, namespace ``default``, server = the control-plane
endpoint.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

from libtalos import pki, yamlio
from libtalos.config.v1alpha1 import Config
from libtalos.errors import ParseError, PKIError, Problem, ValidationError
from libtalos.secrets import CertKey

ADMIN_COMMON_NAME = "apiserver-kubelet-client"  # v0.9's admin kubeconfig certificate CN
ADMIN_ORGANIZATION = "system:masters"

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig(
    *,
    cluster: str,
    server: str,
    ca_pem: bytes,
    client: CertKey,
    user: str,
    context: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig (``apiVersion: v1, kind: Config``) with its data embedded as base64."""
    ctx_name = context or f"{user}@{cluster}"
    ctx: dict[str, str] = {"cluster": cluster, "user": user}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.crt),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": ctx_name, "context": ctx}],
        "current-context": ctx_name,
        "preferences": {},
    }


def go_duration(text: str) -> dt.timedelta:
    """A Go duration (``8760h``, ``8760h0m0s``, ``1h30m``); ValueError when it is not one."""
    pos, seconds = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text) or seconds <= 0:
        raise ValueError(text)
    return dt.timedelta(seconds=seconds)


def config_error(key: str, message: str) -> ValidationError:
    """The config's value at ``key`` cannot be used (bad input data: exit 1, not a usage error)."""
    return ValidationError([Problem(message, path=key)])


def decode_base64(value: str, key: str) -> bytes:
    """The bytes of the base64 value at ``key``; :class:`ParseError` naming the key."""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise ParseError([Problem("not valid base64", path=key)]) from None


def kubernetes_ca(cfg: Config) -> CertKey:
    """``cluster.ca`` decoded; ValidationError naming the key when it is missing or has no key."""
    ca = cfg.cluster.ca
    if ca is None or not ca.crt:
        raise config_error("cluster.ca", "missing (the Kubernetes CA)")
    if not ca.key:
        raise config_error(
            "cluster.ca.key", "missing (only control-plane configs carry the Kubernetes CA key)"
        )
    return CertKey(decode_base64(ca.crt, "cluster.ca.crt"), decode_base64(ca.key, "cluster.ca.key"))


def admin_kubeconfig(
    cfg: Config, *, clock: pki.Clock | None = None, rng: pki.Random | None = None
) -> str:
    """The admin kubeconfig YAML of ``cfg``'s cluster, with a freshly issued client cert."""
    ca = kubernetes_ca(cfg)
    cluster = cfg.cluster
    name = cluster.cluster_name or "talos"
    endpoint = cluster.control_plane.endpoint if cluster.control_plane is not None else ""
    if not endpoint:
        raise config_error("cluster.controlPlane.endpoint", "missing (the kubeconfig's server)")
    ttl = pki.KUBECONFIG_CERT_TTL
    lifetime = cluster.admin_kubeconfig.cert_lifetime if cluster.admin_kubeconfig else ""
    if lifetime:
        try:
            ttl = go_duration(lifetime)
        except ValueError:
            raise config_error(
                "cluster.adminKubeconfig.certLifetime", f"{lifetime!r} is not a duration"
            ) from None
    try:
        cert = pki.kubeconfig_admin_cert(
            ca,
            clock=clock,
            rng=rng,
            common_name=ADMIN_COMMON_NAME,
            organizations=(ADMIN_ORGANIZATION,),
            ttl=ttl,
        )
    except PKIError as exc:
        raise PKIError(f"cluster.ca: {exc.message}") from None
    user = f"admin@{name}"
    doc = kubeconfig(
        cluster=name,
        server=endpoint,
        ca_pem=ca.crt,
        client=cert,
        user=user,
        context=user,
        namespace="default",
    )
    return yamlio.dump(doc)
