"""cffi builder for ``talos_luks._libcryptsetup`` (run by setup.py's ``cffi_modules``).

Build requirements for distributions: a C compiler, libcryptsetup's headers and library
(Debian: ``libcryptsetup-dev``; Fedora: ``cryptsetup-devel``; Alpine: ``cryptsetup-dev``),
version 2.3.4 or later (the release Talos v0.9 shipped; the check below refuses older headers
at build time). At run time only the shared library is needed (Debian: ``libcryptsetup12``).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

_HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((_HERE / "_cdef.h").read_text(encoding="utf-8"))
ffibuilder.set_source(
    "talos_luks._libcryptsetup",
    """
    #include <libcryptsetup.h>
    /* CRYPT_ACTIVATE_NO_WRITE_WORKQUEUE appeared in libcryptsetup 2.3.4. */
    #ifndef CRYPT_ACTIVATE_NO_WRITE_WORKQUEUE
    #error "talos-luks needs libcryptsetup 2.3.4 or later"
    #endif
    """,
    libraries=["cryptsetup"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
