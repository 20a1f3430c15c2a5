"""Rendering of a control-plane node's Kubernetes and etcd assets.

What Talos makes: docs/talos-facts.md#pki, #control-plane.

Pure functions: certificates and keys are issued from the CAs a machine config carries, and
documents (static pod manifests, kubeconfigs, the etcd command line) are returned as text or
lists; nothing here writes a file, starts a process or opens a socket. The node (talos-init)
decides where the results go and when.

- :mod:`libtalos.k8s.etcd`: the etcd server/peer/client certificates and the etcd 3.4 command
  line for a new cluster or for joining an existing one;
- :mod:`libtalos.k8s.controlplane`: the kube-apiserver, kube-controller-manager and
  kube-scheduler static pods with their certificates, keys and kubeconfigs;
- :mod:`libtalos.k8s.kubeconfig`: kubeconfig documents, including the admin kubeconfig.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from libtalos.lazy import lazy_names

if TYPE_CHECKING:
    from libtalos.k8s.controlplane import (
        ControlPlaneAssets,
        ControlPlaneInput,
        render_control_plane,
    )
    from libtalos.k8s.etcd import EtcdArgs, EtcdCerts, etcd_command, issue_etcd_certs
    from libtalos.k8s.kubeconfig import admin_kubeconfig

# The names are loaded on first use, so that a caller needing only the etcd command line or URLs
# (PID 1 of a joining control plane) does not load cryptography through the certificate code.
# The kubeconfig() function is reached through its module, libtalos.k8s.kubeconfig, whose name it
# shares.
_HOME = {
    "ControlPlaneAssets": "libtalos.k8s.controlplane",
    "ControlPlaneInput": "libtalos.k8s.controlplane",
    "render_control_plane": "libtalos.k8s.controlplane",
    "EtcdArgs": "libtalos.k8s.etcd",
    "EtcdCerts": "libtalos.k8s.etcd",
    "etcd_command": "libtalos.k8s.etcd",
    "issue_etcd_certs": "libtalos.k8s.etcd",
    "admin_kubeconfig": "libtalos.k8s.kubeconfig",
}


__getattr__ = lazy_names(__name__, _HOME)

__all__ = [
    "ControlPlaneAssets",
    "ControlPlaneInput",
    "EtcdArgs",
    "EtcdCerts",
    "admin_kubeconfig",
    "etcd_command",
    "issue_etcd_certs",
    "render_control_plane",
]
