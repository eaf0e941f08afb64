"""The HTTPS API's routes (FastAPI routers under /api/v1): sessions, tenants and records
(`_records`); keys, shredding and the security log (`_data`); administration of people, keys,
grants, allow-lists and kill switches (`_admin`); alarms and detection rules (`_monitor`);
incidents and the incident response plan (`_incidents`); the SP-API sync (`_connector`).
The bodies they answer are `_models`."""

from __future__ import annotations

from fastapi import APIRouter

from . import (
    _admin,
    _backups,
    _compliance,
    _connector,
    _data,
    _deletion,
    _governance,
    _incidents,
    _monitor,
    _records,
    _retention,
    _reviews,
)

ROUTERS: tuple[APIRouter, ...] = (
    _records.router,
    _data.router,
    _admin.router,
    _monitor.router,
    _incidents.router,
    _deletion.router,
    _retention.router,
    _backups.router,
    _connector.router,
    _governance.router,
    _reviews.router,
    _compliance.router,
)

__all__ = ["ROUTERS"]
