"""Build hook: cffi compiles ``talos_luks._libcryptsetup`` against libcryptsetup's headers.

Everything else about the distribution is in pyproject.toml; setuptools' ``cffi_modules`` keyword
has no pyproject.toml spelling, which is the only reason this file exists.
"""

from setuptools import setup

setup(cffi_modules=["src/talos_luks/_build_ffi.py:ffibuilder"])
