"""The talosctl front end: a table from Talos's command words to a tool's ``main(argv)``.

It holds no logic of its own: each row names the words of a talosctl command, the tool module
that runs it, and the argv prefix that tool expects (plus defaults where talosctl's differ from
the tool's, e.g. ``gen secrets`` writes ``secrets.yaml`` unless ``-o`` is given). Tools are
imported only when their command runs.
"""

from __future__ import annotations

import sys

from libtalos.cli import entry, fast_version
from talosctl import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class Route:
    """One talosctl command: its words, the tool module that runs it, that tool's words.

    A plain class, not a dataclass: importing dataclasses would cost every talosctl start
    more than the routing itself.
    """

    __slots__ = ("defaults", "module", "prefix", "summary", "words")

    def __init__(
        self,
        words: tuple[str, ...],  # talosctl's command words
        module: str,  # the tool's cli module (has main(argv))
        prefix: tuple[str, ...],  # the tool's command words
        summary: str,
        defaults: dict[str, tuple[str, ...]] | None = None,  # flag -> args when it is absent
    ) -> None:
        self.words = words
        self.module = module
        self.prefix = prefix
        self.summary = summary
        self.defaults = defaults or {}


ROUTES: tuple[Route, ...] = (
    Route(
        ("gen", "config"),
        "talos_gen.cli",
        ("config",),
        "Generate init/controlplane/join configs and a talosconfig (talos-gen config)",
    ),
    Route(
        ("gen", "secrets"),
        "talos_pki.cli",
        ("secrets",),
        "Generate a secrets bundle (talos-pki secrets)",
        defaults={"-o": ("-o", "secrets.yaml")},
    ),
    Route(
        ("gen", "ca"),
        "talos_pki.cli",
        ("gen", "ca"),
        "A self-signed CA: ORG.crt/.key/.sha256 (talos-pki gen ca)",
    ),
    Route(
        ("gen", "key"),
        "talos_pki.cli",
        ("gen", "key"),
        "An Ed25519 private key: NAME.key (talos-pki gen key)",
    ),
    Route(
        ("gen", "csr"),
        "talos_pki.cli",
        ("gen", "csr"),
        "A CSR for a key: KEY.csr (talos-pki gen csr)",
    ),
    Route(
        ("gen", "crt"),
        "talos_pki.cli",
        ("gen", "crt"),
        "A certificate from a CSR: NAME.crt (talos-pki gen crt)",
    ),
    Route(
        ("gen", "keypair"),
        "talos_pki.cli",
        ("gen", "keypair"),
        "A self-signed key pair: ORG.crt/.key (talos-pki gen keypair)",
    ),
    Route(
        ("cluster", "create"),
        "talos_cluster.cli",
        ("create",),
        "Create a local cluster: talos-init nodes in namespaces, or QEMU VMs with "
        "--provisioner qemu (talos-cluster create)",
    ),
    Route(
        ("cluster", "destroy"),
        "talos_cluster.cli",
        ("destroy",),
        "Destroy a local cluster (talos-cluster destroy)",
    ),
    Route(
        ("cluster", "show"),
        "talos_cluster.cli",
        ("show",),
        "Show a local cluster's nodes (talos-cluster show)",
    ),
    Route(
        ("validate",),
        "talos_gen.cli",
        ("validate",),
        "Validate a machine config for a mode (talos-gen validate)",
    ),
    Route(
        ("apply-config",),
        "talos_apply.cli",
        ("apply-config",),
        "Apply a machine config (talos-apply apply-config)",
    ),
    Route(("apply",), "talos_apply.cli", ("apply-config",), "Alias of apply-config"),
    Route(
        ("bootstrap",), "talos_apply.cli", ("bootstrap",), "Bootstrap etcd (talos-apply bootstrap)"
    ),
    Route(
        ("kubeconfig",),
        "talos_apply.cli",
        ("kubeconfig",),
        "Admin kubeconfig (talos-apply kubeconfig)",
    ),
    Route(("version",), "talos_apply.cli", ("version",), "Versions (talos-apply version)"),
    Route(("services",), "talos_apply.cli", ("services",), "List services (talos-apply services)"),
    Route(
        ("service",), "talos_apply.cli", ("service",), "One service, or all (talos-apply service)"
    ),
    Route(("logs",), "talos_apply.cli", ("logs",), "A service's log (talos-apply logs)"),
    Route(("reboot",), "talos_apply.cli", ("reboot",), "Reboot nodes (talos-apply reboot)"),
    Route(("shutdown",), "talos_apply.cli", ("shutdown",), "Power off (talos-apply shutdown)"),
    Route(("reset",), "talos_apply.cli", ("reset",), "Reset nodes (talos-apply reset)"),
    Route(("upgrade",), "talos_apply.cli", ("upgrade",), "Upgrade nodes (talos-apply upgrade)"),
    Route(("rollback",), "talos_apply.cli", ("rollback",), "Boot the other slot (talos-apply)"),
    Route(("etcd",), "talos_apply.cli", ("etcd",), "Manage etcd (talos-apply etcd)"),
    Route(("health",), "talos_apply.cli", ("health",), "Cluster health (talos-apply health)"),
    Route(("dmesg",), "talos_apply.cli", ("dmesg",), "Kernel log (talos-apply dmesg)"),
    Route(("memory",), "talos_apply.cli", ("memory",), "Memory use (talos-apply memory)"),
    Route(("m",), "talos_apply.cli", ("memory",), "Alias of memory"),
    Route(("free",), "talos_apply.cli", ("memory",), "Alias of memory"),
    Route(("processes",), "talos_apply.cli", ("processes",), "Processes (talos-apply processes)"),
    Route(("p",), "talos_apply.cli", ("processes",), "Alias of processes"),
    Route(("ps",), "talos_apply.cli", ("processes",), "Alias of processes"),
    Route(("interfaces",), "talos_apply.cli", ("interfaces",), "Links (talos-apply interfaces)"),
    Route(("routes",), "talos_apply.cli", ("routes",), "Routes (talos-apply routes)"),
    Route(("route",), "talos_apply.cli", ("routes",), "Alias of routes"),
    Route(("containers",), "talos_apply.cli", ("containers",), "Containers (talos-apply)"),
    Route(("c",), "talos_apply.cli", ("containers",), "Alias of containers"),
    Route(("stats",), "talos_apply.cli", ("stats",), "Container stats (talos-apply stats)"),
    Route(("events",), "talos_apply.cli", ("events",), "Runtime events (talos-apply events)"),
    Route(("time",), "talos_apply.cli", ("time",), "Node time vs NTP (talos-apply time)"),
    Route(("config",), "talos_apply.cli", ("config",), "Edit the talosconfig (talos-apply config)"),
    Route(("images",), "talos_apply.cli", ("images",), "Default images (talos-apply images)"),
    Route(("list",), "talos_apply.cli", ("list",), "List a node's files (talos-apply list)"),
    Route(("ls",), "talos_apply.cli", ("list",), "Alias of list"),
    Route(("read",), "talos_apply.cli", ("read",), "Read a node's file (talos-apply read)"),
    Route(("copy",), "talos_apply.cli", ("copy",), "Copy files out as .tar.gz (talos-apply copy)"),
    Route(("cp",), "talos_apply.cli", ("copy",), "Alias of copy"),
    Route(("usage",), "talos_apply.cli", ("usage",), "Disk usage (talos-apply usage)"),
    Route(("du",), "talos_apply.cli", ("usage",), "Alias of usage"),
    Route(("mounts",), "talos_apply.cli", ("mounts",), "List mounts (talos-apply mounts)"),
    Route(("mount",), "talos_apply.cli", ("mounts",), "Alias of mounts"),
    Route(("edit",), "talos_apply.cli", ("edit",), "Edit the machine config (talos-apply edit)"),
    Route(("patch",), "talos_apply.cli", ("patch",), "Patch the machine config (talos-apply)"),
    Route(("dashboard",), "talos_apply.cli", ("dashboard",), "Live node metrics (talos-apply)"),
    Route(("completion",), "talosctl.completion", (), "Shell completion: bash, zsh or fish"),
)

_ALIASES = {"--output-file": "-o", "--output": "-o"}

# talosctl's global flags may stand before the command words (`talosctl --talosconfig=./tc config
# endpoint …`, as the docs write it); they are moved after the command's own arguments.
GLOBAL_FLAGS = frozenset({"--talosconfig", "--context", "-e", "--endpoints", "-n", "--nodes"})


def split_globals(args: list[str]) -> tuple[list[str], list[str]]:
    """Leading global flags (with their values) and the rest of the command line."""
    hoisted: list[str] = []
    i = 0
    while i < len(args) and args[i].split("=", 1)[0] in GLOBAL_FLAGS:
        take = 1 if "=" in args[i] else 2
        hoisted.extend(args[i : i + take])
        i += take
    return hoisted, args[i:]


def usage() -> str:
    lines = [
        "talosctl: Talos's command lines, run by the Talos tools.",
        "",
        "Usage: talosctl COMMAND [ARGS]...   (COMMAND --help for its options)",
        "",
        "Commands:",
    ]
    for r in ROUTES:
        lines.append(f"  {' '.join(r.words):<16} {r.summary}")
    lines.append("")
    lines.append("Options:")
    lines.append("  --version  Print the version and exit.")
    lines.append("  -h, --help Show this message and exit.")
    return "\n".join(lines) + "\n"


def resolve(argv: list[str]) -> tuple[Route, list[str]] | None:
    """The route for ``argv`` (longest match of command words) and the tool's argv."""
    hoisted, args = split_globals(argv)
    for route in sorted(ROUTES, key=lambda r: -len(r.words)):
        n = len(route.words)
        if tuple(args[:n]) == route.words:
            rest = args[n:]
            given = {_ALIASES.get(a.split("=", 1)[0], a.split("=", 1)[0]) for a in rest}
            extra: list[str] = []
            if not ({"-h", "--help"} & given):
                for flag, default in route.defaults.items():
                    if flag not in given:
                        extra.extend(default)
            return route, [*route.prefix, *rest, *extra, *hoisted]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in ([], ["-h"], ["--help"]):
        sys.stdout.write(usage())
        return 0
    code = fast_version(args, "talosctl", __version__)
    if code is not None:
        return code
    found = resolve(args)
    if found is None:
        sys.stderr.write(f"error: unknown command {' '.join(args[:2])!r}\n\n{usage()}")
        return 2
    route, tool_args = found
    import importlib

    module = importlib.import_module(route.module)
    result: int = module.main(tool_args)
    return result


console = entry(main)
