"""Names a node takes as its own: the one hostname rule of ``talos-gen validate`` and the node.

``machine.network.hostname`` becomes the node's hostname (``sethostname(2)``), its etcd member
name and a DNS SAN of its API certificate, so the rule is the strict one of RFC 1123 host
names in lowercase: dot-separated labels of ``a-z``, ``0-9`` and ``-``, 1-63 characters each,
not starting or ending with ``-``; at most :data:`HOST_NAME_MAX` characters in all (the
kernel refuses longer names).
"""

from __future__ import annotations

import re

HOST_NAME_MAX = 64  # Linux's limit for sethostname(2)
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def hostname_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a node's hostname (without the value); None if fine."""
    if not name:
        return "must not be empty"
    if len(name) > HOST_NAME_MAX:
        return f"must be at most {HOST_NAME_MAX} characters"
    if not _HOSTNAME.fullmatch(name):
        return (
            "must be a hostname: lowercase letters, digits and '-' in dot-separated labels "
            "of 1-63 characters, not starting or ending with '-'"
        )
    return None
