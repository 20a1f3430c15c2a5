"""Certificate work of PID 1, done by a short-lived child: ``python -m talos_init.api.issuer``.

PID 1 never imports ``cryptography`` (about 15 MiB of resident memory for the whole life of the
node, for a few signatures a day). :func:`issue` starts this module as a child through the
reaper (the one owner of ``wait()``), hands it one JSON request on stdin and reads one JSON reply
from stdout. Both are anonymous memory files (``memfd``): the machine CA's key and the token
never touch a disk, never appear on a command line, and no pipe can fill up.

Requests (``op``), each answered with PEM text and the validity as Unix times:

- ``maintenance``: the ephemeral self-signed Ed25519 certificate of maintenance mode
  (``addresses``, ``hostname``) -> ``crt``, ``key``, ``fingerprint``;
- ``node``: the configured node's API certificate from ``machine.ca`` (``ca_crt``, ``ca_key``,
  ``addresses``, ``hostname``, ``sans``, ``ttl`` seconds) -> ``crt``, ``key``;
- ``sign``: trustd's signature of a worker's CSR (``ca_crt``, ``ca_key``, ``csr``, ``peer``: the
  request's source address or null, ``reserved``: the control plane's own names) -> ``crt``;
- ``worker``: a worker's certificate through trustd (``endpoints``, ``token``, ``addresses``,
  ``hostname``, ``sans``, ``timeout``) -> ``crt``, ``key``, ``ca``, ``uncertified`` (the
  requested names trustd left out);
- ``kubeconfig``: the admin kubeconfig of the Kubeconfig RPC (``config``: the machine config
  text) -> ``kubeconfig``;
- ``etcd``: etcd's certificates written under ``pki_dir`` and its command line (``config``,
  ``hostname``, ``ips``, ``advertise_ip``, ``state``, ``initial_cluster``, ``data_dir``)
  -> ``argv``;
- ``render``: the control plane's static pods, certificates and kubeconfigs written under
  ``system`` (``config``, ``hostname``, ``ips``) -> ``message``.

A failure is ``{"error": message}`` with exit code 1; messages carry no key material (they are
libtalos's messages, or the exception's type alone).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from libtalos.errors import TalosError

ISSUE_TIMEOUT = 60.0  # seconds a child gets beyond the request's own network timeout
KILL_BOUND = 5.0  # seconds to wait for a killed child's exit to be reaped


class IssueError(TalosError):
    """The certificate child failed (the message says why, never with key material)."""


# -- PID 1 side ------------------------------------------------------------------------------


async def issue(reaper: Any, request: dict[str, Any], timeout: float = ISSUE_TIMEOUT) -> Any:
    """Run one request in a child (``reaper``: :class:`talos_init.reaper.Reaper`); its reply.

    :func:`talos_init.reaper.run` hands the request over in a memfd and reads the reply from one.
    """
    from talos_init.reaper import ChildTimeoutError, describe, run

    what = str(request.get("op", "?"))
    try:
        done = await run(
            reaper,
            [sys.executable, "-m", "talos_init.api.issuer"],
            timeout=timeout,
            what=f"certificate ({what})",
            stdin=json.dumps(request).encode(),
            kill_bound=KILL_BOUND,
        )
    except ChildTimeoutError:
        raise IssueError(f"certificate ({what}): no answer within {timeout:g}s") from None
    try:
        reply = json.loads(done.stdout) if done.stdout else {}
    except ValueError:
        reply = {}
    if not isinstance(reply, dict):
        reply = {}
    if done.ok and "error" not in reply:
        return reply
    if reply.get("error"):
        raise IssueError(str(reply["error"]))  # libtalos's message: it names what is wrong
    raise IssueError(f"certificate ({what}): the certificate child {describe(done.status)}")


class Issuer:
    """:func:`issue` bound to one node's reaper: ``await issuer(request, timeout)``."""

    def __init__(self, reaper: Any) -> None:
        self._reaper = reaper

    async def __call__(self, request: dict[str, Any], timeout: float | None = None) -> Any:
        return await issue(self._reaper, request, timeout or ISSUE_TIMEOUT)


# -- child side ------------------------------------------------------------------------------


def _validity(crt_pem: bytes) -> dict[str, float]:
    from libtalos import pki

    cert = pki.load_certificate(crt_pem, "certificate")
    return {
        "not_before": cert.not_valid_before_utc.timestamp(),
        "not_after": cert.not_valid_after_utc.timestamp(),
    }


def _ca(request: dict[str, Any]) -> Any:
    from libtalos.secrets import CertKey

    return CertKey(request["ca_crt"].encode(), request["ca_key"].encode())


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt

    op = request.get("op")
    if op == "maintenance":
        from talos_init.api.certs import MaintenanceCert

        cert = MaintenanceCert.create(request.get("addresses", []), request.get("hostname", ""))
        return {
            "crt": cert.server.crt.decode(),
            "key": cert.server.key.decode(),
            "fingerprint": cert.fingerprint,
            **_validity(cert.server.crt),
        }
    if op == "node":
        from talos_init.api.certs import NODE_CERT_TTL, node_server_cert

        ttl = request.get("ttl")
        made = node_server_cert(
            _ca(request),
            request.get("addresses", []),
            request.get("hostname", ""),
            request.get("sans", []),
            ttl=dt.timedelta(seconds=float(ttl)) if ttl else NODE_CERT_TTL,
        )
        return {"crt": made.crt.decode(), "key": made.key.decode(), **_validity(made.crt)}
    if op == "sign":
        from talos_init.api.trustd import sign_csr

        peer = request.get("peer")
        crt = sign_csr(
            _ca(request),
            request["csr"].encode(),
            peer=str(peer) if peer else None,
            reserved=[str(r) for r in request.get("reserved", [])],
        )
        return {"crt": crt.decode()}
    if op == "worker":
        import asyncio  # only here: asyncio would add a third to every other request's start

        from talos_init.api.trustd import requested_names, uncertified, worker_certificate

        names = (request.get("addresses", []), request.get("hostname", ""), request.get("sans", []))
        made, ca = asyncio.run(
            worker_certificate(
                request["endpoints"],
                request["token"],
                *names,
                timeout=float(request.get("timeout", 5.0)),
            )
        )
        return {
            "crt": made.crt.decode(),
            "key": made.key.decode(),
            "ca": ca.decode(),
            "uncertified": uncertified(requested_names(*names), made.crt),
            **_validity(made.crt),
        }
    if op in ("etcd", "etcd-certs"):  # etcd-certs: a joining node's client cert, first
        from pathlib import Path

        from libtalos.config import load
        from talos_init import etcd as etcdmod

        cfg = load(request["config"], "running config").config
        layout = etcdmod.EtcdLayout(Path(request["pki_dir"]), Path(request["data_dir"]))
        hostname = request["hostname"]
        etcdmod.write_certs(layout, cfg, hostname, list(request["ips"]))
        if op == "etcd-certs":
            return {}
        argv = etcdmod.etcd_argv(
            layout,
            cfg,
            hostname,
            request["advertise_ip"],
            request["state"],
            request.get("initial_cluster"),
        )
        return {"argv": argv}
    if op == "render":
        from pathlib import Path

        from libtalos.config import load
        from talos_init.api.render import render_control_plane_files

        cfg = load(request["config"], "running config").config
        message = render_control_plane_files(
            cfg, request["hostname"], list(request["ips"]), Path(request["system"])
        )
        return {"message": message}
    if op == "kubeconfig":
        from libtalos.config import load
        from talos_init.api.kubeconfig import admin_kubeconfig
        from talos_init.api.node import NodeCallError

        try:
            data = admin_kubeconfig(load(request["config"], "running config").config)
        except NodeCallError as exc:
            return {"error": exc.message}
        return {"kubeconfig": data.decode()}
    return {"error": f"unknown request {op!r}"}


def main() -> int:
    try:
        request = json.loads(sys.stdin.buffer.read())
        reply = _serve(request)
    except TalosError as exc:
        reply = {"error": exc.message}
    except (KeyError, TypeError, ValueError) as exc:
        reply = {"error": f"malformed request ({type(exc).__name__})"}
    except Exception as exc:  # noqa: BLE001 - the type only: a message could quote a key
        reply = {"error": f"internal error ({type(exc).__name__})"}
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    return 1 if "error" in reply else 0


if __name__ == "__main__":
    sys.exit(main())
