"""Governance: the asset inventory: add, list, show, review, dispose (an SP 800-88 style
record); the deployment registers its own parts.

Every asset that holds or reaches Amazon Information has an owner, a review date (a year after
it was added or last reviewed) and a lifecycle state (active, disposed). A disposal keeps the row
and writes its sanitisation record (NIST SP 800-88: clear, purge or destroy; the media; who
verified it; when and by whom it was recorded); a disposed asset is neither reviewed nor disposed
again. The deployment's own parts (its database, master key, security log database, backup
location, alarm sinks, the SP-API endpoint) are registered by `sync_deployment`, idempotent by
name, with `source="deployment"`; a part whose identity changes (a new database host) comes in
as a new asset, and the old one stays until a person disposes of it."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, make_url, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Gate, check_scope
from sagevault.errors import Conflict, NotFound, PayloadError
from sagevault.identity import Channel, Principal, Scope

from ._schema import assets

KINDS = (
    "server",
    "workstation",
    "database",
    "backup-location",
    "saas",
    "service-account",
    "network",
    "key-provider",
    "alarm-sink",
    "other",
)
# NIST SP 800-88 Rev. 1, section 2.5: the three sanitisation methods.
METHODS = ("clear", "purge", "destroy")
REVIEW_DAYS = 365
# The kinds of asset that store Amazon Information (the record of processing's "where stored").
STORES = frozenset({"database", "backup-location", "server", "workstation", "saas", "other"})
DEPLOYMENT = Principal(id="sagevault:deployment", kind="operator", channel=Channel.LIBRARY)

_TEXT = re.compile(r"[^\x00-\x1f\x7f]+")


def utc(value: datetime | None) -> datetime | None:
    """A time from the database as UTC (SQLite gives it back without a zone)."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def text_field(name: str, value: str | None, limit: int, *, required: bool = True) -> str | None:
    """`value` stripped, one line of at most `limit` characters; PayloadError says what is wrong."""
    if value is None or not value.strip():
        if required:
            raise PayloadError(f"{name} is required: give it (at most {limit} characters)")
        return None
    value = value.strip()
    if len(value) > limit:
        raise PayloadError(f"{name} is {len(value)} characters long; shorten it to at most {limit}")
    if not _TEXT.fullmatch(value):
        raise PayloadError(f"{name} must be one line of text, without control characters")
    return value


def _notes(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > 2000:
        raise PayloadError(f"notes are {len(value)} characters long; shorten them to at most 2000")
    if any(c in value for c in "\x00\x1b\x7f"):
        raise PayloadError("notes must be plain text, without control characters")
    return value


@dataclass(frozen=True)
class AssetPart:
    """One part of the deployment as `Deployment.own_assets` describes it (no credentials)."""

    name: str
    kind: str
    amazon_data: bool
    encrypted_at_rest: bool | None = None
    mfa: bool | None = None
    region: str | None = None
    notes: str | None = None
    owner: str = "sagevault operator"
    environment: str = "production"


def _database(url: str) -> str:
    """`dialect where` of a database URL, without its user or password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite file {Path(parsed.database or '').name} on this server"
    return f"{parsed.get_backend_name()} {parsed.host or 'local socket'}:{parsed.port or 5432}/{parsed.database}"


def _endpoint_host(app_file: Path) -> str | None:
    """The SP-API endpoint's host named in the application's credentials file (no secret read)."""
    try:
        endpoint = tomllib.loads(app_file.read_text()).get("endpoint")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return urlsplit(endpoint).hostname if isinstance(endpoint, str) else None


def deployment_parts(
    *,
    hostname: str,
    data_dir: Path,
    database_url: str,
    audit_database_url: str,
    kms_key: tuple[str | None, str] | None,
    master_key_file: Path,
    backup_dir: Path,
    webhook_url: str | None,
    smtp_host: str | None,
    sp_api_app_file: Path,
) -> list[AssetPart]:
    """The parts of a deployment that hold or reach Amazon Information (or carry its alarms):
    this server, its database, the master key (`kms_key`: key id and region, or None for the
    local key file), the security log's database when separate, the backup location, the alarm
    sinks configured, and the SP-API endpoint when the application's credentials file exists."""
    parts = [
        AssetPart(f"SageVault server ({hostname})", "server", True, notes=f"runs SageVault; data dir {data_dir}"),
        AssetPart(
            f"SageVault database ({_database(database_url)})",
            "database",
            True,
            encrypted_at_rest=True,
            notes="Amazon Information; PII fields encrypted with AES-256-GCM under per-tenant keys",
        ),
    ]
    if audit_database_url != database_url:
        parts.append(
            AssetPart(
                f"SageVault security log ({_database(audit_database_url)})",
                "database",
                False,
                notes="security events: ids and counts, no Amazon Information",
            )
        )
    if kms_key is not None:
        key = AssetPart(f"SageVault master key (AWS KMS {kms_key[0]})", "key-provider", True, True, region=kms_key[1])
    else:
        key = AssetPart(
            f"SageVault master key (local key file {master_key_file.name})",
            "key-provider",
            True,
            False,
            notes=f"{master_key_file} (0600); wraps the tenant keys",
        )
    parts.append(key)
    parts.append(
        AssetPart(
            f"SageVault backups ({backup_dir})",
            "backup-location",
            True,
            True,
            notes="encrypted to the deployment's backup key (age); destroyed within 90 days",
        )
    )
    if webhook_url:
        parts.append(AssetPart(f"alarm webhook ({urlsplit(webhook_url).hostname})", "alarm-sink", False))
    if smtp_host:
        parts.append(AssetPart(f"alarm e-mail ({smtp_host})", "alarm-sink", False))
    if sp_api_app_file.is_file():
        host = _endpoint_host(sp_api_app_file)
        parts.append(
            AssetPart(
                f"SP-API endpoint ({host or 'Amazon, per region'})",
                "network",
                True,
                notes="where the connector fetches orders (LWA, RDT, TLS)",
            )
        )
    return parts


@dataclass(frozen=True)
class Asset:
    id: int
    name: str
    kind: str
    owner: str
    environment: str
    region: str | None
    amazon_data: bool
    encrypted_at_rest: bool | None
    mfa: bool | None
    source: str
    state: str
    notes: str | None
    created_at: datetime
    created_by: str
    last_reviewed_at: datetime | None
    last_reviewed_by: str | None
    next_review_at: datetime
    disposed_at: datetime | None
    disposal: dict[str, Any] | None

    @classmethod
    def of(cls, row: Any) -> Asset:
        return cls(
            id=int(row.id),
            name=row.name,
            kind=row.kind,
            owner=row.owner,
            environment=row.environment,
            region=row.region,
            amazon_data=bool(row.amazon_data),
            encrypted_at_rest=row.encrypted_at_rest,
            mfa=row.mfa,
            source=row.source,
            state=row.state,
            notes=row.notes,
            created_at=utc(row.created_at),  # type: ignore[arg-type]
            created_by=row.created_by,
            last_reviewed_at=utc(row.last_reviewed_at),
            last_reviewed_by=row.last_reviewed_by,
            next_review_at=utc(row.next_review_at),  # type: ignore[arg-type]
            disposed_at=utc(row.disposed_at),
            disposal=dict(row.disposal) if row.disposal else None,
        )

    @property
    def stores_amazon_data(self) -> bool:
        """Active, holds Amazon Information, and of a kind that stores it (not a key or a sink)."""
        return self.state == "active" and self.amazon_data and self.kind in STORES

    def review_due(self, now: datetime) -> bool:
        return self.state == "active" and self.next_review_at <= now

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "owner": self.owner,
            "environment": self.environment,
            "region": self.region,
            "amazon_data": self.amazon_data,
            "encrypted_at_rest": self.encrypted_at_rest,
            "mfa": self.mfa,
            "source": self.source,
            "state": self.state,
            "notes": self.notes,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "last_reviewed_at": _iso(self.last_reviewed_at),
            "last_reviewed_by": self.last_reviewed_by,
            "next_review_at": self.next_review_at.isoformat(),
            "disposed_at": _iso(self.disposed_at),
            "disposal": self.disposal,
        }


class Assets:
    """The asset inventory (`assets`)."""

    def __init__(self, *, audit: AuditSink, gate: Gate, clock: Callable[[], datetime] | None = None) -> None:
        self._audit = audit
        self._gate = gate
        self._clock = clock or (lambda: datetime.now(UTC))

    def _event(self, name: EventName, principal: Principal, asset_id: int, operation: str) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                operation=f"{operation} {asset_id}",
                counts={"asset": asset_id},
            )
        )

    def _get(self, conn: Connection, asset_id: int) -> Asset:
        row = conn.execute(select(assets).where(assets.c.id == asset_id)).first()
        if row is None:
            raise NotFound(f"no asset {asset_id}; `sagevault assets list` shows the inventory")
        return Asset.of(row)

    def add(
        self,
        conn: Connection,
        *,
        name: str,
        kind: str,
        owner: str | None,
        principal: Principal,
        environment: str = "production",
        region: str | None = None,
        amazon_data: bool = True,
        encrypted_at_rest: bool | None = None,
        mfa: bool | None = None,
        notes: str | None = None,
    ) -> Asset:
        """Add an asset a person keeps (`source="manual"`); its first review is due in a year."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_MANAGE, "assets add")
        if not owner or not owner.strip():
            raise PayloadError("an asset needs an owner (the person or team answerable for it): give --owner / owner")
        return self._insert(
            conn,
            principal=principal,
            source="manual",
            values=self._checked(
                name=name,
                kind=kind,
                owner=owner,
                environment=environment,
                region=region,
                amazon_data=amazon_data,
                encrypted_at_rest=encrypted_at_rest,
                mfa=mfa,
                notes=notes,
            ),
        )

    @staticmethod
    def _checked(**given: Any) -> dict[str, Any]:
        kind = given["kind"]
        if kind not in KINDS:
            raise PayloadError(f"an asset's kind is one of {', '.join(KINDS)}; got {str(kind)[:40]!r}")
        return {
            "name": text_field("name", given["name"], 120),
            "kind": kind,
            "owner": text_field("owner", given["owner"], 120),
            "environment": text_field("environment", given["environment"], 24),
            "region": text_field("region", given["region"], 40, required=False),
            "amazon_data": bool(given["amazon_data"]),
            "encrypted_at_rest": given["encrypted_at_rest"],
            "mfa": given["mfa"],
            "notes": _notes(given["notes"]),
        }

    def _insert(self, conn: Connection, *, principal: Principal, source: str, values: dict[str, Any]) -> Asset:
        if conn.execute(select(assets.c.id).where(assets.c.name == values["name"])).first() is not None:
            raise Conflict(
                f"an asset named {values['name']!r} is in the inventory already; `sagevault assets list` shows it"
            )
        now = self._clock()
        asset_id = conn.execute(
            insert(assets).values(
                **values,
                source=source,
                state="active",
                created_at=now,
                created_by=principal.id,
                next_review_at=now + timedelta(days=REVIEW_DAYS),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        self._event(EventName.GOVERNANCE_ASSET_ADD, principal, int(asset_id), f"asset {source}")
        return self._get(conn, int(asset_id))

    def sync_deployment(
        self, conn: Connection, parts: Sequence[AssetPart], *, principal: Principal = DEPLOYMENT
    ) -> list[Asset]:
        """Register the deployment's own parts that are not in the inventory yet (by name), as
        `source="deployment"`; returns those added. The caller needs governance:read (the parts
        are facts of the deployment, not a person's choice)."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_READ, "assets sync")
        known = set(conn.execute(select(assets.c.name)).scalars())
        added = []
        for part in parts:
            name = part.name.strip()[:120]
            if name in known:
                continue
            values = self._checked(
                name=name,
                kind=part.kind,
                owner=part.owner,
                environment=part.environment,
                region=part.region,
                amazon_data=part.amazon_data,
                encrypted_at_rest=part.encrypted_at_rest,
                mfa=part.mfa,
                notes=part.notes,
            )
            added.append(self._insert(conn, principal=principal, source="deployment", values=values))
            known.add(name)
        return added

    def list_assets(self, conn: Connection, *, principal: Principal, include_disposed: bool = False) -> list[Asset]:
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_READ, "assets list")
        query = select(assets).order_by(assets.c.id)
        if not include_disposed:
            query = query.where(assets.c.state == "active")
        return [Asset.of(r) for r in conn.execute(query)]

    def get(self, conn: Connection, asset_id: int, *, principal: Principal) -> Asset:
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_READ, "assets show")
        return self._get(conn, asset_id)

    def _active(self, conn: Connection, asset_id: int, doing: str) -> Asset:
        asset = self._get(conn, asset_id)
        if asset.state != "active":
            when = f"{asset.disposed_at:%Y-%m-%d}" if asset.disposed_at else "earlier"
            raise Conflict(f"asset {asset_id} was disposed of on {when}; a disposed asset cannot be {doing}")
        return asset

    def review(
        self,
        conn: Connection,
        asset_id: int,
        *,
        principal: Principal,
        notes: str | None = None,
        owner: str | None = None,
    ) -> Asset:
        """Record that the entry was checked (and, with `owner`, who answers for it now); the
        next review is due in a year."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_MANAGE, "assets review")
        self._active(conn, asset_id, "reviewed")
        now = self._clock()
        values: dict[str, Any] = {
            "last_reviewed_at": now,
            "last_reviewed_by": principal.id,
            "next_review_at": now + timedelta(days=REVIEW_DAYS),
        }
        if (checked := _notes(notes)) is not None:
            values["notes"] = checked
        if owner is not None:
            values["owner"] = text_field("owner", owner, 120)
        done = conn.execute(
            update(assets).where(assets.c.id == asset_id, assets.c.state == "active").values(**values)
        ).rowcount
        if not done:
            raise Conflict(f"asset {asset_id} was disposed of meanwhile; it cannot be reviewed")
        self._event(EventName.GOVERNANCE_ASSET_REVIEW, principal, asset_id, "asset review")
        return self._get(conn, asset_id)

    def dispose(
        self,
        conn: Connection,
        asset_id: int,
        *,
        principal: Principal,
        method: str,
        media: str,
        verified_by: str,
    ) -> Asset:
        """Retire an asset with its sanitisation record (NIST SP 800-88: clear, purge or destroy;
        the media sanitised; who verified the result). Once only."""
        check_scope(self._gate, self._audit, conn, principal, Scope.GOVERNANCE_MANAGE, "assets dispose")
        if method not in METHODS:
            raise PayloadError(f"the sanitisation method is one of {', '.join(METHODS)} (NIST SP 800-88)")
        record_media = text_field("media", media, 200)
        record_verifier = text_field("verified_by", verified_by, 120)
        asset = self._active(conn, asset_id, "disposed of again")
        now = self._clock()
        disposal = {
            "standard": "NIST SP 800-88 Rev. 1",
            "asset": asset.name,
            "kind": asset.kind,
            "method": method,
            "media": record_media,
            "verified_by": record_verifier,
            "recorded_by": principal.id,
            "at": now.isoformat(),
        }
        done = conn.execute(
            update(assets)
            .where(assets.c.id == asset_id, assets.c.state == "active")
            .values(state="disposed", disposed_at=now, disposal=disposal)
        ).rowcount
        if not done:
            raise Conflict(f"asset {asset_id} was disposed of meanwhile; it cannot be disposed of again")
        self._event(EventName.GOVERNANCE_ASSET_DISPOSE, principal, asset_id, f"asset {method}")
        return self._get(conn, asset_id)

    def due(self, conn: Connection) -> list[Asset]:
        """Active assets whose review date has passed, oldest first (for the job and the report)."""
        query = (
            select(assets)
            .where(assets.c.state == "active", assets.c.next_review_at <= self._clock())
            .order_by(assets.c.next_review_at, assets.c.id)
        )
        return [Asset.of(r) for r in conn.execute(query)]

    def now(self) -> datetime:
        return self._clock()
