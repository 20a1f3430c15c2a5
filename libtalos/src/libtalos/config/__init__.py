"""The v1alpha1 machine config: models with their docs, strict loading, validation, generation.

The names the tools use::

    from libtalos.config import load, validate, generate, GenerateInput, encode, Config
"""

from __future__ import annotations

from libtalos.config.generate import GenerateInput, generate
from libtalos.config.loader import LoadedConfig, encode, load, redacted, to_data
from libtalos.config.v1alpha1 import Config
from libtalos.config.validate import Mode, ValidationResult, check_endpoint, validate

__all__ = [
    "Config",
    "GenerateInput",
    "LoadedConfig",
    "Mode",
    "ValidationResult",
    "check_endpoint",
    "encode",
    "generate",
    "load",
    "redacted",
    "to_data",
    "validate",
]
