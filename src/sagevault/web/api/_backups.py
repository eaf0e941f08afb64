"""Backups: the HTTPS face of `sagevault backup list|create`.

Listing needs `backups:read`, writing one `backups:manage` (both held by the privacy-officer
role). A backup is written into the server's backup_dir, encrypted to the deployment's backup key,
and registered as a live copy with its expiry (90 days at most). Restoring replaces the database
and is done from the command line with the service stopped (`sagevault backup restore`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from sagevault.deletion import LiveCopy

from .._deps import API, Authenticated, AuthenticatedRead
from .._pagination import PageQuery
from ._models import Out, PageOf, Timestamp

router = APIRouter(prefix=API)


class BackupsQuery(PageQuery):
    live: bool = Field(False, description="Only backups not destroyed.")


class BackupOut(Out):
    id: int
    location: str = Field(description="The file, on the server.")
    sha256: str = Field(description="SHA-256 of the (encrypted) file.")
    size: int = Field(description="Bytes.")
    created_by: str
    created_at: Timestamp
    expires_at: Timestamp = Field(description="When it must be gone (at most the policy's 90 days).")
    destroyed_at: Timestamp | None


class BackupBody(Out):
    days: int | None = Field(None, ge=1, le=3650, description="Keep it this many days (default and most: 90).")
    recipients: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Further age X25519 public keys (age1...) that can open it, besides the deployment's backup key.",
    )


def _out(copy: LiveCopy) -> BackupOut:
    return BackupOut(
        id=copy.id,
        location=copy.location,
        sha256=copy.sha256,
        size=copy.size,
        created_by=copy.created_by,
        created_at=copy.created_at,
        expires_at=copy.expires_at,
        destroyed_at=copy.destroyed_at,
    )


@router.get("/backups", tags=["backups"])
def list_backups(q: Annotated[BackupsQuery, Query()], work: AuthenticatedRead) -> PageOf[BackupOut]:
    """Backups, newest first, a page at a time. Needs `backups:read`."""
    with work as (d, conn, who):
        found = d.backups.list_backups(conn, principal=who, live_only=q.live)
        return PageOf[BackupOut].model_validate(q.of(found, lambda c: -c.id, _out))


@router.post("/backups", tags=["backups"], status_code=201)
def create_backup(body: BackupBody, work: Authenticated) -> BackupOut:
    """Write an encrypted, signed backup of the vault's database into the server's backup_dir and
    register it as a live copy. Needs `backups:manage`."""
    with work as (d, conn, who):
        return _out(d.backups.create(conn, principal=who, extra_recipients=body.recipients, days=body.days).copy)
