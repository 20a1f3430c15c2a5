"""The Talos machine API: protobuf messages and the pure helpers shared by server and client.

The ``.proto`` files under ``proto/`` are written from docs/talos-facts.md#machine-api with Talos's
package, service, method and message names and field numbers; ``_gen/`` is generated from them by
``scripts/gen-proto`` (never edited by hand; ``just proto-check`` fails when it is stale).

Names for the tools::

    from libtalos.api import common_pb2, machine_pb2, security_pb2

Importing this package needs the ``api`` extra (protobuf, grpclib, googleapis-common-protos).
"""

from __future__ import annotations

from libtalos.api._gen.common import common_pb2
from libtalos.api._gen.machine import machine_pb2
from libtalos.api._gen.security import security_pb2

API_PORT = 50000  # apid / maintenance service (docs/talos-facts.md#maintenance-api)
TRUSTD_PORT = 50001  # trustd (docs/talos-facts.md#pki)

__all__ = ["API_PORT", "TRUSTD_PORT", "common_pb2", "machine_pb2", "security_pb2"]
