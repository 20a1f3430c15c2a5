"""The Typer app of talos-image (imported only when a command runs, never for a lone
``--version``)."""

from __future__ import annotations

from libtalos.cli import make_app, version_option
from talos_image import __version__
from talos_image.cli import PROG
from talos_image.commands.installer import installer
from talos_image.commands.iso import iso
from talos_image.commands.pxe import pxe
from talos_image.commands.rootfs import rootfs

HELP = "Build the Talos OS image from Debian bookworm packages and this checkout (as root)."

app = make_app(name=PROG, help=HELP, no_args_is_help=True)
app.command("rootfs")(rootfs)
app.command("iso")(iso)
app.command("pxe")(pxe)
app.command("installer")(installer)


@app.callback(help=HELP)
def _root(version: bool = version_option(PROG, __version__)) -> None:
    pass
