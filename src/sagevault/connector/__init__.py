"""The SP-API connector: sellers' authorisations, LWA tokens and Restricted Data Tokens, and the
orders sync that pulls each page straight into the vault with its checkpoint.

`Connector` is the service (connections, checkpoints, `fetch` and `store` of one page);
`SpApiClient` talks to Amazon (or the local stand-in, `sagevault.sandbox`) over httpx;
`sagevault.jobs.sync_tenant` runs the loop, one unit of work per page. `MIGRATIONS` creates the
connector's tables."""

from __future__ import annotations

from pathlib import Path

from ._client import RESTRICTED_ELEMENTS, SpApiClient, Token
from ._credentials import ENDPOINTS, LWA_TOKEN_URL, AppCredentials, check_https, load_app, rewrap_app, save_app
from ._rate import DEFAULT_PLANS, Backoff, TokenBucket
from ._schema import connector_metadata, sp_connections, sp_sync
from ._service import REFRESH_TOKEN, Connector, SellerConnection, SyncPlan, SyncStatus
from ._sync import API_2026, API_V0, APIS, Cursor, Page

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = [
    "APIS",
    "API_2026",
    "API_V0",
    "DEFAULT_PLANS",
    "ENDPOINTS",
    "LWA_TOKEN_URL",
    "MIGRATIONS",
    "REFRESH_TOKEN",
    "RESTRICTED_ELEMENTS",
    "AppCredentials",
    "Backoff",
    "Connector",
    "Cursor",
    "Page",
    "SellerConnection",
    "SpApiClient",
    "SyncPlan",
    "SyncStatus",
    "Token",
    "TokenBucket",
    "check_https",
    "connector_metadata",
    "load_app",
    "rewrap_app",
    "save_app",
    "sp_connections",
    "sp_sync",
]
