"""Governance: access-review campaigns (DPP 6: the people and services with access are reviewed at
least every 90 days, and access no longer needed is removed).

    start -> decide (each item, by a reviewer who is not its subject, its owner or its service) ->
    close (the default for the undecided once the due date passed; the job closes a campaign with a
    default keep or revoke at its due date) -> the signed report

A campaign lists every grant (pending or active) and every unrevoked API key of every person and
service account, with the account's last log-in, the subject's last PII reveal and a
recommendation: revoke when the account is disabled, the grant or key expired, or it was unused for
`unused_days`; keep otherwise. A revoke (or a change: the current grant goes, the person asks for
the changed one as a new grant) is applied at once through `access`, which records it
(access:grant:revoke, access:apikey:revoke) as `job:access-review-campaigns`; the decision itself is
recorded as governance:review:decide naming the reviewer. The last active holder of `users:admin`
is never revoked, by a reviewer or by a default (its holders' rows are locked while it is counted).
Nobody decides access that is theirs (their own, a service account's they own, or for a service its
owner's and its sibling services'), nor closes over it undecided unless the default is revoke; a
default's decisions are recorded as decided by `default`. Each action is a security event with ids
and counts only; the justification stays in the campaign's tables and its report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from sagevault.access import ALL_TENANTS, ROLES, AccessService
from sagevault.access._schema import api_keys, grants, principals
from sagevault.audit import (
    AuditEvent,
    AuditLog,
    AuditSink,
    EventName,
    Gate,
    Outcome,
    Reason,
    Signer,
    check_scope,
    outcome_of,
)
from sagevault.errors import AccessDenied, ConfigError, Conflict, NotFound, PayloadError, SageVaultError
from sagevault.identity import Principal, Scope

from ._reviews_report import (
    DECISIONS,
    DEFAULTS,
    Campaign,
    Overdue,
    ReviewItem,
    build_report,
    check_justification,
    count_items,
    document_sha256,
    item_row,
    recommend,
    sign_report,
    utc,
    verify_report,
)
from ._reviews_report import last_reveals as reveal_times
from ._reviews_report import noted_since as overdue_noted_since
from ._schema import review_campaigns, review_items

APPLIER = "access-review-campaigns"  # the job's name; revocations are recorded by access as job:<name>
ADMIN_ROLES = tuple(sorted(name for name, role in ROLES.items() if Scope.USERS_ADMIN in role.scopes))
MAX_DUE_DAYS = 90
BY_DEFAULT = "default"  # decided_by of an item the campaign's default decided (never the closer)
REMINDER_DAYS = (7, 1)  # before the due date, while items are undecided


class Campaigns:
    def __init__(
        self,
        *,
        audit: AuditSink,
        gate: Gate,
        access: AccessService,
        every_days: int = 90,
        unused_days: int = 90,
        signer: Callable[[], tuple[Signer, Ed25519PublicKey]] | None = None,
        log: AuditLog | None = None,
        last_reveals: Callable[[], dict[str, datetime]] | None = None,
        noted_since: Callable[[datetime], bool] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._audit = audit
        self._gate = gate
        self._access = access
        self.every_days = every_days
        self.unused_days = unused_days
        self._signer = signer
        # What is read from the security log (`log`, unless given): each actor's last PII reveal, and
        # whether an overdue notice was recorded since a time. Without either: none, never.
        self._last_reveals = last_reveals or (reveal_times(log) if log is not None else dict)
        self._noted_since = noted_since or (overdue_noted_since(log) if log is not None else lambda _since: False)
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self._clock()

    # --- events and lookups ----------------------------------------------------------------------

    def _check(self, conn: Connection, principal: Principal, scope: Scope, operation: str) -> None:
        check_scope(self._gate, self._audit, conn, principal, scope, operation)

    def _event(
        self,
        name: EventName,
        principal: Principal,
        operation: str,
        counts: dict[str, int],
        *,
        outcome: Outcome = Outcome.SUCCESS,
        reason: Reason = Reason.NONE,
        fingerprint: str | None = None,
    ) -> None:
        self._audit.record(
            AuditEvent(
                name=name,
                channel=principal.channel,
                outcome=outcome,
                reason=reason,
                actor=principal.id,
                operation=operation,
                counts=counts,
                fingerprint=fingerprint,
            )
        )

    def _refuse(
        self, name: EventName, principal: Principal, operation: str, counts: dict[str, int], error: SageVaultError
    ) -> SageVaultError:
        outcome, reason = outcome_of(error)
        self._event(name, principal, operation, counts, outcome=outcome, reason=reason)
        return error

    @staticmethod
    def _row(conn: Connection, campaign_id: int) -> Any:
        row = conn.execute(select(review_campaigns).where(review_campaigns.c.id == campaign_id)).first()
        if row is None:
            raise NotFound(f"no access-review campaign {int(campaign_id)}; see `sagevault reviews list`")
        return row

    @staticmethod
    def _items(conn: Connection, campaign_id: int) -> list[ReviewItem]:
        rows = conn.execute(
            select(review_items).where(review_items.c.campaign_id == campaign_id).order_by(review_items.c.id)
        )
        return [ReviewItem.of(r) for r in rows]

    def _campaign(self, conn: Connection, row: Any, *, items: bool = False) -> Campaign:
        found = self._items(conn, int(row.id))
        return Campaign.of(row, count_items(found), found if items else None)

    # --- start -----------------------------------------------------------------------------------

    def start(
        self,
        conn: Connection,
        *,
        principal: Principal,
        due_days: int | None = None,
        default_decision: str = "keep",
        unused_days: int | None = None,
    ) -> Campaign:
        """Open a campaign over every grant and API key now; only one is open at a time."""
        self._check(conn, principal, Scope.GOVERNANCE_MANAGE, "reviews start")
        due_days = self.every_days if due_days is None else due_days
        unused_days = self.unused_days if unused_days is None else unused_days
        error: SageVaultError | None = None
        if isinstance(due_days, bool) or not isinstance(due_days, int) or not 1 <= due_days <= MAX_DUE_DAYS:
            error = PayloadError(f"the due date is 1 to {MAX_DUE_DAYS} days away (DPP: reviews every 90 days at most)")
        elif default_decision not in DEFAULTS:
            error = PayloadError(f"the default decision is one of {', '.join(DEFAULTS)}")
        elif isinstance(unused_days, bool) or not isinstance(unused_days, int) or not 1 <= unused_days <= 3650:
            error = PayloadError("unused days (when revoking is recommended) is 1 to 3650")
        else:
            open_id = conn.execute(
                select(review_campaigns.c.id).where(review_campaigns.c.state == "open")
            ).scalar_one_or_none()
            if open_id is not None:
                error = Conflict(
                    f"campaign {open_id} is open; close it (`sagevault reviews close {open_id}`) before starting one"
                )
        if error is not None:
            raise self._refuse(EventName.GOVERNANCE_REVIEW_START, principal, "reviews start", {}, error)
        now = self.now()
        campaign_id = conn.execute(
            insert(review_campaigns).values(
                state="open",
                started_at=now,
                started_by=principal.id,
                due_at=self._due(conn, now, due_days),
                default_decision=default_decision,
                unused_days=unused_days,
                reminder_stage=0,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        rows = self._collect(conn, now, now - timedelta(days=unused_days))
        if rows:
            conn.execute(insert(review_items), [{**r, "campaign_id": campaign_id} for r in rows])
        campaign = self._campaign(conn, self._row(conn, campaign_id), items=True)
        counts = {"campaign": int(campaign_id), "items": len(rows), "recommended_revoke": 0}
        counts["recommended_revoke"] = campaign.counts["recommended_revoke"]
        counts["subjects"] = len({r["subject"] for r in rows})
        self._event(EventName.GOVERNANCE_REVIEW_START, principal, f"default {default_decision}", counts)
        return campaign

    def _due(self, conn: Connection, now: datetime, due_days: int) -> datetime:
        """The due date: `due_days` away, but no later than `every_days` after this start, nor than
        `every_days` after the previous campaign's start when that is still ahead (reviews keep
        their cadence: `overdue` says none_started from then on)."""
        due = now + timedelta(days=min(due_days, self.every_days))
        previous = utc(
            conn.execute(
                select(review_campaigns.c.started_at).order_by(review_campaigns.c.id.desc()).limit(1)
            ).scalar_one_or_none()
        )
        if previous is not None and now < previous + timedelta(days=self.every_days) < due:
            due = previous + timedelta(days=self.every_days)
        return due

    def _collect(self, conn: Connection, now: datetime, stale: datetime) -> list[dict[str, Any]]:
        """Every live grant and API key with its subject's facts and a recommendation (read-only
        over the access tables)."""
        reveals = self._last_reveals()
        people = {r.id: r for r in conn.execute(select(principals))}
        rows: list[dict[str, Any]] = []
        for g in conn.execute(
            select(grants).where(grants.c.status != "revoked").order_by(grants.c.principal_id, grants.c.created_at)
        ):
            who = people[g.principal_id]
            expired = (utc(g.not_after) or now + timedelta(days=1)) <= now
            facts = recommend(
                who.status, expired, utc(who.last_active_at), utc(g.created_at), reveals.get(who.id), stale
            )
            rows.append(
                item_row(who, reveals, "grant", g.id, "expired" if expired else g.status, utc(g.created_at), facts)
                | {"role": g.role, "tenants": list(g.tenants)}
            )
        for k in conn.execute(
            select(api_keys).where(api_keys.c.revoked_at.is_(None)).order_by(api_keys.c.principal_id, api_keys.c.id)
        ):
            who = people[k.principal_id]
            expired = (utc(k.expires_at) or now) <= now
            used = utc(k.last_used_at)
            facts = recommend(who.status, expired, used, utc(k.created_at), reveals.get(who.id), stale)
            rows.append(
                item_row(who, reveals, "api_key", k.id, "expired" if expired else "live", utc(k.created_at), facts)
                | {"scopes": list(k.scopes), "last_used_at": used}
            )
        return rows

    # --- reading ---------------------------------------------------------------------------------

    def list_campaigns(self, conn: Connection, *, principal: Principal) -> list[Campaign]:
        """Every campaign, newest first, with its counts."""
        self._check(conn, principal, Scope.GOVERNANCE_READ, "reviews list")
        rows = conn.execute(select(review_campaigns).order_by(review_campaigns.c.id.desc())).all()
        return [self._campaign(conn, r) for r in rows]

    def get(self, conn: Connection, campaign_id: int, *, principal: Principal) -> Campaign:
        """One campaign with its items."""
        self._check(conn, principal, Scope.GOVERNANCE_READ, "reviews show")
        return self._campaign(conn, self._row(conn, campaign_id), items=True)

    def export(self, conn: Connection, campaign_id: int, *, principal: Principal) -> dict[str, Any]:
        """The signed report of a closed campaign (`verify_report` checks it offline)."""
        self._check(conn, principal, Scope.GOVERNANCE_READ, "reviews export")
        row = self._row(conn, campaign_id)
        if row.state != "closed" or row.report is None:
            raise Conflict(
                f"campaign {row.id} is open; its signed report is written when it is closed "
                f"(`sagevault reviews close {row.id}`)"
            )
        return dict(row.report)

    # --- deciding --------------------------------------------------------------------------------

    def decide(
        self, conn: Connection, item_id: int, decision: str, justification: str | None, *, principal: Principal
    ) -> ReviewItem:
        """Keep, revoke or change one item, with a justification; a revoke or change is applied
        at once through access. Nobody decides an item about their own access."""
        self._check(conn, principal, Scope.GOVERNANCE_MANAGE, "reviews decide")
        row = conn.execute(select(review_items).where(review_items.c.id == item_id)).first()
        if row is None:
            raise NotFound(f"no review item {int(item_id)}; `sagevault reviews show CAMPAIGN` lists the items")
        item = ReviewItem.of(row)
        counts = {"campaign": item.campaign_id, "item": item.id}
        campaign = self._row(conn, item.campaign_id)
        error: SageVaultError | None = None
        cleaned = ""
        if campaign.state != "open":
            error = Conflict(f"campaign {campaign.id} is closed; its decisions are final (see its report)")
        elif item.subject in self._own(conn, principal.id):
            error = AccessDenied(
                f"review item {item.id} is about your own access (yours, a service account you own, or your "
                "owner's or a sibling service's); another reviewer must decide it (nobody reviews their own access)"
            )
        elif decision not in DECISIONS:
            error = PayloadError(f"the decision is one of {', '.join(DECISIONS)}")
        elif item.applied:
            error = Conflict(
                f"review item {item.id} was decided {item.decision} and its access is revoked already; a review "
                "does not undo a revocation: if it was wrong, grant the access again (`sagevault grants add`)"
            )
        else:
            try:
                cleaned = check_justification(justification)
            except PayloadError as exc:
                error = exc
        if error is None and decision != "keep" and self._last_admin(conn, item):
            error = Conflict(
                f"review item {item.id} is the grant of the last active administrator (users:admin); it is never "
                "revoked: make a second person admin first, then decide it"
            )
        if error is not None:
            raise self._refuse(EventName.GOVERNANCE_REVIEW_DECIDE, principal, "reviews decide", counts, error)
        note = self._revoke(conn, item, principal) if decision != "keep" else None
        conn.execute(
            update(review_items)
            .where(review_items.c.id == item.id)
            .values(
                decision=decision,
                decided_by=principal.id,
                decided_at=self.now(),
                justification=cleaned,
                by_default=False,
                note=note,
                applied=decision != "keep",
            )
        )
        self._event(EventName.GOVERNANCE_REVIEW_DECIDE, principal, f"decide {decision}", counts)
        return ReviewItem.of(conn.execute(select(review_items).where(review_items.c.id == item.id)).one())

    def _revoke(self, conn: Connection, item: ReviewItem, principal: Principal) -> str | None:
        """Revoke the item's grant or key through access (which records it); a note if it was gone already."""
        actor = replace(Principal.job(APPLIER), channel=principal.channel)
        try:
            if item.item_kind == "grant":
                self._access.grants.revoke(conn, item.item_ref, actor=actor)
            else:
                self._access.api_keys.revoke(conn, item.item_ref, actor=actor, operation=f"review item {item.id}")
        except (Conflict, NotFound):
            return "already_revoked"
        return None

    @staticmethod
    def _own(conn: Connection, who: str) -> set[str]:
        """The principals whose access counts as `who`'s own: `who`, the service accounts it owns,
        and for a service its owner and the owner's other services."""
        owner = conn.execute(select(principals.c.owner_id).where(principals.c.id == who)).scalar_one_or_none()
        people = {who} | ({owner} if owner else set())
        return people | set(conn.execute(select(principals.c.id).where(principals.c.owner_id.in_(people))).scalars())

    def _last_admin(self, conn: Connection, item: ReviewItem) -> bool:
        """Whether revoking the item would leave no person or service holding users:admin (an
        account still enrolling counts: it may be the first admin, about to set up). The admin
        grants and their holders are locked first (PostgreSQL: FOR UPDATE; SQLite serialises
        writers), so two revocations at once cannot both see the other admin still there."""
        if item.item_kind != "grant" or item.role not in ADMIN_ROLES:
            return False
        now = self.now()
        live = conn.execute(
            select(grants.c.id, grants.c.principal_id, grants.c.tenants, grants.c.not_before, grants.c.not_after)
            .join(principals, principals.c.id == grants.c.principal_id)
            .where(grants.c.status == "active", grants.c.role.in_(ADMIN_ROLES), principals.c.status != "disabled")
            .order_by(grants.c.id)
            .with_for_update()
        ).all()
        holders = {
            g.principal_id
            for g in live
            if ALL_TENANTS in (g.tenants or [])
            and (utc(g.not_before) or now) <= now
            and (utc(g.not_after) or now + timedelta(days=1)) > now
        }
        this = [g for g in live if g.id == item.item_ref]
        others = {g.principal_id for g in live if g.id != item.item_ref and g.principal_id in holders}
        return bool(this) and this[0].principal_id in holders and not others

    # --- closing ---------------------------------------------------------------------------------

    def close(
        self, conn: Connection, campaign_id: int, *, principal: Principal, default: str | None = None
    ) -> Campaign:
        """Close a campaign: undecided items take the default once the due date passed (never
        revoking the last admin; decided by `BY_DEFAULT`, not the closer); the report is signed and
        kept. `default` sets the campaign's default first (keep or revoke). Nobody closes over
        undecided items of their own access unless the default is revoke."""
        self._check(conn, principal, Scope.GOVERNANCE_MANAGE, "reviews close")
        row = self._row(conn, campaign_id)
        counts = {"campaign": int(row.id)}
        now = self.now()
        items = self._items(conn, int(row.id))
        undecided = [i for i in items if i.decision is None]
        chosen = row.default_decision if default is None else default
        own = self._own(conn, principal.id)
        error: SageVaultError | None = None
        if row.state != "open":
            error = Conflict(
                f"campaign {row.id} is closed already; `sagevault reviews export {row.id}` gives its report"
            )
        elif chosen not in DEFAULTS:
            error = PayloadError(f"the default decision is one of {', '.join(DEFAULTS)}")
        elif undecided and chosen == "none":
            error = Conflict(
                f"{len(undecided)} items of campaign {row.id} are undecided and it has no default: decide them "
                f"(`sagevault reviews decide ITEM keep|revoke|change --justification ...`) or set a default "
                f"(`sagevault reviews close {row.id} --default keep|revoke`)"
            )
        elif undecided and now < utc(row.due_at):  # type: ignore[operator]
            error = Conflict(
                f"{len(undecided)} items of campaign {row.id} are undecided and its due date "
                f"({utc(row.due_at):%Y-%m-%d %H:%M} UTC) has not passed: decide them; after the due date the "
                f"default ({chosen}) applies to the rest"
            )
        elif chosen != "revoke" and (mine := [i for i in undecided if i.subject in own]):
            error = AccessDenied(
                f"{len(mine)} undecided items of campaign {row.id} are about your own access (or a service account "
                f"you own): another reviewer decides them or closes the campaign; closing it yourself takes the "
                f"default revoke (`sagevault reviews close {row.id} --default revoke`)"
            )
        if error is not None:
            raise self._refuse(EventName.GOVERNANCE_REVIEW_CLOSE, principal, "reviews close", counts, error)
        signer, public = self._signing()
        for item in undecided:
            decision, note, applied = chosen, None, False
            if chosen == "revoke":
                if self._last_admin(conn, item):
                    decision, note = "keep", "last_admin"
                else:
                    note, applied = self._revoke(conn, item, principal), True
            conn.execute(
                update(review_items)
                .where(review_items.c.id == item.id)
                .values(
                    decision=decision,
                    decided_by=BY_DEFAULT,
                    decided_at=now,
                    by_default=True,
                    note=note,
                    applied=applied,
                )
            )
        conn.execute(
            update(review_campaigns)
            .where(review_campaigns.c.id == row.id)
            .values(state="closed", closed_at=now, closed_by=principal.id, default_decision=chosen)
        )
        campaign = self._campaign(conn, self._row(conn, row.id), items=True)
        signed = sign_report(build_report(campaign, now), signer, public)
        digest = document_sha256(signed)
        conn.execute(
            update(review_campaigns).where(review_campaigns.c.id == row.id).values(report=signed, report_sha256=digest)
        )
        tally = {k: campaign.counts[k] for k in ("items", "keep", "revoke", "change", "by_default", "last_admin_kept")}
        self._event(EventName.GOVERNANCE_REVIEW_CLOSE, principal, "reviews close", counts | tally, fingerprint=digest)
        return replace(campaign, report_sha256=digest)

    def _signing(self) -> tuple[Signer, Ed25519PublicKey]:
        if self._signer is None:
            raise ConfigError("no signing key is configured for access-review reports; run `sagevault init`")
        return self._signer()

    # --- due dates: the job and the compliance report -----------------------------------------

    def overdue(self, conn: Connection) -> Overdue | None:
        """Whether access reviews are late now: the open campaign is past its due date, or no
        campaign started within `every_days` of the last one's start (or of the first account
        made). `start` caps a due date at both, so a campaign open in time is late no later."""
        now = self.now()
        last = conn.execute(select(review_campaigns).order_by(review_campaigns.c.id.desc()).limit(1)).first()
        if last is not None and last.state == "open":
            due = utc(last.due_at)
            assert due is not None
            return Overdue("past_due", int(last.id), due) if now >= due else None
        if last is not None:
            anchor = utc(last.started_at)
        else:
            anchor = utc(conn.execute(select(func.min(principals.c.created_at))).scalar_one_or_none())
        if anchor is None:
            return None  # no account yet: nothing to review
        since = anchor + timedelta(days=self.every_days)
        return Overdue("none_started", int(last.id) if last is not None else None, since) if now >= since else None

    def last_closed(self, conn: Connection) -> dict[str, Any] | None:
        """The last closed campaign: id, dates, counts, its report's SHA-256; None if none was closed."""
        row = conn.execute(
            select(review_campaigns)
            .where(review_campaigns.c.state == "closed")
            .order_by(review_campaigns.c.closed_at.desc(), review_campaigns.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        campaign = self._campaign(conn, row)
        return {
            "id": campaign.id,
            "started_at": campaign.started_at.isoformat(),
            "due_at": campaign.due_at.isoformat(),
            "closed_at": campaign.closed_at.isoformat() if campaign.closed_at else None,
            "counts": dict(campaign.counts),
            "report_sha256": campaign.report_sha256,
        }

    def close_due(self, conn: Connection) -> list[int]:
        """The job: close each open campaign past its due date whose default is keep or revoke, as
        `job:access-review-campaigns` (the default applied, never to the last admin; the report
        signed). One with the default none stays open and overdue (`note_overdue` alarms)."""
        now, job = self.now(), Principal.job(APPLIER)
        rows = conn.execute(
            select(review_campaigns.c.id, review_campaigns.c.due_at).where(
                review_campaigns.c.state == "open", review_campaigns.c.default_decision != "none"
            )
        ).all()
        due = [int(r.id) for r in rows if now >= utc(r.due_at)]  # type: ignore[operator]
        for campaign_id in due:
            self.close(conn, campaign_id, principal=job)
        return due

    def note_overdue(self, conn: Connection) -> Overdue | None:
        """governance:review:overdue, once per occasion (an open campaign past due; no campaign
        in time after the last one, or after a late one was closed). The rule raises the alarm."""
        late = self.overdue(conn)
        if late is None:
            return None
        now = self.now()
        if late.kind == "past_due":
            done = conn.execute(
                update(review_campaigns)
                .where(review_campaigns.c.id == late.campaign_id, review_campaigns.c.overdue_noted_at.is_(None))
                .values(overdue_noted_at=now)
            ).rowcount
            if not done:
                return None
            operation = f"campaign {late.campaign_id} past due"
        else:
            closed = None
            if late.campaign_id is not None:
                closed = utc(self._row(conn, late.campaign_id).closed_at)
            if self._noted_since(max(late.since, closed or late.since)):
                return None
            operation = "no campaign started"
        job = Principal.job(APPLIER)
        counts = {"campaign": late.campaign_id or 0, "days_late": max(0, (now - late.since).days)}
        self._event(EventName.GOVERNANCE_REVIEW_OVERDUE, job, operation, counts)
        return late

    def remind(self, conn: Connection) -> list[tuple[int, int]]:
        """Move the open campaign's reminder stage (a week, then a day, before the due date, while
        items are undecided); (campaign, stage) for each reminder due now, each recorded as
        governance:review:remind (rule access-review-reminder, low). The stage shows in
        `reviews list` and the job's result."""
        now = self.now()
        due: list[tuple[int, int]] = []
        for row in conn.execute(select(review_campaigns).where(review_campaigns.c.state == "open")).all():
            undecided = conn.execute(
                select(func.count()).where(review_items.c.campaign_id == row.id, review_items.c.decision.is_(None))
            ).scalar_one()
            left = utc(row.due_at) - now  # type: ignore[operator]
            stage = sum(1 for days in REMINDER_DAYS if left <= timedelta(days=days))
            if not undecided or stage <= int(row.reminder_stage or 0):
                continue
            conn.execute(update(review_campaigns).where(review_campaigns.c.id == row.id).values(reminder_stage=stage))
            due.append((int(row.id), stage))
            self._event(
                EventName.GOVERNANCE_REVIEW_REMIND,
                Principal.job(APPLIER),
                f"campaign {int(row.id)}",
                {"undecided": int(undecided), "days_left": max(0, left.days)},
            )
        return due


__all__ = ["ADMIN_ROLES", "APPLIER", "BY_DEFAULT", "Campaigns", "Overdue", "check_justification", "verify_report"]
