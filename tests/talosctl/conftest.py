"""The machine-API fixtures of tests/api (a cluster's PKI, real API servers on loopback), for
the talosctl commands that talk to a node."""

from __future__ import annotations

from api.conftest import (  # noqa: F401 - fixtures, found by pytest under these names
    admin,
    cluster,
    configured,
    servers,
    talosconfig_for,
)
