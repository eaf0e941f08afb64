"""SageVault: Amazon Information protected as Amazon's Data Protection Policy requires.

from sagevault import load_settings, open_deployment, Principal
d = open_deployment(load_settings())
with d.engine.begin() as conn:
    d.vault.ingest(conn, "A1SELLER", [response], principal=Principal.local_operator())
"""

from __future__ import annotations

from sagevault.catalog import CATALOG, Purpose
from sagevault.config import Settings, load_settings
from sagevault.crypto import InMemoryKeyProvider
from sagevault.deployment import init_deployment, open_deployment
from sagevault.errors import ConfigError, IntegrityError, SageVaultError, TenantShredded
from sagevault.identity import Principal
from sagevault.vault import Operation, Vault

__all__ = [
    "CATALOG",
    "ConfigError",
    "InMemoryKeyProvider",
    "IntegrityError",
    "Operation",
    "Principal",
    "Purpose",
    "SageVaultError",
    "Settings",
    "TenantShredded",
    "Vault",
    "init_deployment",
    "load_settings",
    "open_deployment",
]
