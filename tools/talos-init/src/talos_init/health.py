"""Health checks: TCP connect, HTTP GET, or a command, each bounded by a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from urllib.parse import urlsplit

from talos_init.reaper import Reaper, describe
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
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        pid = reaper.spawn(
            check.command,
            lambda _pid, status: done.set_result(status),
            stdout=devnull,
            stderr=devnull,
        )
    except SpawnError as exc:
        return False, exc.message
    finally:
        os.close(devnull)
    try:
        async with asyncio.timeout(check.timeout):
            status = await asyncio.shield(done)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        await done
        return False, f"timed out after {check.timeout:g}s"
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return True, "command succeeded"
    return False, f"command {describe(status)}"
