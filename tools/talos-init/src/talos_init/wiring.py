"""Build a talos-init node: the :class:`~talos_init.node.Node`, and, when it serves the machine
API, the API's lifecycle and the etcd manager, attached as the node's hooks.

Dependencies point one way: the API layer (:mod:`talos_init.api`) and the etcd manager use the
node; the node knows only the :class:`~talos_init.node.NodeHooks` it is given.
"""

from __future__ import annotations

from talos_init.logring import Console
from talos_init.node import Node, NodeOptions


def make_node(options: NodeOptions, console: Console, mask: frozenset[int]) -> Node:
    """The node for ``options`` (``mask``: the signals blocked before any thread started)."""
    node = Node(options, console, mask)
    if options.api_port is not None:
        from talos_init.addresses import Addresses
        from talos_init.api.issuer import Issuer
        from talos_init.api.lifecycle import ApiLifecycle
        from talos_init.etcdmanager import EtcdManager

        addresses = Addresses(console.log)
        issue = Issuer(node.reaper)
        node.hooks = ApiLifecycle(
            node,
            options.api_port,
            EtcdManager(node, addresses, issue),
            addresses,
            issue,
            cert_ttl=options.cert_ttl,
            cert_check=options.cert_check,
        )
    return node
