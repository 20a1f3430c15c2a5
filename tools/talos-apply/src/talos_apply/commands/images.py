"""``images``: the container images a default Talos v0.9.3 cluster runs, one reference a line.

In talosctl's order (docs/talos-facts.md#talosctl-images), for mirroring into an air-gapped
registry (``for image in $(talosctl images); do docker pull $image; done``). The Kubernetes,
kubelet, etcd and CoreDNS images are the config model's defaults (what a node runs when its
config names none) and the installer is the generator's default install image; flannel, its
CNI installer and the pause image are not part of the machine config and are listed here.
"""

from __future__ import annotations

import sys

FLANNEL_IMAGE = "quay.io/coreos/flannel:v0.13.0"
FLANNEL_CNI_IMAGE = "ghcr.io/talos-systems/install-cni:v0.2.0-1-g0db3328"  # Talos's EXTRAS tag
PAUSE_IMAGE = "k8s.gcr.io/pause:3.2"  # containerd CRI v1.19's sandbox image


def default_images() -> list[str]:
    """The image references, in the order talosctl v0.9.3 prints them."""
    from libtalos.config.v1alpha1 import DEFAULT_INSTALL_IMAGE, Config

    config = Config()  # every image unset: the accessors answer with the defaults
    cluster = config.cluster
    return [
        FLANNEL_IMAGE,
        FLANNEL_CNI_IMAGE,
        cluster.coredns_image(),
        cluster.etcd_image(),
        cluster.api_server_image(),
        cluster.controller_manager_image(),
        cluster.scheduler_image(),
        cluster.proxy_image(),
        config.kubelet_image(),
        DEFAULT_INSTALL_IMAGE,
        PAUSE_IMAGE,
    ]


def images() -> None:
    """List the default images used by Talos."""
    sys.stdout.write("".join(f"{image}\n" for image in default_images()))
