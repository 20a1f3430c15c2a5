"""talos-apply: the Talos machine API client."""

__version__ = "0.1.0"
