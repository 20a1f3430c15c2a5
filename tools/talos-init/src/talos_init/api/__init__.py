"""The node's machine API server: a library the boot sequence wires in.

The API it serves: docs/talos-facts.md#machine-api.

The seam for talos-init (see :mod:`talos_init.api.server`)::

    from talos_init.api import ApiServer, maintenance_banner, MaintenanceCert

    # no config yet: maintenance mode
    cert = MaintenanceCert.create(addresses, hostname)
    for line in maintenance_banner(addresses, cert.fingerprint):
        console.log(line)
    server = ApiServer.maintenance(node, cert)          # node: an api.node.ApiBackend
    await server.start(host=None, port=50000)           # None: every address
    # node.apply_configuration(text, mode, timeout) is the callback: it receives the config
    # only after the server parsed and validated it; the node then schedules
    await server.stop(grace=5)      # the client still gets its reply, then the port closes

    # configured: mutual TLS with the machine CA
    server = ApiServer.configured(node, server_cert, machine_ca_crt)
    await server.start(host=None, port=50000)
    server.renew(new_cert)          # at half-life: scheduled by talos_init.api.renewal

    # the server certificate: control plane issues it from machine.ca (node_server_cert) and
    # runs trustd for the workers; a worker asks trustd with machine.token
    trustd = TrustdServer(machine_ca, token, addresses, hostname)   # api.trustd
    await trustd.start(host=None, port=50001)
    cert, ca = await worker_certificate(trustd_endpoints, token, addresses, hostname, cert_sans)

Everything the API needs from the node goes through the
:class:`~talos_init.api.node.ApiBackend` protocol; talos-init's implementation is
:class:`~talos_init.api.adapter.InitBackend`, served by :mod:`talos_init.api.lifecycle`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from libtalos.lazy import lazy_names

if TYPE_CHECKING:
    from talos_init.api.certs import MaintenanceCert, maintenance_banner, node_server_cert
    from talos_init.api.node import ApiBackend, ApplyMode, NodeCallError
    from talos_init.api.server import ApiServer

# Loaded on first use: PID 1 imports talos_init.api.node without the server, and never
# cryptography (see talos_init.api.issuer).
_WHERE = {
    "ApiBackend": "talos_init.api.node",
    "ApiServer": "talos_init.api.server",
    "ApplyMode": "talos_init.api.node",
    "MaintenanceCert": "talos_init.api.certs",
    "NodeCallError": "talos_init.api.node",
    "maintenance_banner": "talos_init.api.certs",
    "node_server_cert": "talos_init.api.certs",
}


__getattr__ = lazy_names(__name__, _WHERE)

__all__ = [
    "ApiBackend",
    "ApiServer",
    "ApplyMode",
    "MaintenanceCert",
    "NodeCallError",
    "maintenance_banner",
    "node_server_cert",
]
