"""Fixtures for the k8s rendering tests: one generated cluster, shared by the module."""

from __future__ import annotations

import pytest

from libtalos import pki
from libtalos.config import GenerateInput, generate
from libtalos.config.v1alpha1 import Config
from libtalos.secrets import SecretsBundle


@pytest.fixture(scope="session")
def bundle() -> SecretsBundle:
    return pki.generate_secrets()


@pytest.fixture(scope="session")
def configs(bundle: SecretsBundle) -> dict[str, Config]:
    return generate(GenerateInput("demo", "https://10.5.0.2:6443"), bundle)
