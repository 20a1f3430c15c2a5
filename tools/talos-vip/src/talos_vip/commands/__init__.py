"""One module per command; :mod:`talos_vip.cli` registers them."""
