"""The two ways a node runs."""

from __future__ import annotations

import enum


class Mode(enum.StrEnum):
    container = "container"  # a node in its own PID, mount, UTS and network namespaces
    metal = "metal"  # PID 1 of a real (or virtual) machine
