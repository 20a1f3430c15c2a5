"""talos-gen: generate, validate and patch Talos machine configs."""

__version__ = "0.1.0"
