"""The admin kubeconfig, checked with the real kubectl (``kubectl config view``) and openssl."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from libtalos.config.v1alpha1 import AdminKubeconfig, Config
from libtalos.errors import ExitCode, ParseError, ValidationError
from libtalos.k8s.kubeconfig import admin_kubeconfig, go_duration
from libtalos.secrets import SecretsBundle


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is needed (Debian package kubernetes-client)")
    return path


def test_kubectl_reads_it(
    configs: dict[str, Config], bundle: SecretsBundle, openssl: str, tmp_path: Path
) -> None:
    kubectl = _kubectl()
    path = tmp_path / "kubeconfig"
    path.write_text(admin_kubeconfig(configs["init"]))
    done = subprocess.run(
        [kubectl, "config", "view", "--kubeconfig", str(path), "--raw", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["current-context"] == "admin@demo"
    assert view["clusters"][0]["name"] == "demo"
    assert view["clusters"][0]["cluster"]["server"] == "https://10.5.0.2:6443"
    ctx = view["contexts"][0]
    assert ctx == {
        "name": "admin@demo",
        "context": {"cluster": "demo", "user": "admin@demo", "namespace": "default"},
    }
    user = view["users"][0]["user"]
    crt = base64.b64decode(user["client-certificate-data"])
    (tmp_path / "ca.pem").write_bytes(bundle.kubernetes_ca.crt)
    (tmp_path / "crt.pem").write_bytes(crt)
    ok = subprocess.run(
        [
            openssl,
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            str(tmp_path / "ca.pem"),
            str(tmp_path / "crt.pem"),
        ],
        capture_output=True,
        check=False,
    )
    assert ok.returncode == 0
    (tmp_path / "ca.pem").write_bytes(bundle.etcd_ca.crt)  # negative control: a wrong CA
    bad = subprocess.run(
        [openssl, "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "crt.pem")],
        capture_output=True,
        check=False,
    )
    assert bad.returncode != 0
    cert = x509.load_pem_x509_certificate(crt)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
    # kubectl's own validation rejects a broken document (so the check above is not vacuous)
    path.write_text(
        path.read_text().replace("current-context: admin@demo", "current-context: nope")
    )
    broken = subprocess.run(
        [kubectl, "config", "get-contexts", "nope", "--kubeconfig", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert broken.returncode != 0


def test_cert_lifetime_from_config(configs: dict[str, Config]) -> None:
    import yaml

    cfg = configs["init"]
    short = dataclasses.replace(
        cfg,
        cluster=dataclasses.replace(
            cfg.cluster, admin_kubeconfig=AdminKubeconfig(cert_lifetime="48h0m0s")
        ),
    )
    doc = yaml.safe_load(admin_kubeconfig(short))
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    )
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 2
    bad = dataclasses.replace(
        cfg,
        cluster=dataclasses.replace(
            cfg.cluster, admin_kubeconfig=AdminKubeconfig(cert_lifetime="forever")
        ),
    )
    with pytest.raises(ValidationError, match="cluster.adminKubeconfig.certLifetime") as info:
        admin_kubeconfig(bad)
    assert info.value.exit_code == ExitCode.FAILURE  # bad config data, not a bad command line


def test_worker_config_refused(configs: dict[str, Config]) -> None:
    with pytest.raises(ValidationError, match=r"cluster\.ca\.key: missing"):
        admin_kubeconfig(configs["join"])


def test_ca_that_is_not_base64_is_named(configs: dict[str, Config]) -> None:
    cfg = configs["init"]
    assert cfg.cluster.ca is not None
    ca = dataclasses.replace(cfg.cluster.ca, crt="not base64!")
    bad = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, ca=ca))
    with pytest.raises(ParseError, match=r"^cluster\.ca\.crt: not valid base64$") as info:
        admin_kubeconfig(bad)
    assert info.value.exit_code == ExitCode.FAILURE


@pytest.mark.parametrize(("text", "hours"), [("8760h0m0s", 8760), ("1h30m", 1.5), ("90m", 1.5)])
def test_go_duration(text: str, hours: float) -> None:
    assert go_duration(text).total_seconds() == hours * 3600


@pytest.mark.parametrize("text", ["", "1d", "h", "0s", "1h 2m"])
def test_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=text or "^$"):
        go_duration(text)
