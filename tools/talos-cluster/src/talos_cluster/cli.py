"""talos-cluster's command line: one Typer app, one module per command.

    talos-cluster create [--name NAME] [--masters N] [--workers M] [--cidr CIDR] [--isolated] ...
    talos-cluster create --provisioner qemu [--iso-path ISO] [--disk MIB] [--with-uefi] ...
    talos-cluster show [--name NAME]
    talos-cluster destroy [--name NAME]

Exit codes (libtalos.errors.ExitCode): 0 ok; 1 a step failed (a namespace, a node, a file; the
message names it; create removes what it made), or a cluster record is unreadable or names a
directory, namespace, link or cgroup that is not the cluster's (destroy refuses it); 2 the
command line is wrong (bad CIDR, one overlapping an address, route or cluster of this network
namespace, too many nodes for the CIDR, bad name, CPUs, memory, duration or path);
130 interrupted (what was made so far is recorded: ``destroy`` removes it).
"""

from __future__ import annotations

from collections.abc import Sequence

from libtalos.cli import entry, fast_version
from talos_cluster import __version__

PROG = "talos-cluster"


def main(argv: Sequence[str] | None = None) -> int:
    """Run talos-cluster with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    quick = fast_version(argv, PROG, __version__)
    if quick is not None:
        return quick
    from libtalos.cli import run
    from talos_cluster.app import app

    return run(app, argv, prog=PROG)


console = entry(main)
