"""Static pod manifests and control-plane secrets, certificates judged by openssl.

What Talos renders: docs/talos-facts.md#control-plane.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from libtalos import pki
from libtalos.config.v1alpha1 import Config
from libtalos.errors import ValidationError
from libtalos.k8s.controlplane import ControlPlaneInput, render_control_plane
from libtalos.secrets import SecretsBundle

NODE = ControlPlaneInput(hostname="demo-master-1", ips=["10.5.0.2"])


@pytest.fixture(scope="module")
def assets(configs: dict[str, Config]):  # type: ignore[no-untyped-def]
    return render_control_plane(configs["controlplane"], NODE)


def _flags(command: list[str]) -> dict[str, str]:
    return dict(a[2:].partition("=")[::2] for a in command[1:])


def _name(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_manifests_are_pods_with_talos_names(assets) -> None:  # type: ignore[no-untyped-def]
    assert sorted(assets.manifests) == [
        "talos-kube-apiserver.yaml",
        "talos-kube-controller-manager.yaml",
        "talos-kube-scheduler.yaml",
    ]
    for fname, text in assets.manifests.items():
        pod = yaml.safe_load(text)
        component = fname.removeprefix("talos-").removesuffix(".yaml")
        assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
        assert pod["metadata"]["name"] == component
        assert pod["metadata"]["namespace"] == "kube-system"
        assert set(pod["metadata"]["annotations"]) == {
            "talos.dev/secrets-version",
            "talos.dev/config-version",
        }
        spec = pod["spec"]
        assert spec["hostNetwork"] is True
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65534}
        (container,) = spec["containers"]
        assert container["image"] == f"k8s.gcr.io/{component}:v1.20.6"
        assert container["command"] == assets.flags[component]
        # no key material in a manifest: it names files only
        assert "PRIVATE KEY" not in text and "secret:" not in text


def test_apiserver_flags(assets, configs: dict[str, Config]) -> None:  # type: ignore[no-untyped-def]
    flags = _flags(assets.flags["kube-apiserver"])
    d = "/system/secrets/kubernetes/kube-apiserver"
    expected = {
        "etcd-servers": "https://127.0.0.1:2379",
        "etcd-cafile": f"{d}/etcd-ca.crt",
        "etcd-certfile": f"{d}/etcd-client.crt",
        "etcd-keyfile": f"{d}/etcd-client.key",
        "secure-port": "6443",
        "bind-address": "0.0.0.0",  # noqa: S104 - the expected flag value, not a bind
        "advertise-address": "$(POD_IP)",
        "authorization-mode": "Node,RBAC",
        "enable-bootstrap-token-auth": "true",
        "encryption-provider-config": f"{d}/encryptionconfig.yaml",
        "audit-log-path": "-",
        "service-account-issuer": "https://10.5.0.2:6443",
        "api-audiences": "https://10.5.0.2:6443",
        "service-account-key-file": f"{d}/service-account.pub",
        "service-account-signing-key-file": f"{d}/service-account.key",
        "requestheader-allowed-names": "front-proxy-client",
        "insecure-port": "0",
        "profiling": "false",
        "service-cluster-ip-range": "10.96.0.0/12",
    }
    assert {k: flags.get(k) for k in expected} == expected
    assert "PodSecurityPolicy" in flags["enable-admission-plugins"].split(",")
    assert "NodeRestriction" in flags["enable-admission-plugins"].split(",")
    assert flags["tls-cipher-suites"].count("TLS_ECDHE") == 6
    for key in ("tls-cert-file", "client-ca-file", "proxy-client-cert-file", "audit-policy-file"):
        rel = flags[key].removeprefix("/system/secrets/kubernetes/")
        assert rel in assets.secrets, key


def test_controller_manager_and_scheduler_flags(assets) -> None:  # type: ignore[no-untyped-def]
    cm = _flags(assets.flags["kube-controller-manager"])
    assert cm["allocate-node-cidrs"] == "true"
    assert cm["cluster-cidr"] == "10.244.0.0/16"
    assert cm["service-cluster-ip-range"] == "10.96.0.0/12"
    assert cm["leader-elect"] == "true" and cm["configure-cloud-routes"] == "false"
    assert cm["profiling"] == "false"
    assert cm["cluster-signing-key-file"].endswith("kube-controller-manager/ca.key")
    sched = _flags(assets.flags["kube-scheduler"])
    assert sched == {**sched, "leader-elect": "true", "profiling": "false"}
    probe = yaml.safe_load(assets.manifests["talos-kube-controller-manager.yaml"])["spec"][
        "containers"
    ][0]["livenessProbe"]
    assert probe["httpGet"]["port"] == 10252 and probe["httpGet"]["path"] == "/healthz"


def _verify(openssl: str, tmp: Path, ca: bytes, leaf: bytes, purpose: str) -> int:
    (tmp / "ca.pem").write_bytes(ca)
    (tmp / "leaf.pem").write_bytes(leaf)
    return subprocess.run(
        [
            openssl,
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            str(tmp / "ca.pem"),
            str(tmp / "leaf.pem"),
        ],
        capture_output=True,
        check=False,
    ).returncode


@pytest.mark.parametrize(
    ("path", "ca_name", "purpose", "cn", "orgs"),
    [
        (
            "kube-apiserver/apiserver.crt",
            "kubernetes_ca",
            "sslserver",
            "kube-apiserver",
            ["kube-master"],
        ),
        (
            "kube-apiserver/apiserver-kubelet-client.crt",
            "kubernetes_ca",
            "sslclient",
            "apiserver-kubelet-client",
            ["system:masters"],
        ),
        (
            "kube-apiserver/front-proxy-client.crt",
            "aggregator_ca",
            "sslclient",
            "front-proxy-client",
            [],
        ),
        ("kube-apiserver/etcd-client.crt", "etcd_ca", "sslclient", "kube-apiserver", []),
    ],
)
def test_certs_chain_to_the_right_ca(  # type: ignore[no-untyped-def]
    assets, bundle: SecretsBundle, openssl: str, tmp_path: Path, path, ca_name, purpose, cn, orgs
) -> None:
    crt = assets.secrets[path][0]
    key = assets.secrets[path.replace(".crt", ".key")][0]
    pki.check_key_matches(crt, key)
    ca = getattr(bundle, ca_name)
    assert _verify(openssl, tmp_path, ca.crt, crt, purpose) == 0
    other = bundle.etcd_ca if ca_name != "etcd_ca" else bundle.kubernetes_ca
    assert _verify(openssl, tmp_path, other.crt, crt, purpose) != 0  # negative control
    cert = x509.load_pem_x509_certificate(crt)
    assert _name(cert, NameOID.COMMON_NAME) == [cn]
    assert _name(cert, NameOID.ORGANIZATION_NAME) == orgs
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == 365


def test_apiserver_sans(assets) -> None:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(assets.secrets["kube-apiserver/apiserver.crt"][0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert {
        "kubernetes",
        "kubernetes.default.svc.cluster.local",
        "demo-master-1",
        "localhost",
    } <= set(dns)
    assert {"10.96.0.1", "127.0.0.1", "10.5.0.2"} <= ips


def test_component_kubeconfigs(assets, bundle: SecretsBundle, openssl: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import base64

    for comp, user in (
        ("kube-controller-manager", "system:kube-controller-manager"),
        ("kube-scheduler", "system:kube-scheduler"),
    ):
        data, mode = assets.secrets[f"{comp}/kubeconfig"]
        assert mode == 0o600
        doc = yaml.safe_load(data)
        assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
        crt = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
        assert _verify(openssl, tmp_path, bundle.kubernetes_ca.crt, crt, "sslclient") == 0
        cert = x509.load_pem_x509_certificate(crt)
        assert _name(cert, NameOID.COMMON_NAME) == [user]


def test_secret_modes_and_encryption_config(assets, bundle: SecretsBundle) -> None:  # type: ignore[no-untyped-def]
    for path, (data, mode) in assets.secrets.items():
        if path.endswith((".key", "encryptionconfig.yaml")) or b"PRIVATE KEY" in data:
            assert mode == 0o600, path
    enc = yaml.safe_load(assets.secrets["kube-apiserver/encryptionconfig.yaml"][0])
    keys = enc["resources"][0]["providers"][0]["aescbc"]["keys"]
    assert keys[0]["secret"] == bundle.aescbc_encryption_secret
    pub = assets.secrets["kube-apiserver/service-account.pub"][0]
    assert pub.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_extra_args_and_image(configs: dict[str, Config]) -> None:
    cfg = configs["controlplane"]
    api = dataclasses.replace(
        cfg.cluster.api_server,
        image="registry.local/kube-apiserver:v1.21.0",
        extra_args={"feature-gates": "X=true"},
    )
    other = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, api_server=api))
    out = render_control_plane(other, NODE)
    assert "--feature-gates=X=true" in out.flags["kube-apiserver"]
    pod = yaml.safe_load(out.manifests["talos-kube-apiserver.yaml"])
    assert pod["spec"]["containers"][0]["image"] == "registry.local/kube-apiserver:v1.21.0"
    bad = dataclasses.replace(api, extra_args={"tls-cert-file": "/x"})
    with pytest.raises(ValidationError, match=r"cluster\.apiServer\.extraArgs: tls-cert-file"):
        render_control_plane(
            dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, api_server=bad)), NODE
        )


def test_versions_annotated(configs: dict[str, Config]) -> None:
    node = dataclasses.replace(NODE, secrets_version="7", config_version="3")
    pod = yaml.safe_load(
        render_control_plane(configs["init"], node).manifests["talos-kube-scheduler.yaml"]
    )
    assert pod["metadata"]["annotations"] == {
        "talos.dev/config-version": "3",
        "talos.dev/secrets-version": "7",
    }


def test_refused_on_workers(configs: dict[str, Config]) -> None:
    with pytest.raises(ValidationError, match="machine.type: 'worker'"):
        render_control_plane(configs["join"], NODE)


def test_missing_keys_named(configs: dict[str, Config]) -> None:
    cfg = configs["controlplane"]
    no_sa = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, service_account=None))
    with pytest.raises(ValidationError, match=r"cluster\.serviceAccount\.key: missing"):
        render_control_plane(no_sa, NODE)
    ca = dataclasses.replace(cfg.cluster.ca, key="")
    no_ca_key = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, ca=ca))
    with pytest.raises(ValidationError, match=r"cluster\.ca\.key: missing"):
        render_control_plane(no_ca_key, NODE)


def test_manifests_are_stable_while_certificates_are_fresh(configs: dict[str, Config]) -> None:
    """Re-rendering (a config change applied with --immediate) changes a manifest only when an
    input changed: the manifests name files, and the files carry the new certificates."""
    one = render_control_plane(configs["controlplane"], NODE)
    two = render_control_plane(configs["controlplane"], NODE)
    assert one.manifests == two.manifests
    path = "kube-apiserver/apiserver.crt"
    assert one.secrets[path] != two.secrets[path]
