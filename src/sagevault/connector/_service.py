"""The connector's domain service: sellers' connections, the sync's checkpoints, and the two
halves of a sync step, `fetch` (network only) and `store` (one unit of work: the page into the
vault and the checkpoint advanced together). The edges own the loop and the transactions
(`sagevault.jobs.sync_tenant`)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from sagevault.audit import AuditEvent, AuditSink, EventName, Outcome, Reason, outcome_of
from sagevault.errors import AuthorizationRevoked, Conflict, NotFound, PayloadError, UpstreamError, shown
from sagevault.identity import Principal, Scope, check_tenant_id
from sagevault.vault import AccessGate, Vault

from ._client import BadRequest, Forbidden, SpApiClient, SpApiRefused
from ._schema import sp_connections, sp_sync
from ._sync import API_V0, APIS, Cursor, Page, reached, read_page, request, utc

ORIGIN = "sp-api-sync"  # the records' attribution: fetched from SP-API by this connector
REFRESH_TOKEN = "sp-api-refresh-token"  # noqa: S105 (the name of the tenant secret, not a secret)
CONSENT_URL = "https://sellercentral.amazon.com/apps/authorize/consent"
OAUTH_MINUTES = 30
# A 403 drops the seller's tokens and the call is made again with fresh ones; only a 403 each of
# these times (or LWA's invalid_grant) is taken as a revoked authorisation, which stops the
# tenant's sync and opens a deletion request: an expired token must never do that.
FORBIDDEN_TRIES = 3


@dataclass(frozen=True)
class SellerConnection:
    tenant_id: str
    state: str
    region: str
    api: str
    restricted_data: bool
    since: datetime
    connected_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class SyncStatus:
    """A tenant's marketplace as `sagevault sync status` shows it."""

    tenant_id: str
    marketplace_id: str
    state: str
    checkpoint: datetime  # everything updated before it is stored
    in_window: bool  # a window is being read (a NextToken is held)
    lag_seconds: int  # now - checkpoint
    pages: int
    orders: int
    errors: int
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class SyncPlan:
    """What a sync run of one tenant needs: its connection, its refresh token (in memory for the
    run only) and the cursor of each marketplace."""

    connection: SellerConnection
    refresh_token: str
    cursors: list[Cursor]

    def __repr__(self) -> str:
        return f"SyncPlan(tenant={self.connection.tenant_id}, cursors={len(self.cursors)}, refresh_token=<redacted>)"


def _aware(at: datetime | None) -> datetime | None:
    return None if at is None else utc(at)


class Connector:
    def __init__(
        self,
        *,
        vault: Vault,
        audit: AuditSink,
        gate: AccessGate,
        client: Callable[[], SpApiClient],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._vault = vault
        self._audit = audit
        self._gate = gate
        self._client_factory = client
        self._client: SpApiClient | None = None
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def client(self) -> SpApiClient:
        """The application's client, made at first use (a deployment without SP-API credentials
        works until something needs them)."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def use(self, client: SpApiClient) -> None:
        """Talk through `client` from now on (a test's, with short timeouts and backoff)."""
        self.close()
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _event(
        self,
        name: EventName,
        principal: Principal,
        tenant_id: str | None,
        counts: Mapping[str, int] | None = None,
        *,
        operation: str | None = None,
        outcome: Outcome = Outcome.SUCCESS,
        reason: Reason = Reason.NONE,
    ) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                actor=principal.id,
                tenant_id=tenant_id,
                counts=dict(counts or {}),
                operation=operation,
                outcome=outcome,
                reason=reason,
            )
        )

    def _on_event(self, principal: Principal) -> Callable[[str, str, Mapping[str, int]], None]:
        return lambda name, tenant, counts: self._event(EventName(name), principal, tenant, counts)

    # --- connections ----------------------------------------------------------------------

    def _connection(self, conn: Connection, tenant_id: str) -> SellerConnection | None:
        row = conn.execute(select(sp_connections).where(sp_connections.c.tenant_id == tenant_id)).first()
        if row is None:
            return None
        return SellerConnection(
            row.tenant_id,
            row.state,
            row.region,
            row.api,
            bool(row.restricted_data),
            utc(row.since),
            _aware(row.connected_at),
            _aware(row.revoked_at),
        )

    def connect(
        self,
        conn: Connection,
        tenant_id: str,
        refresh_token: str,
        *,
        principal: Principal,
        api: str = API_V0,
        restricted_data: bool = True,
        since: datetime | None = None,
        marketplaces: Sequence[str] = (),
        verify: bool = True,
    ) -> SellerConnection:
        """Store a seller's authorisation: the refresh token sealed under the tenant's keys,
        the connection active, a checkpoint per marketplace (kept when the seller connects again).
        `verify`: the token is tried against LWA first, so a wrong one is refused with nothing stored."""
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        check_tenant_id(tenant_id)
        if api not in APIS:
            raise PayloadError(f"api is one of {', '.join(APIS)}")
        token = refresh_token.strip()
        if not token or len(token) > 2048 or not token.isprintable():
            raise PayloadError("the refresh token is empty or not one LWA issues; paste it again (stdin)")
        tenant = self._vault.tenant(conn, tenant_id, principal=principal)
        chosen = list(marketplaces) or tenant.marketplaces
        outside = [m for m in chosen if m not in tenant.marketplaces]
        if outside:
            raise PayloadError(
                f"marketplace {shown(outside[0])} is not one of tenant {tenant_id}'s "
                f"({', '.join(tenant.marketplaces)}, region {tenant.region}); a tenant syncs only its own region's "
                "marketplaces"
            )
        now = self._clock()
        start = utc(since) if since else now - timedelta(days=30)
        if start > now:
            raise PayloadError("--since is in the future; give a date in the past (the first window starts there)")
        if verify:
            self.client.forget(tenant_id)
            self.client.access_token(tenant_id, token, self._on_event(principal))
        self._vault.secrets.put(conn, tenant_id, REFRESH_TOKEN, token, principal=principal)
        values = {
            "state": "active",
            "region": tenant.region,
            "api": api,
            "restricted_data": restricted_data,
            "since": start,
            "connected_at": now,
            "revoked_at": None,
            "oauth_state_hash": None,
            "oauth_expires_at": None,
        }
        if self._connection(conn, tenant_id) is None:
            conn.execute(insert(sp_connections).values(tenant_id=tenant_id, **values))
        else:
            conn.execute(update(sp_connections).where(sp_connections.c.tenant_id == tenant_id).values(**values))
        have = set(conn.execute(select(sp_sync.c.marketplace_id).where(sp_sync.c.tenant_id == tenant_id)).scalars())
        for marketplace in chosen:
            if marketplace not in have:
                conn.execute(
                    insert(sp_sync).values(
                        tenant_id=tenant_id,
                        marketplace_id=marketplace,
                        window_after=start,
                        pages=0,
                        orders=0,
                        errors=0,
                    )
                )
        self._event(
            EventName.CONNECTOR_AUTH_CONNECT,
            principal,
            tenant_id,
            {"marketplaces": len(chosen), "restricted_data": int(restricted_data)},
            operation=api,
        )
        found = self._connection(conn, tenant_id)
        assert found is not None
        return found

    def authorization_url(
        self, conn: Connection, tenant_id: str, application_id: str, *, principal: Principal, redirect_uri: str | None
    ) -> str:
        """The website authorisation flow's first step: Seller Central's consent page for the
        application, with a one-time state (only its SHA-256 is kept, for 30 minutes)."""
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        tenant = self._vault.tenant(conn, tenant_id, principal=principal)
        state = secrets.token_urlsafe(24)
        values = {
            "oauth_state_hash": hashlib.sha256(state.encode()).hexdigest(),
            "oauth_expires_at": self._clock() + timedelta(minutes=OAUTH_MINUTES),
        }
        if self._connection(conn, tenant_id) is None:
            conn.execute(
                insert(sp_connections).values(
                    tenant_id=tenant_id,
                    state="pending",
                    region=tenant.region,
                    api=API_V0,
                    restricted_data=True,
                    since=self._clock() - timedelta(days=30),
                    **values,
                )
            )
        else:
            conn.execute(update(sp_connections).where(sp_connections.c.tenant_id == tenant_id).values(**values))
        query = {"application_id": application_id, "state": state, "version": "beta"}
        if redirect_uri:
            query["redirect_uri"] = redirect_uri
        return f"{CONSENT_URL}?{urlencode(query)}"

    def check_state(
        self, conn: Connection, tenant_id: str, state: str, selling_partner_id: str, *, principal: Principal
    ) -> None:
        """The website flow's redirect, checked: the state handed to the consent page for this
        tenant in the last 30 minutes (not used yet), and the seller Amazon names the tenant's."""
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        if not secrets.compare_digest(selling_partner_id.strip().encode(), tenant_id.encode()):
            raise PayloadError(
                f"the redirect names another selling partner than tenant {tenant_id}; finish the flow for the "
                "tenant the seller authorised (its selling_partner_id)"
            )
        found = conn.execute(
            select(sp_connections.c.oauth_state_hash, sp_connections.c.oauth_expires_at).where(
                sp_connections.c.tenant_id == tenant_id
            )
        ).first()
        given = hashlib.sha256(state.encode()).hexdigest()
        if (
            found is None
            or found.oauth_state_hash is None
            or not secrets.compare_digest(found.oauth_state_hash, given)
            or utc(found.oauth_expires_at) < self._clock()
        ):
            raise PayloadError(
                "the state does not match an authorisation started for this tenant in the last 30 minutes; "
                "start again with `sagevault connect url`"
            )

    def exchange_code(self, tenant_id: str, code: str, redirect_uri: str | None) -> str:
        """The refresh token LWA gives for the website flow's code (network only: call it outside
        a unit of work, after `check_state`)."""
        return self.client.exchange_code(tenant_id, code.strip(), redirect_uri)

    def verify(self, tenant_id: str, refresh_token: str, *, principal: Principal) -> None:
        """Try a refresh token against LWA (network only: before the unit of work that stores it,
        so no write lock waits on Amazon). A revoked or mistyped one is AuthorizationRevoked."""
        self.client.forget(tenant_id)
        self.client.access_token(tenant_id, refresh_token.strip(), self._on_event(principal))

    def finish_authorization(
        self,
        conn: Connection,
        tenant_id: str,
        state: str,
        selling_partner_id: str,
        refresh_token: str,
        *,
        principal: Principal,
    ) -> SellerConnection:
        """The website flow's last step, once the code is exchanged: the state checked again in
        this unit of work (so it is used once) and the seller connected."""
        self.check_state(conn, tenant_id, state, selling_partner_id, principal=principal)
        return self.connect(conn, tenant_id, refresh_token, principal=principal, verify=False)

    def disconnect(self, conn: Connection, tenant_id: str, *, principal: Principal) -> bool:
        """Forget the seller's authorisation (the sealed refresh token and the tokens in memory);
        the checkpoints stay, so a later connect resumes. Whether there was one."""
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        had = self._vault.secrets.delete(conn, tenant_id, REFRESH_TOKEN, principal=principal)
        self.stop(conn, tenant_id, "disconnected")
        self._event(EventName.CONNECTOR_AUTH_DISCONNECT, principal, tenant_id, {"refresh_tokens": int(had)})
        return had

    def stop(self, conn: Connection, tenant_id: str, state: str) -> None:
        """The connection's sync stops (`disconnected`, or `shredded` once the tenant is) and its
        tokens in memory go."""
        conn.execute(
            update(sp_connections)
            .where(sp_connections.c.tenant_id == tenant_id)
            .values(state=state, revoked_at=self._clock())
        )
        if self._client is not None:
            self._client.forget(tenant_id)

    def active_tenants(self, conn: Connection) -> list[str]:
        """Tenants whose sync should run (the scheduler's list)."""
        query = select(sp_connections.c.tenant_id).where(sp_connections.c.state == "active")
        return list(conn.execute(query.order_by(sp_connections.c.tenant_id)).scalars())

    # --- sync -------------------------------------------------------------------------------

    def plan(self, conn: Connection, tenant_id: str, *, principal: Principal) -> SyncPlan:
        """Everything a run needs, or a clear refusal: no connection, a revoked one, the
        `sp-api-sync` kill switch engaged or no right to ingest (recorded as the ingest's would be)."""
        self._vault.authorize_ingest(conn, tenant_id, principal=principal)
        connection = self._connection(conn, tenant_id)
        if connection is None or connection.state == "pending":
            raise NotFound(f"tenant {tenant_id} has no SP-API connection; run `sagevault connect {tenant_id}`")
        if connection.state != "active":
            raise AuthorizationRevoked(
                f"tenant {tenant_id}'s SP-API connection is {connection.state}; the seller must authorise "
                f"the application again (`sagevault connect {tenant_id}`)"
            )
        token = self._vault.secrets.get(conn, tenant_id, REFRESH_TOKEN, principal=principal)
        if token is None:
            raise NotFound(f"tenant {tenant_id} has no stored refresh token; run `sagevault connect {tenant_id}`")
        rows = conn.execute(
            select(sp_sync).where(sp_sync.c.tenant_id == tenant_id).order_by(sp_sync.c.marketplace_id)
        ).all()
        cursors = [
            Cursor(r.tenant_id, r.marketplace_id, utc(r.window_after), _aware(r.window_before), r.next_token, r.pages)
            for r in rows
        ]
        return SyncPlan(connection, token, cursors)

    def fetch(self, plan: SyncPlan, cursor: Cursor, *, principal: Principal) -> Page:
        """The page `cursor` points at, fetched (no database work). A 403 is tried again with
        fresh tokens: LWA refusing the refresh token then (`invalid_grant`) is AuthorizationRevoked;
        a 403 every time while LWA still issues tokens is SpApiRefused (the application's roles,
        not the seller's consent: nothing is revoked)."""
        connection = plan.connection
        after, before = cursor.window(self._clock())
        if not cursor.next_token and before <= after:
            return Page(
                cursor, before, {}, read_page(connection.api, _EMPTY[connection.api])[0], None, 0, empty_window=True
            )
        operation, path, query = request(connection.api, cursor, after, before)
        client, on_event = self.client, self._on_event(principal)
        for attempt in range(FORBIDDEN_TRIES):
            try:
                access = client.access_token(connection.tenant_id, plan.refresh_token, on_event)
                token = access
                if connection.restricted_data:
                    token = client.restricted_token(connection.tenant_id, connection.region, path, access, on_event)
                answer = client.get(connection.tenant_id, connection.region, operation, path, query, token)
            except Forbidden:
                if attempt + 1 == FORBIDDEN_TRIES:  # LWA still honours the refresh token: not a revocation
                    raise SpApiRefused(
                        f"SP-API refused tenant {connection.tenant_id}'s calls {FORBIDDEN_TRIES} times with fresh "
                        "tokens while LWA still accepts its refresh token: check the application's roles (the "
                        "PII role for restricted data) and the seller's region; the sync goes on once fixed"
                    ) from None
                client.wait(attempt + 1)  # a token Amazon has just issued may take a moment to be honoured
                continue
            except BadRequest as exc:
                if cursor.next_token and exc.code == "InvalidInput":  # an expired NextToken: read the window again
                    return Page(cursor, before, {}, read_page(connection.api, _EMPTY[connection.api])[0], None, 0, True)
                raise
            op, orders, next_token = read_page(connection.api, answer.body, cursor.marketplace_id)
            found = reached(connection.api, answer.body)
            return Page(cursor, before, answer.body, op, next_token, orders, reached=found, fetched_at=self._clock())
        raise AssertionError("unreachable")  # pragma: no cover

    def store(self, conn: Connection, page: Page, *, principal: Principal) -> Cursor:
        """Store the page's orders and advance the checkpoint, in the caller's unit of work: both
        or neither. Refused (Conflict) when the checkpoint moved since the page was fetched (another
        node stored it), so a page is never stored twice."""
        cursor = page.cursor
        tenant_id = cursor.tenant_id
        result = None
        if page.orders:
            try:
                docs = self._vault.prepare([page.body], page.operation)
            except PayloadError:  # an order without its id, say: Amazon's answer, not the caller's request
                raise UpstreamError(
                    f"{page.operation.value}: an order on the page is malformed; nothing of the page was stored"
                ) from None
            result = self._vault.ingest_documents(
                conn, tenant_id, docs, principal=principal, retrieved_at=page.fetched_at, origin=ORIGIN
            )
        else:
            self._vault.authorize_ingest(conn, tenant_id, principal=principal)
        after, before, token = page.advanced()
        now = self._clock()
        values: dict[str, object] = {
            "window_after": after,
            "window_before": before,
            "next_token": token,
            "pages": sp_sync.c.pages + 1,
            "orders": sp_sync.c.orders + page.orders,
            "last_attempt_at": now,
            "last_error": None,
        }
        if before is None:  # a window finished: everything updated before `after` is stored
            values["last_success_at"] = now
        moved = conn.execute(
            update(sp_sync)
            .where(
                sp_sync.c.tenant_id == tenant_id,
                sp_sync.c.marketplace_id == cursor.marketplace_id,
                sp_sync.c.pages == cursor.pages,
            )
            .values(**values)
        ).rowcount
        if moved != 1:
            raise Conflict(
                f"tenant {tenant_id}'s checkpoint for {cursor.marketplace_id} moved while this page was fetched "
                "(another node is syncing it); nothing of the page was stored twice"
            )
        counts = {"orders": page.orders, "pages": 1}
        if result is not None:
            counts["records"] = result.records
            counts["replaced"] = result.replaced
        if not page.empty_window:
            self._event(
                EventName.CONNECTOR_SYNC_PAGE, principal, tenant_id, counts, operation=cursor.marketplace_id.lower()
            )
        if result is not None and result.unknown_fields:
            self._event(
                EventName.CONNECTOR_FIELD_UNKNOWN,
                principal,
                tenant_id,
                {"fields": result.unknown_fields, "paths": len(result.unknown_paths)},
                operation=page.operation.value.lower(),
            )
        return page.next_cursor()

    def started(self, tenant_id: str, *, principal: Principal, marketplaces: int) -> None:
        self._event(EventName.CONNECTOR_SYNC_START, principal, tenant_id, {"marketplaces": marketplaces})

    def finished(self, tenant_id: str, *, principal: Principal, pages: int, orders: int) -> None:
        self._event(EventName.CONNECTOR_SYNC_FINISH, principal, tenant_id, {"pages": pages, "orders": orders})

    def failed(
        self, conn: Connection, tenant_id: str, marketplace_id: str | None, error: Exception, *, principal: Principal
    ) -> None:
        """Record a run's failure on the checkpoint (which does not move) and as an event."""
        code = type(error).__name__
        query = update(sp_sync).where(sp_sync.c.tenant_id == tenant_id)
        if marketplace_id is not None:
            query = query.where(sp_sync.c.marketplace_id == marketplace_id)
        conn.execute(query.values(errors=sp_sync.c.errors + 1, last_attempt_at=self._clock(), last_error=code[:80]))
        outcome, reason = outcome_of(error)
        self._event(
            EventName.CONNECTOR_SYNC_FAIL, principal, tenant_id, operation=code.lower(), outcome=outcome, reason=reason
        )

    def revoked(self, conn: Connection, tenant_id: str, *, principal: Principal) -> bool:
        """Amazon refused the seller's authorisation: the connection stops (until the seller
        connects again) and the tokens in memory go. Whether it was active until now (the caller
        then opens the deletion request)."""
        moved = conn.execute(
            update(sp_connections)
            .where(sp_connections.c.tenant_id == tenant_id, sp_connections.c.state == "active")
            .values(state="revoked", revoked_at=self._clock())
        ).rowcount
        if self._client is not None:
            self._client.forget(tenant_id)
        if moved:
            self._event(EventName.CONNECTOR_AUTH_REVOKE, principal, tenant_id, reason=Reason.REVOKED)
        return bool(moved)

    def status(self, conn: Connection, *, principal: Principal, tenant_id: str | None = None) -> list[SyncStatus]:
        """Every connected tenant's marketplaces (or one tenant's): state, checkpoint, lag, counts."""
        self._gate.check(conn, principal, Scope.TENANTS_ADMIN, tenant_id)
        query = (
            select(sp_sync, sp_connections.c.state)
            .join(sp_connections, sp_connections.c.tenant_id == sp_sync.c.tenant_id)
            .order_by(sp_sync.c.tenant_id, sp_sync.c.marketplace_id)
        )
        if tenant_id is not None:
            check_tenant_id(tenant_id)
            query = query.where(sp_sync.c.tenant_id == tenant_id)
        now = self._clock()
        return [
            SyncStatus(
                r.tenant_id,
                r.marketplace_id,
                r.state,
                utc(r.window_after),
                r.next_token is not None,
                max(0, int((now - utc(r.window_after)).total_seconds())),
                r.pages,
                r.orders,
                r.errors,
                _aware(r.last_success_at),
                _aware(r.last_attempt_at),
                r.last_error,
            )
            for r in conn.execute(query)
        ]


_EMPTY: dict[str, dict[str, Any]] = {API_V0: {"payload": {"Orders": []}}, "orders-2026": {"orders": []}}
