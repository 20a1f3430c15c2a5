"""One module per command; :mod:`talos_luks.cli` registers them."""
