"""talos-init: the PID 1 of a Talos node (machined's job), as a small Python program."""

__version__ = "0.1.0"
