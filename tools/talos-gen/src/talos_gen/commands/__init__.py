"""One module per command; :mod:`talos_gen.app` registers them."""
