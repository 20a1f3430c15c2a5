"""The admin kubeconfig the Kubeconfig RPC returns (TALOS-FACTS §8).

A fresh client certificate on every call, from the Kubernetes CA (``cluster.ca``, key needed:
control-plane nodes only), O=system:masters, valid ``cluster.adminKubeconfig.certLifetime``
(default one year); names NAME / admin@NAME; server = ``cluster.controlPlane.endpoint``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re

from libtalos import pki, yamlio
from libtalos.config import Config
from libtalos.errors import PKIError
from libtalos.secrets import CertKey
from talos_init.api.node import NodeCallError, Status

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
COMMON_NAME = "apiserver-kubelet-client"  # what v0.9 puts in the admin kubeconfig cert


def go_duration(text: str) -> dt.timedelta:
    """A Go duration (``8760h``, ``1h30m``); ValueError when it is not one."""
    pos, seconds = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text) or seconds <= 0:
        raise ValueError(text)
    return dt.timedelta(seconds=seconds)


def _pem(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NodeCallError(Status.FAILED_PRECONDITION, f"{what} is not valid base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def admin_kubeconfig(cfg: Config, clock: pki.Clock | None = None) -> bytes:
    """The kubeconfig YAML for ``cfg``'s cluster, with a new admin client certificate."""
    cluster = cfg.cluster
    ca = cluster.ca if cluster is not None else None
    if cluster is None or ca is None or not ca.crt or not ca.key:
        raise NodeCallError(
            Status.FAILED_PRECONDITION,
            "kubeconfig is available only on control-plane nodes (cluster.ca has no key here)",
        )
    endpoint = cluster.control_plane.endpoint if cluster.control_plane is not None else ""
    name = cluster.cluster_name or "talos"
    ttl = pki.KUBECONFIG_CERT_TTL
    lifetime = cluster.admin_kubeconfig.cert_lifetime if cluster.admin_kubeconfig else ""
    if lifetime:
        try:
            ttl = go_duration(lifetime)
        except ValueError:
            raise NodeCallError(
                Status.FAILED_PRECONDITION,
                "cluster.adminKubeconfig.certLifetime is not a duration",
            ) from None
    ca_pair = CertKey(_pem(ca.crt, "cluster.ca.crt"), _pem(ca.key, "cluster.ca.key"))
    try:
        admin = pki.kubeconfig_admin_cert(ca_pair, clock=clock, common_name=COMMON_NAME, ttl=ttl)
    except PKIError as exc:
        raise NodeCallError(Status.FAILED_PRECONDITION, f"cluster.ca: {exc.message}") from None
    user = f"admin@{name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": endpoint, "certificate-authority-data": _b64(ca_pair.crt)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(admin.crt),
                    "client-key-data": _b64(admin.key),
                },
            }
        ],
        "contexts": [
            {"name": user, "context": {"cluster": name, "namespace": "default", "user": user}}
        ],
        "current-context": user,
    }
    return yamlio.dump(doc).encode()
