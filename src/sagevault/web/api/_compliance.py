"""The vulnerability register and the DPP evidence report: the HTTPS face of `sagevault vulns` and
`sagevault report` (docs/dpp-report.md).

Reading needs `governance:read`, recording a scan `governance:manage` (both held by the compliance
role). A scan is pip-audit's JSON (`pip-audit --format json`) as the request body; the report is
evaluated on the live deployment at each request (compliance:report:create); the pack is the
signed zip (compliance:pack:create with its SHA-256), checked offline with `sagevault report verify`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sagevault.compliance import evaluate, register_own_assets, render
from sagevault.governance._vulns import MAX_DEPENDENCIES, Vulnerability

from .._deps import API, Authenticated, AuthenticatedRead, evidence_pack
from ._models import Out, Timestamp

router = APIRouter(prefix=API)

Format = Literal["json", "html", "md"]
MEDIA = {"json": "application/json", "html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8"}


class VulnerabilityOut(Out):
    id: int
    package: str
    version: str
    advisory: str = Field(description="The advisory id pip-audit gave (PYSEC-..., GHSA-...).")
    aliases: list[str]
    severity: str = Field(description="critical, high, medium, low, or unknown (deadline as critical: fail closed).")
    fix_versions: list[str]
    found_at: Timestamp
    due_at: Timestamp = Field(description="The fix deadline, from the policy profile.")
    last_seen_at: Timestamp
    closed_at: Timestamp | None
    overdue: bool


class VulnsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: bool = Field(False, description="Closed findings too.")


class ScanBody(BaseModel):
    """pip-audit's JSON output, as it writes it (`fixes` and other keys are ignored)."""

    model_config = ConfigDict(extra="ignore")
    dependencies: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_DEPENDENCIES)
    severities: dict[str, str] = Field(
        default_factory=dict, max_length=10_000, description="Optional: advisory id or alias -> severity."
    )


class ScanOut(Out):
    dependencies: int
    skipped: int
    found: int
    opened: int
    reopened: int
    closed: int
    open: int


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Format = Field("json", description="json, html (one self-contained page) or md.")


def _out(v: Vulnerability, overdue: bool) -> VulnerabilityOut:
    return VulnerabilityOut(
        id=v.id,
        package=v.package,
        version=v.version,
        advisory=v.advisory,
        aliases=v.aliases,
        severity=v.severity,
        fix_versions=v.fix_versions,
        found_at=v.found_at,
        due_at=v.due_at,
        last_seen_at=v.last_seen_at,
        closed_at=v.closed_at,
        overdue=overdue,
    )


@router.get("/vulnerabilities", tags=["compliance"])
def list_vulnerabilities(q: Annotated[VulnsQuery, Query()], work: AuthenticatedRead) -> list[VulnerabilityOut]:
    """Findings, the nearest deadline first (open ones unless `all`). Needs `governance:read`."""
    with work as (d, conn, who):
        found = d.governance.vulns.list_vulns(conn, principal=who, open_only=not q.all)
        now = d.now()
        return [_out(v, v.overdue(now)) for v in found]


@router.post("/vulnerabilities/scans", tags=["compliance"], status_code=201)
def record_scan(body: ScanBody, work: Authenticated) -> ScanOut:
    """Record a scan: the body is pip-audit's JSON. New findings open with their deadline, findings
    of audited packages no longer reported close. Needs `governance:manage`."""
    with work as (d, conn, who):
        result = d.governance.vulns.scan(conn, body.model_dump(), principal=who)
        return ScanOut(**result.payload())


@router.get(
    "/report",
    tags=["compliance"],
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/html": {"schema": {"type": "string"}},
                "text/markdown": {"schema": {"type": "string"}},
            }
        }
    },
)
def report(q: Annotated[ReportQuery, Query()], work: Authenticated) -> Response:
    """The DPP evidence report: every requirement, PASS, FAIL or ATTENTION, with its evidence and
    how to fix a FAIL (the deployment's own parts are registered in the asset inventory first).
    Needs `governance:read`."""
    with work as (d, conn, who):
        register_own_assets(d, conn, principal=who)
        made = evaluate(d, conn, principal=who)
    return Response(render(made, q.format), media_type=MEDIA[q.format])


@router.post(
    "/report/pack",
    tags=["compliance"],
    response_class=Response,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
)
def report_pack(work: Authenticated) -> Response:
    """The signed evidence pack (zip): the report, the ROPA, the last access review, an audit
    verify result, deletion certificates, and the signed manifest. Needs `governance:read`."""
    with work as (d, conn, who):
        return evidence_pack(d, conn, who)
