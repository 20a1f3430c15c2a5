"""Fixtures of the full-screen commands: the integrated node of tests/node (talos-init as PID 1
in its own namespaces) and tmux sessions driving the real command."""

from __future__ import annotations

from api.conftest import (  # noqa: F401 - fixtures, found by name
    admin,
    cluster,
    configured,
    servers,
    talosconfig_for,
)
from node.conftest import pid_namespace, start_node  # noqa: F401 - fixtures, found by name
