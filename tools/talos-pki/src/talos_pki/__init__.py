"""talos-pki: Talos's PKI (CAs, leaf certificates, secrets bundle, fingerprints) as a Unix tool.

Importing this package is cheap on purpose: ``--version`` and ``fingerprint`` answer without
Typer, PyYAML or cryptography (see :mod:`talos_pki.cli`).
"""

__version__ = "0.1.0"
