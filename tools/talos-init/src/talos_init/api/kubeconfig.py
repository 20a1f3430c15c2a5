"""The admin kubeconfig the Kubeconfig RPC returns (docs/talos-facts.md#control-plane).

The document itself is :func:`libtalos.k8s.admin_kubeconfig` (a fresh client certificate from
the Kubernetes CA on every call, O=system:masters); this module only turns its errors into the
RPC's status: a worker's config has no Kubernetes CA key, so it answers FAILED_PRECONDITION.
"""

from __future__ import annotations

from libtalos import pki
from libtalos.config import Config
from libtalos.errors import TalosError
from libtalos.k8s import admin_kubeconfig as render
from talos_init.api.node import NodeCallError, Status


def admin_kubeconfig(cfg: Config, clock: pki.Clock | None = None) -> bytes:
    """The kubeconfig YAML for ``cfg``'s cluster, with a new admin client certificate."""
    if cfg.cluster is None or cfg.cluster.ca is None or not cfg.cluster.ca.key:
        raise NodeCallError(
            Status.FAILED_PRECONDITION,
            "kubeconfig is available only on control-plane nodes (cluster.ca has no key here)",
        )
    try:
        return render(cfg, clock=clock).encode()
    except TalosError as exc:
        raise NodeCallError(Status.FAILED_PRECONDITION, exc.message) from None
