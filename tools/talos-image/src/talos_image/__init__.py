"""talos-image: the Talos OS image, built from Debian bookworm packages and this checkout."""

__version__ = "0.1.0"
