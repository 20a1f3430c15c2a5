"""The Typer app: one module per command under :mod:`talos_apply.commands`."""

from __future__ import annotations

import typer

from libtalos.cli import make_app
from talos_apply.commands import apply_config, config, etcd, kubeconfig, lifecycle, logs
from talos_apply.commands import health as health_cmd
from talos_apply.commands import inspect as inspect_cmd
from talos_apply.commands import services as services_cmd
from talos_apply.commands import version as version_cmd
from talos_apply.options import global_options

app = make_app(
    name="talos-apply",
    help="The Talos machine API client. Exit codes: 0 ok, 1 failure (a node refused or failed, "
    "unreachable, bad TLS material, bad file), 2 usage. Data on stdout; errors on stderr.",
    no_args_is_help=True,
)


@app.callback()
@global_options()
def _globals(ctx: typer.Context) -> None:
    pass  # the global options given before the command: global_options keeps them in ctx.obj


app.command("apply-config")(apply_config.apply_config)
app.command("version")(version_cmd.version)
app.command("bootstrap")(lifecycle.bootstrap)
app.command("kubeconfig")(kubeconfig.kubeconfig)
app.command("services")(services_cmd.services)
app.command("service")(services_cmd.service)
app.command("logs")(logs.logs)
app.command("reboot")(lifecycle.reboot)
app.command("shutdown")(lifecycle.shutdown)
app.command("reset")(lifecycle.reset)
app.command("health")(health_cmd.health)
app.command("dmesg")(inspect_cmd.dmesg)
app.command("memory")(inspect_cmd.memory)
app.command("processes")(inspect_cmd.processes)
app.command("ps", hidden=True)(inspect_cmd.processes)  # talosctl's alias
app.add_typer(etcd.app, name="etcd")
app.add_typer(config.app, name="config")
