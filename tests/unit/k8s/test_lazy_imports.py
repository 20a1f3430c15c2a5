"""libtalos.k8s loads cryptography only where certificates are made, so that PID 1 of a joining
control plane (which needs etcd's URLs and command line) stays small."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
{body}
print("cryptography" in sys.modules)
"""


def _loads_cryptography(body: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=body)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip() == "True"


def test_etcd_urls_and_command_line_do_not_load_cryptography() -> None:
    assert not _loads_cryptography(
        "from libtalos.k8s.etcd import peer_url, client_url, etcd_command\n"
        "assert peer_url('fd00::1') == 'https://[fd00::1]:2380'"
    )


def test_issuing_certificates_does_load_it() -> None:  # negative control for the probe
    assert _loads_cryptography("from libtalos.k8s import render_control_plane")
    assert _loads_cryptography("import libtalos.k8s.controlplane")


def test_package_names_resolve() -> None:
    from libtalos import k8s
    from libtalos.k8s import etcd, kubeconfig

    for name in k8s.__all__:
        assert callable(getattr(k8s, name)), name
    assert k8s.issue_etcd_certs is etcd.issue_etcd_certs
    assert k8s.admin_kubeconfig is kubeconfig.admin_kubeconfig
