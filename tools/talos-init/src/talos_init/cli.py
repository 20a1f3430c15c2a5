"""``talos-init``: run the node as PID 1.

    talos-init --mode container --state-dir DIR [--services-dir DIR] [--config FILE|URL]
               [--cmdline "talos.config=URL talos.hostname=NAME"]

Exit codes: see :mod:`talos_init.shutdown` (0 shutdown, 1 fatal boot error, 2 usage,
128+N stopped by signal N after an orderly stop).
"""

from __future__ import annotations

import contextlib
import os
import sys

from libtalos.cli import fast_version
from talos_init import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: `--version` imports nothing more than the interpreter
    from collections.abc import Sequence
    from pathlib import Path
    from typing import Any

    from talos_init.modes import Mode


def main(argv: Sequence[str] | None = None) -> int:
    fast = fast_version(argv, "talos-init", __version__)
    if fast is not None:
        return fast
    parsed = _fast_parse(sys.argv[1:] if argv is None else list(argv))
    if parsed is not None:
        from libtalos.cli import handle

        try:
            return boot_node(**parsed)
        except BaseException as exc:  # noqa: BLE001 - mapped to messages and codes as run() does
            if isinstance(exc, SystemExit):
                return int(exc.code) if isinstance(exc.code, int) else 1
            return handle(exc)
    from libtalos.cli import run
    from talos_init.app import app

    return run(app, argv, prog="talos-init")


class _NotFastError(Exception):
    """The command line is not the plain common form: Typer parses it (help, errors)."""


# (option, type, default) of the Typer app (talos_init.app), for the common form without Typer:
# Typer and click stay resident in PID 1 once imported (about 1.5 MiB of its 40 MiB budget).
_VALUE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "mode": (str, None),
    "state_dir": (str, None),
    "services_dir": (str, None),
    "config": (str, None),
    "cmdline": (str, None),
    "fetch_timeout": (float, 70.0),
    "api_port": (int, None),
    "cert_ttl": (float, None),
    "cert_check_period": (float, 3600.0),
}
_FLAG_OPTIONS = {
    "isolate": True,
    "echo_services": False,
    "manage_network": False,
    "api": True,
    "reap_orphans": True,
}


def _fast_parse(args: list[str]) -> dict[str, Any] | None:
    """The options of ``talos-init --mode M --state-dir D ...`` without importing Typer, or None
    when anything is unusual (``--help``, a missing or bad value): then Typer parses it, with
    its own messages. Same option names, types and defaults as :mod:`talos_init.app`."""
    import argparse
    from pathlib import Path

    from talos_init.modes import Mode

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # never exits: Typer reports usage errors
            raise _NotFastError(message)

    parser = Parser(add_help=False, allow_abbrev=False)
    for name, (kind, default) in _VALUE_OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    for name, default in _FLAG_OPTIONS.items():
        flag = name.replace("_", "-")
        parser.add_argument(f"--{flag}", dest=name, action="store_true", default=default)
        parser.add_argument(f"--no-{flag}", dest=name, action="store_false")
    try:
        values = vars(parser.parse_args(args))
        mode = Mode(values["mode"])
    except (_NotFastError, ValueError):
        return None
    if values["state_dir"] is None:
        return None
    values["mode"] = mode
    values["state_dir"] = Path(values["state_dir"])
    if values["services_dir"] is not None:
        values["services_dir"] = Path(values["services_dir"])
    return values


def console() -> None:
    raise SystemExit(main())


def boot_node(
    *,
    mode: Mode,
    state_dir: Path,
    services_dir: Path | None,
    config: str | None,
    cmdline: str | None,
    isolate: bool,
    echo_services: bool,
    fetch_timeout: float,
    manage_network: bool = False,
    reap_orphans: bool,
    api: bool = True,
    api_port: int | None = None,
    cert_ttl: float | None = None,
    cert_check_period: float = 3600.0,
) -> int:
    import asyncio

    from libtalos.errors import UsageError
    from talos_init import configsource, mounts, sigloop
    from talos_init.logring import Console
    from talos_init.modes import Mode
    from talos_init.node import Node, NodeOptions
    from talos_init.services import load_services_dir

    if api_port is not None and not 0 < api_port < 65536:
        raise UsageError(f"--api-port: {api_port}: not a TCP port (1-65535)")
    if fetch_timeout <= 0:
        raise UsageError("--fetch-timeout: must be greater than zero")
    if cert_ttl is not None and cert_ttl <= 0:
        raise UsageError("--cert-ttl: must be greater than zero")
    if cert_check_period <= 0:
        raise UsageError("--cert-check-period: must be greater than zero")
    state_dir = state_dir.absolute()
    if mode == Mode.container and not state_dir.is_dir():
        raise UsageError(f"--state-dir: {state_dir}: not a directory")
    # Before anything can start a thread: block the signals (sigloop's contract).
    mask = sigloop.block_signals()
    _one_malloc_arena()
    if mode == Mode.metal:
        if cmdline is not None:  # KSPP enforcement must see what the kernel really got
            raise UsageError("--cmdline: metal mode reads the kernel's own /proc/cmdline")
        _check_machine()
    if mode == Mode.metal:
        cmdline = mounts.kernel_cmdline()
    params = configsource.parse_cmdline(cmdline or "")
    options = NodeOptions(
        mode=str(mode),
        state_dir=state_dir,
        cmdline=params,
        isolate=isolate,
        reap_orphans=reap_orphans,
        echo_services=echo_services,
        fetch_timeout=fetch_timeout,
        manage_network=manage_network,
        api_port=_api_port(mode, isolate, api, api_port),
        cert_ttl=cert_ttl,
        cert_check=cert_check_period,
    )
    source = config or params.get("talos.config") or None
    console = Console()
    # Launcher inputs are read now: in container mode the node's root replaces the launcher's
    # view of the filesystem (its /tmp included) during the boot sequence.
    if source is not None:
        path = _local_path(source)
        if path is not None:
            try:
                options.config_text = (configsource.fetch(f"file://{path}"), str(path))
            except configsource.ConfigFetchError as exc:
                console.log(f"config: {exc.message}")
        else:
            options.config_source = source
    if services_dir is not None:
        options.services, options.service_problems = load_services_dir(services_dir)
    node = Node(options, console, mask)
    if mode != Mode.metal:
        return asyncio.run(node.run())
    try:
        return asyncio.run(node.run())  # a metal node never returns from run()
    except BaseException as exc:  # PID 1 of a machine must not exit, whatever happened
        from talos_init.shutdown import metal_fatal

        console.log(f"fatal: internal error ({type(exc).__name__})")
        metal_fatal(console, params.get("panic"))
        raise  # pragma: no cover - metal_fatal never returns


def _api_port(mode: Mode, isolate: bool, api: bool, port: int | None) -> int | None:
    """The machine API's port, or None: off with --no-api, and by default for a container node
    that shares the launcher's namespaces (--no-isolate), whose port 50000 is not its own."""
    from libtalos.api import API_PORT
    from talos_init.modes import Mode

    if not api:
        return None
    if port is not None:
        return port
    return API_PORT if mode == Mode.metal or isolate else None


def _one_malloc_arena() -> None:
    """One glibc malloc arena for every thread (as MALLOC_ARENA_MAX=1): the worker threads of
    PID 1 (address listing, config fetch) would each keep an arena of their own, about 1 MiB
    of resident memory for the life of the node, for no gain in a process this quiet."""
    import ctypes

    m_arena_max = -8  # <malloc.h>
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(m_arena_max, 1)


INITIAL_PID_NAMESPACE = "pid:[4026531836]"  # the kernel's fixed inode for the first PID namespace


def _check_machine() -> None:
    """Metal mode mounts, writes kernel sysctls and reboots: only as a machine's own PID 1."""
    from libtalos.errors import UsageError

    if os.getpid() != 1:
        raise UsageError("--mode metal: runs only as PID 1 of a machine (use --mode container)")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return  # no /proc yet: a kernel just started us
    if namespace != INITIAL_PID_NAMESPACE:
        raise UsageError("--mode metal: this PID 1 is in a PID namespace (use --mode container)")


def _local_path(source: str) -> Path | None:
    from pathlib import Path

    if source.startswith("file://"):
        return Path(source[len("file://") :])
    if "://" not in source:
        return Path(os.path.abspath(source))
    return None

