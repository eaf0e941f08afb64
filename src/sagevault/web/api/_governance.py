"""The asset inventory, the record of processing and the policy register: the HTTPS face of
`sagevault assets|ropa|policies` (docs/governance.md).

Reading needs `governance:read`, every change `governance:manage` (both held by the compliance
role). Listing the assets (and the ROPA) first registers the deployment's own parts that are new,
so those routes open a writing unit of work. Every change is a security event
(governance:asset:*, governance:policy:*); a ROPA export is governance:ropa:export with counts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sagevault.governance import Asset, Policy

from .._deps import API, Authenticated, AuthenticatedRead
from .._pagination import PageQuery
from ._models import Out, PageOf, Timestamp

router = APIRouter(prefix=API)

IdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The id.")]
Kind = Literal[  # governance._assets.KINDS
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
]
Line = Annotated[str, Field(min_length=1, max_length=120)]
Format = Literal["json", "csv", "html"]
MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


class AssetsQuery(PageQuery):
    include_disposed: bool = Field(False, description="Disposed assets too.")


class DisposalOut(Out):
    standard: str
    asset: str
    kind: str
    method: Literal["clear", "purge", "destroy"]
    media: str
    verified_by: str
    recorded_by: str
    at: Timestamp


class AssetOut(Out):
    id: int
    name: str
    kind: str
    owner: str
    environment: str
    region: str | None
    amazon_data: bool = Field(description="Holds or reaches Amazon Information.")
    encrypted_at_rest: bool | None = Field(description="null: unknown.")
    mfa: bool | None = Field(description="null: unknown.")
    source: Literal["manual", "deployment"]
    state: Literal["active", "disposed"]
    notes: str | None
    created_at: Timestamp
    created_by: str
    last_reviewed_at: Timestamp | None
    last_reviewed_by: str | None
    next_review_at: Timestamp
    disposed_at: Timestamp | None
    disposal: DisposalOut | None = Field(description="The NIST SP 800-88 style record of a disposed asset.")


class AssetBody(Out):
    name: Line = Field(description="Unique in the inventory.")
    kind: Kind
    owner: Line = Field(description="The person or team answerable for it.")
    environment: Annotated[str, Field(min_length=1, max_length=24)] = "production"
    region: Annotated[str, Field(max_length=40)] | None = None
    amazon_data: bool = Field(True, description="Holds or reaches Amazon Information.")
    encrypted_at_rest: bool | None = None
    mfa: bool | None = None
    notes: Annotated[str, Field(max_length=2000)] | None = None


class ReviewBody(Out):
    notes: Annotated[str, Field(max_length=2000)] | None = Field(None, description="What was checked.")
    owner: Line | None = Field(None, description="A new owner, if it changed.")


class DisposeBody(Out):
    method: Literal["clear", "purge", "destroy"] = Field(description="NIST SP 800-88 sanitisation method.")
    media: Annotated[str, Field(min_length=1, max_length=200)] = Field(description="What was sanitised.")
    verified_by: Line = Field(description="Who verified the sanitisation.")


class RopaQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Format = "json"


class RopaRowOut(Out):
    document: str
    path: str
    pii: bool
    data_category: str = Field(description="Fides data category (fideslang).")
    purposes: list[str]
    data_uses: list[str] = Field(description="Fides data uses the purposes match.")
    retention: str
    retention_rule: str
    retention_days: int
    stored_in: list[str] = Field(description="Active assets that store Amazon Information.")
    revealed_by: list[str] = Field(description="Roles that can see the value in clear.")
    exported_by: list[str] = Field(description="Roles that can export it (pii:export).")
    leaves: bool
    leaves_via: list[str]


class PolicyOut(Out):
    id: int
    name: str
    version: str
    owner: str
    sha256: str
    created_at: Timestamp
    created_by: str
    approved_at: Timestamp | None
    approved_by: str | None
    next_review_at: Timestamp | None
    current: bool = Field(description="The newest version of its document (in force).")
    state: Literal["pending", "approved", "overdue", "superseded"]


class PolicyBody(Out):
    name: Line
    version: Annotated[str, Field(min_length=1, max_length=40)] = Field(description="e.g. 2.1")
    owner: Line
    sha256: Annotated[str, Field(min_length=64, max_length=64)] = Field(description="The document's SHA-256 (hex).")


class ApproveBody(Out):
    review_days: int = Field(365, ge=1, le=365, description="Days to the next review.")


def _asset(asset: Asset) -> AssetOut:
    return AssetOut.model_validate(asset.payload())


def _policy(policy: Policy, now: Any) -> PolicyOut:
    return PolicyOut.model_validate(policy.payload(now))


@router.get("/assets", tags=["governance"])
def list_assets(q: Annotated[AssetsQuery, Query()], work: Authenticated) -> PageOf[AssetOut]:
    """The asset inventory by id, a page at a time (the deployment's own parts are registered
    first, if new). Needs `governance:read`."""
    with work as (d, conn, who):
        d.governance.assets.sync_deployment(conn, d.own_assets(), principal=who)
        found = d.governance.assets.list_assets(conn, principal=who, include_disposed=q.include_disposed)
        return PageOf[AssetOut].model_validate(q.of(found, lambda a: a.id, _asset))


@router.post("/assets", status_code=201, tags=["governance"])
def add_asset(body: AssetBody, work: Authenticated) -> AssetOut:
    """Add an asset; its first review is due in a year. Needs `governance:manage`."""
    with work as (d, conn, who):
        return _asset(
            d.governance.assets.add(
                conn,
                name=body.name,
                kind=body.kind,
                owner=body.owner,
                principal=who,
                environment=body.environment,
                region=body.region,
                amazon_data=body.amazon_data,
                encrypted_at_rest=body.encrypted_at_rest,
                mfa=body.mfa,
                notes=body.notes,
            )
        )


@router.get("/assets/{asset_id}", tags=["governance"])
def get_asset(asset_id: IdPath, work: AuthenticatedRead) -> AssetOut:
    """One asset, with its disposal record if it was disposed of. Needs `governance:read`."""
    with work as (d, conn, who):
        return _asset(d.governance.assets.get(conn, asset_id, principal=who))


@router.post("/assets/{asset_id}/review", tags=["governance"])
def review_asset(asset_id: IdPath, body: ReviewBody, work: Authenticated) -> AssetOut:
    """Record that the entry was checked; the next review is due in a year. A disposed asset is
    refused (409). Needs `governance:manage`."""
    with work as (d, conn, who):
        return _asset(d.governance.assets.review(conn, asset_id, principal=who, notes=body.notes, owner=body.owner))


@router.post("/assets/{asset_id}/dispose", tags=["governance"])
def dispose_asset(asset_id: IdPath, body: DisposeBody, work: Authenticated) -> AssetOut:
    """Retire an asset with its NIST SP 800-88 style sanitisation record; once only (409 after).
    Needs `governance:manage`."""
    with work as (d, conn, who):
        return _asset(
            d.governance.assets.dispose(
                conn, asset_id, principal=who, method=body.method, media=body.media, verified_by=body.verified_by
            )
        )


@router.get(
    "/ropa",
    tags=["governance"],
    response_model=list[RopaRowOut],
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}}}}
    },
)
def ropa(q: Annotated[RopaQuery, Query()], work: Authenticated) -> Response:
    """The record of processing, generated: one row per catalogued field (data category and uses
    in Fides' taxonomy, purposes, retention, where stored, who can reveal it, how it leaves), as
    JSON, CSV or a self-contained HTML page. Needs `governance:read`."""
    with work as (d, conn, who):
        d.governance.assets.sync_deployment(conn, d.own_assets(), principal=who)
        found = d.governance.assets.list_assets(conn, principal=who)
        text = d.governance.ropa.export(conn, principal=who, assets=found, fmt=q.format)
    return Response(text, media_type=MEDIA[q.format])


@router.get("/policies", tags=["governance"])
def list_policies(q: Annotated[PageQuery, Query()], work: AuthenticatedRead) -> PageOf[PolicyOut]:
    """The policy register: every version by id, a page at a time (the newest of each document is
    in force). Needs `governance:read`."""
    with work as (d, conn, who):
        found = d.governance.policies.list_policies(conn, principal=who)
        now = d.governance.policies.now()
        return PageOf[PolicyOut].model_validate(q.of(found, lambda p: p.id, lambda p: _policy(p, now)))


@router.post("/policies", status_code=201, tags=["governance"])
def add_policy(body: PolicyBody, work: Authenticated) -> PolicyOut:
    """Register a version of a company document by its SHA-256. Needs `governance:manage`."""
    with work as (d, conn, who):
        policy = d.governance.policies.add(
            conn, name=body.name, version=body.version, owner=body.owner, sha256=body.sha256, principal=who
        )
        return _policy(policy, d.governance.policies.now())


@router.post("/policies/{policy_id}/approve", tags=["governance"])
def approve_policy(policy_id: IdPath, work: Authenticated, body: ApproveBody | None = None) -> PolicyOut:
    """Approve a version in force (again: its periodic review); next review in `review_days`.
    Needs `governance:manage`."""
    with work as (d, conn, who):
        days = body.review_days if body is not None else 365
        policy = d.governance.policies.approve(conn, policy_id, principal=who, review_days=days)
        return _policy(policy, d.governance.policies.now())
