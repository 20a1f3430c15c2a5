"""talosctl: the Talos docs' command lines, each dispatched to the tool that does the work."""

__version__ = "0.1.0"
