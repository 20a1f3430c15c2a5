"""Health checks: TCP connect, HTTP GET, or a command, each bounded by the check's timeout.

A command runs through the reaper (:func:`talos_init.reaper.run`) with its output discarded; at
the timeout its process group is killed.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

from talos_init.reaper import ChildTimeoutError, Reaper, describe, run
from talos_init.services import HealthCheck
from talos_init.spawn import SpawnError


async def run_check(check: HealthCheck, reaper: Reaper) -> tuple[bool, str]:
    """One probe: ``(healthy, message)``. Never raises for a failing target."""
    try:
        if check.kind == "tcp":
            async with asyncio.timeout(check.timeout):
                return await _tcp(check.target)
        if check.kind == "http":
            async with asyncio.timeout(check.timeout):
                return await _http(check.target)
        return await _command(check, reaper)
    except TimeoutError:
        return False, f"timed out after {check.timeout:g}s"
    except OSError as exc:
        return False, os.strerror(exc.errno) if exc.errno else type(exc).__name__


async def _tcp(target: str) -> tuple[bool, str]:
    host, _, port = target.rpartition(":")
    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    writer.close()
    await writer.wait_closed()
    return True, "connected"


async def _http(url: str) -> tuple[bool, str]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    fields = status_line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        return False, "not an HTTP response"
    code = int(fields[1])
    return (200 <= code < 400), f"HTTP {code}"


async def _command(check: HealthCheck, reaper: Reaper) -> tuple[bool, str]:
    try:
        finished = await run(reaper, check.command, timeout=check.timeout, capture=False)
    except SpawnError as exc:
        return False, exc.message
    except ChildTimeoutError:
        return False, f"timed out after {check.timeout:g}s"
    if finished.ok:
        return True, "command succeeded"
    return False, f"command {describe(finished.status)}"
