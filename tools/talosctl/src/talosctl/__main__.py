from talosctl.cli import entry

entry()
