"""PostgreSQL: the service reads its revision, and purges old events only through
`sagevault_audit_purge`, which runs as the owner and deletes nothing younger than 365 days.

The service role (`sagevault_app`) may SELECT and INSERT events, move the chain head and read
anchors (a001); it has no UPDATE, DELETE or TRUNCATE on `audit_events` and no DDL. A retention
purge needs a DELETE: the function does it for the service, only for a run of events from the
chain's start that are all past the 365 days Amazon asks for, ending at the event whose hash the
anchor names, and stores the anchor in the same transaction.

Revision ID: a003
Revises: a002
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "a003"
down_revision = "a002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("GRANT SELECT ON alembic_version_audit TO sagevault_app")
    # SET search_path FROM CURRENT: the function sees the schema it was created in, never the caller's.
    op.execute(
        """
        CREATE FUNCTION sagevault_audit_purge(p_last bigint, p_anchor bytea, p_purged_at text, p_signature bytea)
        RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
        DECLARE
          cutoff text := to_char((now() AT TIME ZONE 'UTC') - interval '365 days', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
          deleted bigint;
        BEGIN
          IF EXISTS (SELECT 1 FROM audit_events WHERE seq <= p_last AND at >= cutoff) THEN
            RAISE EXCEPTION 'audit purge refused: events up to % are not all older than 365 days', p_last
              USING ERRCODE = '42501';
          END IF;
          IF (SELECT hash FROM audit_events WHERE seq = p_last) IS DISTINCT FROM p_anchor THEN
            RAISE EXCEPTION 'audit purge refused: the anchor is not the hash of event %', p_last
              USING ERRCODE = '42501';
          END IF;
          PERFORM set_config('sagevault.audit_purge', 'on', true);
          DELETE FROM audit_events WHERE seq <= p_last;
          GET DIAGNOSTICS deleted = ROW_COUNT;
          PERFORM set_config('sagevault.audit_purge', 'off', true);
          INSERT INTO audit_anchors (last_seq, hash, purged_at, signature)
            VALUES (p_last, p_anchor, p_purged_at, p_signature);
          RETURN deleted;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION sagevault_audit_purge(bigint, bytea, text, bytea) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION sagevault_audit_purge(bigint, bytea, text, bytea) TO sagevault_app")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS sagevault_audit_purge(bigint, bytea, text, bytea)")
    op.execute("REVOKE SELECT ON alembic_version_audit FROM sagevault_app")
