"""talos-luks: LUKS2 volumes for Talos's STATE and EPHEMERAL partitions, over libcryptsetup.

Layers, bottom up: ``_cdef.h`` (the C declarations used, nothing more), ``_build_ffi.py`` (the
cffi builder run by the package build), ``binding`` (one return-code check and the log bridge),
``volume`` (the Pythonic API), ``keys``/``nodeid``/``config``/``apply`` (Talos's key and slot
logic), ``cli`` (the command line).
"""

__version__ = "0.1.0"
