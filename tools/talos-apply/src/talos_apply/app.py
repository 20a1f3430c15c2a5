"""The Typer app: one module per command under :mod:`talos_apply.commands`."""

from __future__ import annotations

import typer

from libtalos.cli import make_app
from talos_apply.commands import apply_config, config, etcd, images, kubeconfig, lifecycle, logs
from talos_apply.commands import dashboard as dashboard_cmd
from talos_apply.commands import edit as edit_cmd
from talos_apply.commands import events as events_cmd
from talos_apply.commands import files as files_cmd
from talos_apply.commands import health as health_cmd
from talos_apply.commands import inspect as inspect_cmd
from talos_apply.commands import mounts as mounts_cmd
from talos_apply.commands import patch as patch_cmd
from talos_apply.commands import services as services_cmd
from talos_apply.commands import sysviews as sysviews_cmd
from talos_apply.commands import time as time_cmd
from talos_apply.commands import upgrade as upgrade_cmd
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
app.command("upgrade")(upgrade_cmd.upgrade)
app.command("rollback")(upgrade_cmd.rollback)
app.command("health")(health_cmd.health)
app.command("dmesg")(inspect_cmd.dmesg)
app.command("memory")(inspect_cmd.memory)
app.command("processes")(inspect_cmd.processes)
app.command("ps", hidden=True)(inspect_cmd.processes)  # talosctl's alias
app.command("interfaces")(sysviews_cmd.interfaces)
app.command("routes")(sysviews_cmd.routes)
app.command("route", hidden=True)(sysviews_cmd.routes)  # talosctl's alias
app.command("containers")(sysviews_cmd.containers)
app.command("c", hidden=True)(sysviews_cmd.containers)  # talosctl's alias
app.command("stats")(sysviews_cmd.stats)
app.command("events")(events_cmd.events)
app.command("time")(time_cmd.time)
app.command("images")(images.images)
app.command("list")(files_cmd.list_files)
app.command("ls", hidden=True)(files_cmd.list_files)  # talosctl's alias
app.command("read")(files_cmd.read)
app.command("copy")(files_cmd.copy)
app.command("cp", hidden=True)(files_cmd.copy)  # talosctl's alias
app.command("usage")(files_cmd.usage)
app.command("du", hidden=True)(files_cmd.usage)  # talosctl's alias
app.command("mounts")(mounts_cmd.mounts)
app.command("mount", hidden=True)(mounts_cmd.mounts)  # talosctl's alias
app.command("edit")(edit_cmd.edit)
app.command("patch")(patch_cmd.patch)
app.command("dashboard")(dashboard_cmd.dashboard)
app.add_typer(etcd.app, name="etcd")
app.add_typer(config.app, name="config")
