"""Administration: users, roles, grants, allow-lists and kill switches."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from ._deps import API, Conn, Vault, Who

router = APIRouter(prefix=API)


@router.put("/killswitches/{name}", status_code=204, tags=["kill switches"])
def engage(name: str, d: Vault, conn: Conn, who: Who, tenant: str | None = None) -> Response:
    d.access.set_switch(conn, name, True, actor=who, tenant_id=tenant)
    return Response(status_code=204)


@router.delete("/killswitches/{name}", status_code=204, tags=["kill switches"])
def release(name: str, d: Vault, conn: Conn, who: Who, tenant: str | None = None) -> Response:
    d.access.set_switch(conn, name, False, actor=who, tenant_id=tenant)
    return Response(status_code=204)
