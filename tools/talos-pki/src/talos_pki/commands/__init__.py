"""One module per command; :mod:`talos_pki.app` registers them."""
