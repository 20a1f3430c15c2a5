from talosctl.cli import console

console()
