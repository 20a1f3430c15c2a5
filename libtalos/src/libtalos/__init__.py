"""libtalos: the pure core shared by the Talos tools.

No kernel side effects live here: models, strict YAML, validation, PKI, exit codes.
"""

__version__ = "0.1.0"

# The Talos release whose contract (config shape, defaults, PKI) this project follows.
TALOS_VERSION = "v0.9.3"
