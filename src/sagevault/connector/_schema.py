"""The connector's tables: each seller's connection (its refresh token is not here: the vault keeps
it sealed under the tenant's keys) and the sync checkpoint of each tenant and marketplace."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, Text

from sagevault.db import NAMING_CONVENTION

connector_metadata = MetaData(naming_convention=NAMING_CONVENTION)

# One connected seller (tenant). `state`: active, revoked (Amazon refused the authorisation: the
# sync stops until the seller connects again) or pending (a website authorisation under way:
# `oauth_state_hash` is the SHA-256 of the state parameter handed to the consent page).
sp_connections = Table(
    "sp_connections",
    connector_metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("state", String(12), nullable=False),
    Column("region", String(8), nullable=False),
    Column("api", String(20), nullable=False),  # orders-v0 (getOrders) or orders-2026 (searchOrders)
    Column("restricted_data", Boolean, nullable=False),  # request an RDT for buyerInfo, shippingAddress
    Column("since", DateTime(timezone=True), nullable=False),  # where the first window starts
    Column("connected_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("oauth_state_hash", String(64), nullable=True),
    Column("oauth_expires_at", DateTime(timezone=True), nullable=True),
)

# The checkpoint of one tenant's marketplace, advanced in the transaction that stores each page:
# the window [window_after, window_before) being read and the NextToken of its next page. A
# finished window moves `window_after` to its `window_before`.
sp_sync = Table(
    "sp_sync",
    connector_metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("marketplace_id", String(32), primary_key=True),
    Column("window_after", DateTime(timezone=True), nullable=False),
    Column("window_before", DateTime(timezone=True), nullable=True),
    Column("next_token", Text, nullable=True),
    Column("pages", Integer, nullable=False),
    Column("orders", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("last_success_at", DateTime(timezone=True), nullable=True),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_error", String(80), nullable=True),  # an error class and code, never a message
)
