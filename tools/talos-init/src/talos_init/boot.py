"""Boot the node: what ``talos-init`` does once its command line is read.

:func:`boot_node` checks the options (usage errors exit 2), blocks the signals before any
thread can start, reads the launcher's inputs (config file, services directory) while the
launcher's filesystem is still in view, and runs the node as PID 1.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    from talos_init.modes import Mode
    from talos_init.options import BootOptions


def boot_node(opts: BootOptions) -> int:
    """Check the options, block the signals, read the launcher's inputs and run the node;
    returns the node's exit code (:mod:`talos_init.shutdown`)."""
    import asyncio

    from libtalos.errors import UsageError
    from talos_init import configsource, mounts, sigloop
    from talos_init.logring import Console
    from talos_init.modes import Mode
    from talos_init.node import NodeOptions
    from talos_init.services import load_services_dir
    from talos_init.wiring import make_node

    mode, cmdline = opts.mode, opts.cmdline
    if opts.api_port is not None and not 0 < opts.api_port < 65536:
        raise UsageError(f"--api-port: {opts.api_port}: not a TCP port (1-65535)")
    if opts.fetch_timeout <= 0:
        raise UsageError("--fetch-timeout: must be greater than zero")
    if opts.cert_ttl is not None and opts.cert_ttl <= 0:
        raise UsageError("--cert-ttl: must be greater than zero")
    if opts.cert_check_period <= 0:
        raise UsageError("--cert-check-period: must be greater than zero")
    state_dir = opts.state_dir.absolute()
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
        isolate=opts.isolate,
        reap_orphans=opts.reap_orphans,
        echo_services=opts.echo_services,
        fetch_timeout=opts.fetch_timeout,
        manage_network=opts.manage_network,
        api_port=_api_port(mode, opts.isolate, opts.api, opts.api_port),
        cert_ttl=opts.cert_ttl,
        cert_check=opts.cert_check_period,
    )
    source = opts.config or params.get("talos.config") or None
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
    if opts.services_dir is not None:
        options.services, options.service_problems = load_services_dir(opts.services_dir)
    node = make_node(options, console, mask)
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
