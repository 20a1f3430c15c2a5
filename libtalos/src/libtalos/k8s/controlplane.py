"""The Kubernetes control plane of a control-plane node, as static pods.

What Talos runs: docs/talos-facts.md#control-plane.

:func:`render_control_plane` turns a control-plane machine config plus the node's hostname and
addresses into:

- three manifests, ``talos-kube-apiserver.yaml``, ``talos-kube-controller-manager.yaml`` and
  ``talos-kube-scheduler.yaml`` (for ``/etc/kubernetes/manifests``, mode 0600): Pods in
  ``kube-system`` on the host network, running as UID 65534, annotated with
  ``talos.dev/secrets-version`` and ``talos.dev/config-version``; the manifests name files only,
  never key material;
- the secrets they read, under ``<secrets_dir>/{kube-apiserver,kube-controller-manager,
  kube-scheduler}/``: certificates issued from the config's Kubernetes, aggregator and etcd CAs,
  the service-account key pair, the encryption and audit configs, and the two components'
  kubeconfigs. Keys are 0600, to be owned by :data:`RUN_AS_USER` (the node chowns them).

Certificates (1 year, as Talos's): kube-apiserver (CN ``kube-apiserver``, O ``kube-master``,
SANs: the in-cluster service names, the first service IP, loopback, the node's names and IPs,
the endpoint host and ``cluster.apiServer.certSANs``), apiserver-kubelet-client (O
``system:masters``), front-proxy-client (aggregator CA), the apiserver's etcd client certificate
(etcd CA), and the controller-manager's and scheduler's client certificates
(``system:kube-controller-manager``, ``system:kube-scheduler``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from libtalos import pki, yamlio
from libtalos.config.v1alpha1 import (
    DEFAULT_DNS_DOMAIN,
    DEFAULT_KUBERNETES_VERSION,
    DEFAULT_POD_SUBNET,
    DEFAULT_SERVICE_SUBNET,
    Config,
    kubernetes_image,
)
from libtalos.errors import TalosError
from libtalos.k8s.kubeconfig import config_error, decode_base64, kubeconfig, kubernetes_ca
from libtalos.secrets import CertKey

SECRETS_DIR = "/system/secrets/kubernetes"
MANIFESTS_DIR = "/etc/kubernetes/manifests"
MANIFEST_PREFIX = "talos-"
MANIFEST_MODE = 0o600
RUN_AS_USER = 65534  # nobody: the control-plane containers run as non-root
LEAF_TTL = dt.timedelta(hours=365 * 24)
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
ETCD_SERVERS = "https://127.0.0.1:2379"

TLS_CIPHER_SUITES = ",".join(
    [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    ]
)

# Flags that point at the secrets rendered here: extraArgs may not redirect them.
_DENIED = {
    "kube-apiserver": {
        "client-ca-file",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
        "kubelet-client-certificate",
        "kubelet-client-key",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        "requestheader-client-ca-file",
        "service-account-key-file",
        "service-account-signing-key-file",
        "tls-cert-file",
        "tls-private-key-file",
        "encryption-provider-config",
    },
    "kube-controller-manager": {
        "cluster-signing-cert-file",
        "cluster-signing-key-file",
        "kubeconfig",
        "root-ca-file",
        "service-account-private-key-file",
    },
    "kube-scheduler": {"kubeconfig"},
}


@dataclass(frozen=True)
class ControlPlaneInput:
    """The node-specific inputs besides the config."""

    hostname: str
    ips: Sequence[str]
    dns_names: Sequence[str] = ()
    secrets_version: str = "1"
    config_version: str = "1"
    secrets_dir: str = SECRETS_DIR


@dataclass(frozen=True)
class ControlPlaneAssets:
    """Manifests by file name (YAML text) and secrets by path relative to the secrets dir."""

    manifests: dict[str, str]
    secrets: dict[str, tuple[bytes, int]]  # "kube-apiserver/apiserver.crt" -> (bytes, mode)
    secrets_dir: str = SECRETS_DIR
    flags: dict[str, list[str]] = field(default_factory=dict)  # component -> its command


def _pair(crt: str, key: str, where: str) -> CertKey:
    if not crt or not key:
        raise config_error(where, "missing (a control-plane config carries it with its key)")
    return CertKey(decode_base64(crt, f"{where}.crt"), decode_base64(key, f"{where}.key"))


def _first_ip(cidr: str, key: str) -> str:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise config_error(key, f"{cidr!r} is not a CIDR") from None
    return str(net.network_address + 1)


def _public_pem(key_pem: bytes) -> bytes:
    key = pki.load_private_key(key_pem, "cluster.serviceAccount.key")
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _encryption_config(secret: str) -> str:
    return yamlio.dump(
        {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [
                {
                    "resources": ["secrets"],
                    "providers": [
                        {"aescbc": {"keys": [{"name": "key1", "secret": secret}]}},
                        {"identity": {}},
                    ],
                }
            ],
        }
    )


def _audit_policy() -> str:
    return yamlio.dump(
        {"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy", "rules": [{"level": "Metadata"}]}
    )


def _merge(component: str, flags: dict[str, str], extra: Mapping[str, str]) -> list[str]:
    denied = sorted(set(extra) & _DENIED[component])
    if denied:
        key = {
            "kube-apiserver": "apiServer",
            "kube-controller-manager": "controllerManager",
            "kube-scheduler": "scheduler",
        }[component]
        raise config_error(
            f"cluster.{key}.extraArgs", f"{', '.join(denied)}: set by Talos, cannot be overridden"
        )
    merged = {**flags, **extra}
    return [f"/usr/local/bin/{component}", *(f"--{k}={merged[k]}" for k in sorted(merged))]


def _pod(
    component: str,
    image: str,
    command: list[str],
    secrets_path: str,
    annotations: dict[str, str],
    probe_port: int | None,
) -> str:
    container: dict[str, Any] = {
        "name": component,
        "image": image,
        "command": command,
        "volumeMounts": [{"name": "secrets", "mountPath": secrets_path, "readOnly": True}],
    }
    if component == "kube-apiserver":
        container["env"] = [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        ]
    if probe_port is not None:
        container["livenessProbe"] = {
            "httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": probe_port},
            "initialDelaySeconds": 15,
            "timeoutSeconds": 15,
        }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": component,
            "namespace": "kube-system",
            "labels": {"tier": "control-plane", "k8s-app": component},
            "annotations": annotations,
        },
        "spec": {
            "hostNetwork": True,
            "priorityClassName": "system-cluster-critical",
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER},
            "containers": [container],
            "volumes": [
                {"name": "secrets", "hostPath": {"path": secrets_path, "type": "Directory"}}
            ],
        },
    }
    return yamlio.dump(pod)


def render_control_plane(
    cfg: Config,
    node: ControlPlaneInput,
    *,
    clock: pki.Clock | None = None,
    rng: pki.Random | None = None,
) -> ControlPlaneAssets:
    """Manifests and secrets of the three control-plane components for this node."""
    if cfg.machine.type not in ("init", "controlplane"):
        raise config_error(
            "machine.type",
            f"{cfg.machine.type!r}: the control plane runs on init and controlplane nodes only",
        )
    if not node.hostname:
        raise TalosError("the node has no hostname (the apiserver certificate names it)")
    cluster = cfg.cluster
    endpoint = cluster.control_plane.endpoint if cluster.control_plane is not None else ""
    if not endpoint:
        raise config_error("cluster.controlPlane.endpoint", "missing")
    port = cluster.control_plane.local_port() if cluster.control_plane is not None else 6443
    network = cluster.network
    dns_domain = (network.dns_domain if network else "") or DEFAULT_DNS_DOMAIN
    pod_cidrs = (network.pod_subnets if network else []) or [DEFAULT_POD_SUBNET]
    svc_cidrs = (network.service_subnets if network else []) or [DEFAULT_SERVICE_SUBNET]
    k8s_ca = kubernetes_ca(cfg)
    etcd_ca_cfg = cluster.etcd.ca if cluster.etcd is not None else None
    if etcd_ca_cfg is None:
        raise config_error("cluster.etcd.ca", "missing")
    etcd_ca = _pair(etcd_ca_cfg.crt, etcd_ca_cfg.key, "cluster.etcd.ca")
    if cluster.service_account is None or not cluster.service_account.key:
        raise config_error("cluster.serviceAccount.key", "missing (signs service-account tokens)")
    sa_key = decode_base64(cluster.service_account.key, "cluster.serviceAccount.key")
    sa_pub = _public_pem(sa_key)
    agg = cluster.aggregator_ca
    agg_ca = _pair(agg.crt, agg.key, "cluster.aggregatorCA") if agg is not None else None
    if not cluster.aescbc_encryption_secret:
        raise config_error("cluster.aescbcEncryptionSecret", "missing")

    k8s_loaded = pki.LoadedCA.load(k8s_ca, "cluster.ca")

    def leaf(
        ca: pki.LoadedCA | CertKey,
        kind: pki.LeafKind,
        cn: str,
        orgs: Sequence[str] = (),
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
    ) -> CertKey:
        return pki.issue(
            ca,
            kind=kind,
            common_name=cn,
            organizations=orgs,
            dns_names=dns,
            ip_addresses=ips,
            ttl=LEAF_TTL,
            clock=clock,
            rng=rng,
        )

    # The apiserver's SANs: in-cluster names, the first service IP, loopback, the node, the
    # endpoint's host and the configured extra SANs (IP literals as IP SANs).
    dns_sans = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{dns_domain}",
        "localhost",
        node.hostname,
        *node.dns_names,
    ]
    ip_sans = [_first_ip(c, "cluster.network.serviceSubnets") for c in svc_cidrs]
    ip_sans += ["127.0.0.1", *node.ips]
    extra_sans = list(cluster.api_server.cert_sans) if cluster.api_server else []
    host = urlsplit(endpoint).hostname or ""
    for san in [host, *extra_sans]:
        if not san:
            continue
        try:
            ip_sans.append(str(ipaddress.ip_address(san)))
        except ValueError:
            dns_sans.append(san)
    dns_sans = list(dict.fromkeys(dns_sans))
    ip_sans = list(dict.fromkeys(ip_sans))

    apiserver = leaf(k8s_loaded, "server", "kube-apiserver", ["kube-master"], dns_sans, ip_sans)
    kubelet_client = leaf(k8s_loaded, "client", "apiserver-kubelet-client", ["system:masters"])
    etcd_client = leaf(etcd_ca, "client", "kube-apiserver")
    cm_client = leaf(k8s_loaded, "client", "system:kube-controller-manager")
    sched_client = leaf(k8s_loaded, "client", "system:kube-scheduler")
    proxy_client = leaf(agg_ca, "client", "front-proxy-client") if agg_ca is not None else None

    root = node.secrets_dir.rstrip("/")
    api_dir, cm_dir, sched_dir = (f"{root}/{c}" for c in COMPONENTS)
    local_server = f"https://127.0.0.1:{port}"
    name = cluster.cluster_name or "talos"

    def component_kubeconfig(user: str, cert: CertKey) -> bytes:
        return yamlio.dump(
            kubeconfig(cluster=name, server=local_server, ca_pem=k8s_ca.crt, client=cert, user=user)
        ).encode()

    secrets: dict[str, tuple[bytes, int]] = {
        "kube-apiserver/ca.crt": (k8s_ca.crt, 0o644),
        "kube-apiserver/apiserver.crt": (apiserver.crt, 0o644),
        "kube-apiserver/apiserver.key": (apiserver.key, 0o600),
        "kube-apiserver/apiserver-kubelet-client.crt": (kubelet_client.crt, 0o644),
        "kube-apiserver/apiserver-kubelet-client.key": (kubelet_client.key, 0o600),
        "kube-apiserver/etcd-ca.crt": (etcd_ca.crt, 0o644),
        "kube-apiserver/etcd-client.crt": (etcd_client.crt, 0o644),
        "kube-apiserver/etcd-client.key": (etcd_client.key, 0o600),
        "kube-apiserver/service-account.pub": (sa_pub, 0o644),
        "kube-apiserver/service-account.key": (sa_key, 0o600),
        "kube-apiserver/encryptionconfig.yaml": (
            _encryption_config(cluster.aescbc_encryption_secret).encode(),
            0o600,
        ),
        "kube-apiserver/auditpolicy.yaml": (_audit_policy().encode(), 0o644),
        "kube-controller-manager/ca.crt": (k8s_ca.crt, 0o644),
        "kube-controller-manager/ca.key": (k8s_ca.key, 0o600),
        "kube-controller-manager/service-account.key": (sa_key, 0o600),
        "kube-controller-manager/kubeconfig": (
            component_kubeconfig("system:kube-controller-manager", cm_client),
            0o600,
        ),
        "kube-scheduler/kubeconfig": (
            component_kubeconfig("system:kube-scheduler", sched_client),
            0o600,
        ),
    }
    if agg_ca is not None and proxy_client is not None:
        secrets["kube-apiserver/front-proxy-ca.crt"] = (agg_ca.crt, 0o644)
        secrets["kube-apiserver/front-proxy-client.crt"] = (proxy_client.crt, 0o644)
        secrets["kube-apiserver/front-proxy-client.key"] = (proxy_client.key, 0o600)

    api_flags = {
        "advertise-address": "$(POD_IP)",
        "allow-privileged": "true",
        "api-audiences": endpoint,
        "audit-log-path": "-",
        "audit-policy-file": f"{api_dir}/auditpolicy.yaml",
        "authorization-mode": "Node,RBAC",
        "bind-address": "0.0.0.0",  # noqa: S104 - the apiserver serves the node's addresses
        "client-ca-file": f"{api_dir}/ca.crt",
        "enable-admission-plugins": "PodSecurityPolicy,NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "encryption-provider-config": f"{api_dir}/encryptionconfig.yaml",
        "etcd-cafile": f"{api_dir}/etcd-ca.crt",
        "etcd-certfile": f"{api_dir}/etcd-client.crt",
        "etcd-keyfile": f"{api_dir}/etcd-client.key",
        "etcd-servers": ETCD_SERVERS,
        "insecure-port": "0",
        "kubelet-client-certificate": f"{api_dir}/apiserver-kubelet-client.crt",
        "kubelet-client-key": f"{api_dir}/apiserver-kubelet-client.key",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "profiling": "false",
        "secure-port": str(port),
        "service-account-issuer": endpoint,
        "service-account-key-file": f"{api_dir}/service-account.pub",
        "service-account-signing-key-file": f"{api_dir}/service-account.key",
        "service-cluster-ip-range": ",".join(svc_cidrs),
        "tls-cert-file": f"{api_dir}/apiserver.crt",
        "tls-cipher-suites": TLS_CIPHER_SUITES,
        "tls-min-version": "VersionTLS12",
        "tls-private-key-file": f"{api_dir}/apiserver.key",
    }
    if agg_ca is not None:
        api_flags.update(
            {
                "proxy-client-cert-file": f"{api_dir}/front-proxy-client.crt",
                "proxy-client-key-file": f"{api_dir}/front-proxy-client.key",
                "requestheader-allowed-names": "front-proxy-client",
                "requestheader-client-ca-file": f"{api_dir}/front-proxy-ca.crt",
                "requestheader-extra-headers-prefix": "X-Remote-Extra-",
                "requestheader-group-headers": "X-Remote-Group",
                "requestheader-username-headers": "X-Remote-User",
            }
        )
    cm_flags = {
        "allocate-node-cidrs": "true",
        "authentication-kubeconfig": f"{cm_dir}/kubeconfig",
        "authorization-kubeconfig": f"{cm_dir}/kubeconfig",
        "cluster-cidr": ",".join(pod_cidrs),
        "cluster-signing-cert-file": f"{cm_dir}/ca.crt",
        "cluster-signing-key-file": f"{cm_dir}/ca.key",
        "configure-cloud-routes": "false",
        "kubeconfig": f"{cm_dir}/kubeconfig",
        "leader-elect": "true",
        "profiling": "false",
        "root-ca-file": f"{cm_dir}/ca.crt",
        "service-account-private-key-file": f"{cm_dir}/service-account.key",
        "service-cluster-ip-range": ",".join(svc_cidrs),
        "use-service-account-credentials": "true",
    }
    sched_flags = {
        "authentication-kubeconfig": f"{sched_dir}/kubeconfig",
        "authorization-kubeconfig": f"{sched_dir}/kubeconfig",
        "kubeconfig": f"{sched_dir}/kubeconfig",
        "leader-elect": "true",
        "profiling": "false",
    }
    sections = {
        "kube-apiserver": (cluster.api_server, api_flags, api_dir, None),
        "kube-controller-manager": (cluster.controller_manager, cm_flags, cm_dir, 10252),
        "kube-scheduler": (cluster.scheduler, sched_flags, sched_dir, 10251),
    }
    annotations = {
        "talos.dev/config-version": node.config_version,
        "talos.dev/secrets-version": node.secrets_version,
    }
    manifests: dict[str, str] = {}
    commands: dict[str, list[str]] = {}
    for component, (section, flags, path, probe) in sections.items():
        image = (section.image if section is not None else "") or kubernetes_image(
            component, DEFAULT_KUBERNETES_VERSION
        )
        extra = dict(section.extra_args) if section is not None else {}
        command = _merge(component, dict(flags), extra)
        commands[component] = command
        manifests[f"{MANIFEST_PREFIX}{component}.yaml"] = _pod(
            component, image, command, path, annotations, probe
        )
    return ControlPlaneAssets(
        manifests=manifests, secrets=secrets, secrets_dir=root, flags=commands
    )
