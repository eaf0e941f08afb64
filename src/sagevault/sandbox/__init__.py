"""A local stand-in for Amazon's LWA token endpoint and the SP-API Orders reads, for tests and
the demo: `sagevault sandbox serve`, or `serve(Sandbox(config), tls_dir=...)` in process.

HTTPS on loopback only, with the local CA of `sagevault.crypto`. It answers as Amazon documents
(the models in tests/data/sp-api-models): LWA grants (refresh token, authorisation code),
Restricted Data Tokens, getOrders with signed NextTokens, getOrder, getOrderAddress,
getOrderBuyerInfo, getOrderItems and searchOrders (2026-01-01), Amazon's error shapes, the
documented rate limits, and faults a test injects (timeouts, 5xx, 429, expired tokens, bodies
that are not JSON). The orders are fake, deterministic, and every PII string in them is unique
(`pii_values`), so a test can prove none of it reached a file in clear.

An edge, like `sagevault.web`: only `sagevault.cli`, the tests and the benchmarks import it.
"""

from __future__ import annotations

from ._app import create_app
from ._data import generate_orders, order_2026, order_items, pii_values
from ._server import SandboxServer, check_loopback, serve
from ._state import (
    FAULT_KINDS,
    LWA_OPERATION,
    OPERATIONS,
    Sandbox,
    SandboxConfig,
    SellerSpec,
    new_client_id,
    new_client_secret,
    new_refresh_token,
)

__all__ = [
    "FAULT_KINDS",
    "LWA_OPERATION",
    "OPERATIONS",
    "Sandbox",
    "SandboxConfig",
    "SandboxServer",
    "SellerSpec",
    "check_loopback",
    "create_app",
    "generate_orders",
    "new_client_id",
    "new_client_secret",
    "new_refresh_token",
    "order_2026",
    "order_items",
    "pii_values",
    "serve",
]
