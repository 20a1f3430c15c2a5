"""talos-cluster: local Talos clusters of container-mode talos-init nodes (``talosctl cluster``)."""

__version__ = "0.1.0"
