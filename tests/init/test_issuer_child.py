"""The certificate child (``python -m talos_init.api.issuer``) starts light: the maintenance
certificate, which the boot waits for before its banner, is made without loading asyncio (and
the ssl module it brings), which only the ``worker`` request uses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

# The child as the node starts it, reporting at exit which of these modules it had loaded.
PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write(
    "loaded: " + " ".join(m for m in ("asyncio", "ssl", "grpclib") if m in sys.modules) + "\\n"))
import runpy
runpy.run_module("talos_init.api.issuer", run_name="__main__", alter_sys=True)
"""


def _child(request: dict[str, object]) -> tuple[dict[str, object], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    reports = [x for x in done.stderr.decode().splitlines() if x.startswith("loaded:")]
    assert reports, done.stderr.decode()
    return json.loads(done.stdout), set(reports[-1].split()[1:])


def test_the_maintenance_certificate_is_made_without_asyncio() -> None:
    reply, loaded = _child({"op": "maintenance", "addresses": ["192.0.2.7"], "hostname": "n1"})
    assert str(reply["crt"]).startswith("-----BEGIN CERTIFICATE-----")
    assert reply["fingerprint"]
    assert loaded == set()


def test_the_probe_sees_asyncio_when_a_request_uses_it() -> None:
    # negative control: a worker's request runs asyncio (trustd unreachable: port 1 refuses)
    request = {
        "op": "worker",
        "endpoints": ["127.0.0.1:1"],
        "token": "abcdef.0123456789abcdef",
        "addresses": [],
        "hostname": "n1",
        "sans": [],
        "timeout": 2.0,
    }
    reply, loaded = _child(request)
    assert "error" in reply
    assert "asyncio" in loaded
