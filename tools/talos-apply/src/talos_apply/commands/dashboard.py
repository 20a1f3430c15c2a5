"""``dashboard [-d/--update-interval 3s]``: live metrics of the nodes, full screen.

Textual (and the dashboard package) is imported only here, when the command runs. The
terminal is required: without one the command stops with a usage error (exit 2). ``q`` or
Ctrl-C quits (exit 0); a node that stops answering is shown as unreachable, not an error of
the command.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from talos_apply.options import global_options, globals_of

DEFAULT_INTERVAL = "3s"  # talosctl's default


@global_options()
def dashboard(
    ctx: typer.Context,
    update_interval: Annotated[
        str,
        typer.Option("--update-interval", "-d", help="Interval between updates (e.g. 1s, 500ms)."),
    ] = DEFAULT_INTERVAL,
) -> None:
    """Cluster dashboard with real-time metrics.

    Keys: h/l or Left/Right switch node, j/k or Down/Up scroll, Ctrl-D/U/F/B page, q quits.
    """
    from libtalos.errors import UsageError
    from talos_apply import client
    from talos_apply.durations import parse_duration

    interval = parse_duration(update_interval, "--update-interval").total_seconds()
    target = client.secure_target(globals_of(ctx))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("dashboard needs a terminal (stdin and stdout)")

    from talos_apply.dashboard.data import Source
    from talos_apply.dashboard.screen import Dashboard

    app = Dashboard(Source(client.Client(target), target.nodes, interval), interval)
    app.run()
    if app.return_code:
        raise typer.Exit(app.return_code)
