"""talos-vip: one shared IP held by exactly one node, moved in about two seconds."""

__version__ = "0.1.0"
