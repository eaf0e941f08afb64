"""The security event log on SQLite and PostgreSQL: typed events, the chain, digests, tampering,
concurrency, fail-closed reads, retention and export."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text

from conftest import OPERATOR, TENANT, audit_table_away
from sagevault.audit import (
    Asker,
    AuditEvent,
    AuditLog,
    DigestFile,
    EventName,
    Signer,
    chain_hash,
    create_signing_key,
    load_public_key,
    migrate_audit,
    public_path,
    to_syslog,
    verify,
)
from sagevault.db import create_engine_for, reading
from sagevault.deployment import Deployment
from sagevault.errors import AuditEventError, AuditUnavailable, IntegrityError, PurposeNotAllowed
from sagevault.identity import Channel, Principal
from sagevault.logs import configure_logging, release_logging
from sagevault.testing import generate_orders, get_orders_response


@pytest.fixture
def audit_engine(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    if backend == "sqlite":
        engine = create_engine_for(f"sqlite:///{tmp_path / 'audit.db'}")
        migrate_audit(engine)
        yield engine
        engine.dispose()
        return
    engine = request.getfixturevalue("pg_engine")
    yield engine
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_events, audit_anchors"))
        conn.execute(text("UPDATE audit_head SET seq = 0, hash = :z"), {"z": b"\0" * 32})


@pytest.fixture
def log(audit_engine: Engine, tmp_path: Path) -> AuditLog:
    key = tmp_path / "keys" / "audit-signing.key"
    create_signing_key(key)
    return AuditLog(
        audit_engine,
        signer=Signer(key),
        digests=DigestFile(tmp_path / "digests.jsonl"),
        public_key=public_path(key),
        digest_every=10**6,
    )


def _event(i: int = 0, **kw: object) -> AuditEvent:
    fields: dict[str, object] = {
        "name": EventName.VAULT_RECORD_READ,
        "channel": Channel.API,
        "actor": f"svc:reader-{i % 3}",
        "tenant_id": TENANT,
        "record_ids": [i],
        "counts": {"records": 1},
    }
    fields.update(kw)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def _verify(log: AuditLog, tmp_path: Path, **kw: int) -> object:
    key = load_public_key(public_path(tmp_path / "keys" / "audit-signing.key"))
    return verify(log.engine, key, DigestFile(tmp_path / "digests.jsonl").read(), **kw)


def test_vocabulary_is_alphabetical_and_described() -> None:
    names = [e.value for e in EventName]
    assert names == sorted(names)
    assert all(len(e.value.split(":")) == 3 and e.description for e in EventName)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "vault:record:steal"}, "is not one of"),
        ({"actor": "maria.silva@example.com"}, "looks like an e-mail address or phone number"),
        ({"actor": "svc:206-555-0100"}, "looks like an e-mail address or phone number"),
        ({"actor": "Maria Silva"}, "must be an id"),
        ({"operation": "reveal for 206 555 0100"}, "looks like an e-mail address or phone number"),
        ({"record_ids": ["17"]}, "integer record ids"),
        ({"counts": {"fields": "3"}}, "map short lower-case names to integers"),
        ({"reason": "because the buyer asked"}, "is not one of"),
    ],
)
def test_bad_events_are_refused_and_never_written(log: AuditLog, fields: dict[str, object], message: str) -> None:
    with pytest.raises(AuditEventError, match=message):
        log.record(_event(**fields))
    assert log.head()[0] == 0


def test_values_checked_once_stay_refused_or_accepted_only_where_they_were_checked() -> None:
    for _ in range(3):  # a refusal is never remembered as valid
        with pytest.raises(AuditEventError, match="looks like"):
            _event(actor="svc:206-555-0100")
    for _ in range(3):
        assert _event(actor="usr_abcdefghijkl", operation="reveal").operation == "reveal"
    with pytest.raises(AuditEventError, match="must be an id"):  # accepted as an operation, not as a digest
        _event(fingerprint="reveal")
    with pytest.raises(AuditEventError, match="looks like"):  # accepted as an operation's pattern, not as PII
        _event(tenant_id="maria.silva@example.com")


def test_a_clean_log_verifies(log: AuditLog, tmp_path: Path) -> None:
    for i in range(25):
        log.record(_event(i))
    log.write_digest()
    report = _verify(log, tmp_path)
    assert report.ok and report.events == 25 and report.digests == 1  # type: ignore[attr-defined]


def _tamper(engine: Engine, how: str) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # an operator with superuser rights bypasses the trigger
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        if how == "change":
            conn.execute(text("UPDATE audit_events SET actor = 'svc:mallory' WHERE seq = 5"))
        elif how == "delete":
            conn.execute(text("DELETE FROM audit_events WHERE seq = 5"))
        elif how == "truncate":
            conn.execute(text("DELETE FROM audit_events WHERE seq > 10"))
        elif how in ("insert", "rewrite"):
            # Done as someone with write access to the database alone would: seals (column 16)
            # are kept as they were, since they cannot be made without the signing key.
            cols = (
                "seq, at, name, channel, outcome, reason, actor, tenant_id, record_ids, counts, client_ip_hash, "
                "request_id, operation, fingerprint, prev_hash, hash, seal"
            )
            rows = [list(r) for r in conn.execute(text(f"SELECT {cols} FROM audit_events ORDER BY seq"))]
            conn.execute(text("DELETE FROM audit_events"))
            if how == "insert":  # a forged event slipped in as seq 5, later events renumbered
                forged = list(rows[4])
                forged[6] = "svc:mallory"
                rows.insert(4, forged)
                rows[4][14] = rows[3][15]
                for i, row in enumerate(rows):
                    row[0] = i + 1
                rows[4][15] = chain_hash(bytes(rows[4][14]), rows[4][:14])
            else:  # event 5 altered and the whole chain recomputed, head included
                rows[4][6] = "svc:mallory"
                prev = b"\0" * 32
                for i, row in enumerate(rows):
                    row[0] = i + 1
                    row[14], row[15] = prev, chain_hash(prev, row[:14])
                    prev = row[15]
                conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": len(rows), "h": prev})
            marks = ", ".join(f":p{i}" for i in range(17))
            for row in rows:
                conn.execute(
                    text(f"INSERT INTO audit_events ({cols}) VALUES ({marks})"), {f"p{i}": v for i, v in enumerate(row)}
                )


@pytest.mark.parametrize("workers", [1, 3], ids=["one-process", "three-processes"])
@pytest.mark.parametrize(
    ("how", "first_bad", "words"),
    [
        ("change", 5, "was changed"),
        ("delete", 5, "is missing (deleted)"),
        ("insert", 6, "inserted or replaced"),
        ("truncate", 11, "truncated"),
        ("rewrite", 5, "rewritten"),
    ],
)
def test_verify_catches_each_kind_of_tampering(
    log: AuditLog, tmp_path: Path, how: str, first_bad: int, words: str, workers: int
) -> None:
    for i in range(20):
        log.record(_event(i))
        if i == 3:
            log.write_digest()  # signed at seq 4, before the tampered events
    log.write_digest()  # and at seq 20
    if workers > 1 and "mutmut" not in sys.modules:  # mutation testing runs threads: one process then
        assert threading.active_count() == 1  # so that workers=3 really walks in three processes
    assert _verify(log, tmp_path, workers=workers, parallel_from=1).ok  # type: ignore[attr-defined]
    _tamper(log.engine, how)
    report = _verify(log, tmp_path, workers=workers, parallel_from=1)
    assert not report.ok  # type: ignore[attr-defined]
    assert report.first_bad_seq == first_bad, report.problems  # type: ignore[attr-defined]
    assert any(words in p for p in report.problems), report.problems  # type: ignore[attr-defined]


def _forge_after_head(engine: Engine, seal: bytes | None) -> None:
    """What someone with write access to the database alone can do: append a correctly chained
    event (and move the head), with no seal or with a seal copied from a real event."""
    cols = (
        "seq, at, name, channel, outcome, reason, actor, tenant_id, record_ids, counts, client_ip_hash, "
        "request_id, operation, fingerprint, prev_hash, hash, seal"
    )
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        last = list(conn.execute(text(f"SELECT {cols} FROM audit_events ORDER BY seq DESC LIMIT 1")).one())
        forged = [last[0] + 1, *last[1:6], "svc:mallory", *last[7:14]]
        digest = chain_hash(bytes(last[15]), forged)
        conn.execute(
            text(f"INSERT INTO audit_events ({cols}) VALUES ({', '.join(f':p{i}' for i in range(17))})"),
            {f"p{i}": v for i, v in enumerate([*forged, bytes(last[15]), digest, seal])},
        )
        conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": forged[0], "h": digest})


@pytest.mark.parametrize("copied_seal", [False, True], ids=["unsealed", "seal-copied"])
def test_an_event_forged_without_the_signing_key_fails_verify_even_after_the_last_digest(
    log: AuditLog, tmp_path: Path, copied_seal: bool
) -> None:
    for i in range(12):
        log.record(_event(i))
        if i == 5:
            log.write_digest()  # the forged event lands after the last digest: no digest catches it
    before = _verify(log, tmp_path)
    assert before.ok and before.sealed_through == 12 and before.undigested == 6  # type: ignore[attr-defined]
    with log.engine.connect() as conn:
        real_seal = conn.execute(text("SELECT seal FROM audit_events WHERE seq = 12")).scalar_one()
    _forge_after_head(log.engine, bytes(real_seal) if copied_seal else None)
    report = _verify(log, tmp_path)
    assert not report.ok and report.first_bad_seq == 13, report.problems  # type: ignore[attr-defined]
    words = "is not the audit signing key's" if copied_seal else "carry no seal"
    assert any(words in p for p in report.problems), report.problems  # type: ignore[attr-defined]


def test_every_committed_group_is_sealed_in_its_own_transaction(log: AuditLog) -> None:
    log.record_many([_event(i) for i in range(5)])  # one group: one seal, on its last event
    log.record(_event(5))
    with log.engine.connect() as conn:
        sealed = [seq for seq, seal in conn.execute(text("SELECT seq, seal FROM audit_events ORDER BY seq")) if seal]
    assert sealed == [5, 6]


def test_digests_follow_the_events_within_digest_seconds_while_they_flow_and_when_they_stop(
    audit_engine: Engine, tmp_path: Path
) -> None:
    """No event waits longer than `digest_seconds` for a signed digest: the group that finds the
    oldest undigested event that old signs one, and so does the scheduler's tick
    (`digest_if_stale`) once the log goes quiet. A truncation is then caught."""
    key = tmp_path / "keys" / "audit-signing.key"
    create_signing_key(key)
    clock = [0.0]
    digests = DigestFile(tmp_path / "digests.jsonl")
    log = AuditLog(
        audit_engine,
        signer=Signer(key),
        digests=digests,
        public_key=public_path(key),
        digest_every=10**6,
        digest_seconds=5.0,
        monotonic=lambda: clock[0],
    )
    for t in (0.0, 1.0, 4.9):
        clock[0] = t
        log.record(_event())
    assert digests.read() == []
    clock[0] = 5.0
    log.record(_event())  # the first event has waited 5 s: this group signs
    assert [d.seq for d in digests.read()] == [4]
    clock[0] = 6.0
    for _ in range(3):
        log.record(_event())  # three more, then the log goes quiet
    log.digest_if_stale()
    assert [d.seq for d in digests.read()] == [4]
    clock[0] = 11.0
    log.digest_if_stale()
    assert [d.seq for d in digests.read()] == [4, 7]
    with log.engine.begin() as conn:  # the last three are cut off and the head moved back
        if audit_engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        head = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 4")).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE seq > 4"))
        conn.execute(text("UPDATE audit_head SET seq = 4, hash = :h"), {"h": head})
    report = _verify(log, tmp_path)
    assert not report.ok and any("truncated" in p for p in report.problems)  # type: ignore[attr-defined]


def test_concurrent_threads_share_commits_and_never_fork_the_chain(log: AuditLog, tmp_path: Path) -> None:
    threads = [
        threading.Thread(target=lambda t=t: [log.record(_event(t * 100 + i)) for i in range(50)]) for t in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert log.head()[0] == 400
    assert _verify(log, tmp_path).ok  # type: ignore[attr-defined]
    assert log.transactions < 200  # group commit: waiting writers ride along (one each would be 400)


def test_appends_from_an_event_loop_are_committed_when_awaited_and_share_the_chain_with_threads(
    log: AuditLog, tmp_path: Path
) -> None:
    committed: list[int] = []

    async def one(i: int) -> int:
        (seq,) = await log.record_async([_event(i)])
        committed.append(_committed(log, seq))
        return seq

    async def many() -> list[int]:
        return await asyncio.gather(*(one(i) for i in range(60)))

    threads = [
        threading.Thread(target=lambda t=t: [log.record(_event(t * 100 + i)) for i in range(30)]) for t in range(1, 4)
    ]
    for th in threads:
        th.start()
    seqs = asyncio.run(many())
    for th in threads:
        th.join()
    assert len(set(seqs)) == 60 and committed == [1] * 60
    assert log.head()[0] == 150
    assert _verify(log, tmp_path).ok  # type: ignore[attr-defined]
    assert log.transactions < 150  # the loop's events share commits (with each other and the threads')


def _committed(log: AuditLog, seq: int) -> int:
    """Whether event `seq` is committed: read by another connection in a snapshot of its own
    (a read that queued for the write lock would wait for the commit and prove nothing)."""
    with log.engine.connect() as other:
        reading(other)
        with other.begin():
            return int(other.execute(text("SELECT count(*) FROM audit_events WHERE seq = :s"), {"s": seq}).scalar_one())


def test_an_unreachable_audit_database_refuses_every_caller_and_strands_none(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The connection (or SQLite's lock file) cannot be had, outside any transaction: every
    caller, in threads and in an event loop, is refused with AuditUnavailable, none is left
    waiting, and the log writes again once its database is there."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'not-yet' / 'audit.db'}"
    else:
        url = (
            make_url(request.getfixturevalue("pg_url"))
            .set(database="sagevault_no_such_db")
            .render_as_string(hide_password=False)
        )
    log = AuditLog(create_engine_for(url), signer=None, digests=None)
    refused: list[str] = []

    def sync() -> None:
        try:
            log.record(_event())
        except AuditUnavailable:
            refused.append("thread")

    async def loop_side() -> None:
        results = await asyncio.gather(
            *(asyncio.wait_for(log.record_async([_event()]), 30) for _ in range(5)), return_exceptions=True
        )
        refused.extend("loop" for r in results if isinstance(r, AuditUnavailable))

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for th in threads:
        th.start()
    asyncio.run(loop_side())
    for th in threads:
        th.join(30)
    assert sorted(refused) == ["loop"] * 5 + ["thread"] * 4
    with pytest.raises(AuditUnavailable, match="operation was refused"):
        log.record(_event())
    if backend == "sqlite":  # the database appears: the same log writes
        (tmp_path / "not-yet").mkdir()
        migrate_audit(log.engine)
        assert log.record(_event()) == 1 and asyncio.run(log.record_async([_event()])) == [2]
    log.close()


def test_a_digest_that_cannot_be_written_holds_back_no_committed_event(audit_engine: Engine, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "audit-signing.key"
    create_signing_key(key)
    (tmp_path / "digests-here").mkdir()  # a directory where the digest file should be
    log = AuditLog(audit_engine, signer=Signer(key), digests=DigestFile(tmp_path / "digests-here"), digest_every=1)
    assert log.record(_event(1)) == 1
    assert asyncio.run(asyncio.wait_for(log.record_async([_event(2)]), 30)) == [2]
    configure_logging(tmp_path / "app.log")
    try:
        assert log.record_many([_event(3)]) == [3]
    finally:
        log.close()  # its writer thread logs no more once the file is released (a late line would reopen it)
        release_logging()
    assert "audit digest not written" in (tmp_path / "app.log").read_text()


def test_a_search_or_export_under_way_holds_up_no_append(log: AuditLog) -> None:
    """Reads of the log are snapshots: an export part-way through its events does not keep the
    next event (every reveal's) from being committed, and does not see it."""
    for i in range(5):
        log.record(_event(i))
    export = log.search()
    assert next(export)["seq"] == 1
    assert log.record(_event(99)) == 6  # with the export still open (on SQLite it held the write lock)
    assert [e["seq"] for e in export] == [2, 3, 4, 5]  # its own snapshot
    assert log.count() == 6 and log.head()[0] == 6


def test_closing_the_log_while_threads_and_a_loop_append_strands_no_caller(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        for attempt in range(40):
            engine = create_engine_for(f"sqlite:///{tmp_path / f'audit-{attempt}.db'}")
            migrate_audit(engine)
            log = AuditLog(engine, signer=None, digests=None)
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=lambda log=log, stop=stop: [log.record(_event()) for _ in iter(stop.is_set, True)]
                )
                for _ in range(3)
            ]
            for th in threads:
                th.start()
            futures = [asyncio.run_coroutine_threadsafe(log.record_async([_event()]), loop) for _ in range(20)]
            time.sleep(0.005)
            log.close()
            futures += [asyncio.run_coroutine_threadsafe(log.record_async([_event()]), loop) for _ in range(20)]
            time.sleep(0.01)
            stop.set()
            seqs = [f.result(timeout=10)[0] for f in futures]  # TimeoutError: a caller was stranded
            for th in threads:
                th.join(10)
                assert not th.is_alive(), f"a thread's append was stranded (attempt {attempt})"
            assert len(set(seqs)) == 40 and log.head()[0] >= 40
            log.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


def test_events_held_in_a_deferred_block_are_written_only_when_awaited_and_a_failed_write_refuses(
    log: AuditLog, tmp_path: Path
) -> None:
    with log.deferred() as held:
        assert log.record(_event(1)) == 0 and log.record(_event(2)) == 0
    assert log.head()[0] == 0 and len(held) == 2  # nothing written yet
    assert log.record(_event(3)) == 1  # outside the block: written at once
    assert asyncio.run(log.record_async(held)) == [2, 3]
    assert [e["record_ids"] for e in log.search()] == [[3], [1], [2]]
    with log.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    try:
        with pytest.raises(AuditUnavailable, match="operation was refused"):
            asyncio.run(log.record_async([_event(4)]))
    finally:
        with log.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))
    assert asyncio.run(log.record_async([_event(5)])) == [4]  # the log's writer carries on
    log.close()  # stops its writer thread; a later append starts another
    assert asyncio.run(log.record_async([_event(6)])) == [5]
    assert _verify(log, tmp_path).ok  # type: ignore[attr-defined]


_WRITER = """
import sys
from pathlib import Path
from sagevault.audit import AuditEvent, AuditLog, EventName, Signer
from sagevault.identity import Channel, Principal
from sagevault.db import create_engine_for
log = AuditLog(create_engine_for(sys.argv[1]), signer=Signer(Path(sys.argv[3])), digests=None)
for i in range(int(sys.argv[2])):
    log.record(AuditEvent(name=EventName.VAULT_RECORD_READ, channel=Channel.API, actor="svc:proc", record_ids=[i]))
log.close()
"""


def test_concurrent_processes_never_fork_the_chain(log: AuditLog, tmp_path: Path) -> None:
    url = log.engine.url.render_as_string(hide_password=False)
    key = str(tmp_path / "keys" / "audit-signing.key")  # every writer holds the signing key
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, "60", key]) for _ in range(3)]
    for _ in range(60):
        log.record(_event())
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    assert log.head()[0] == 240
    report = _verify(log, tmp_path)
    assert report.ok and report.events == 240  # type: ignore[attr-defined]


def test_retention_purge_drops_whole_months_and_the_chain_still_verifies(log: AuditLog, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=500)
    for i in range(10):
        log.record(_event(i, at=old + timedelta(minutes=i)))
    log.write_digest()
    for i in range(5):
        log.record(_event(i))
    purged = log.purge_before(now - timedelta(days=365), Asker(Principal("operator:test", "operator")))
    assert purged == 10
    report = _verify(log, tmp_path)
    assert report.ok and report.events == 6, report.problems  # type: ignore[attr-defined]
    last = next(log.search(name=EventName.AUDIT_SEGMENT_PURGE.value))
    assert last["counts"] == {"events": 10, "first_seq": 1, "last_seq": 10}


def test_a_read_of_pii_is_refused_when_its_event_cannot_be_written(vault_tenant: Deployment) -> None:
    d = vault_tenant
    order = next(generate_orders(1, seed=4))
    with d.engine.begin() as conn:
        d.vault.ingest(conn, TENANT, [get_orders_response([order])], principal=OPERATOR)
    with audit_table_away(d), d.engine.begin() as conn, pytest.raises(AuditUnavailable, match="operation was refused"):
        d.vault.reveal(conn, TENANT, order["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR)
    with d.engine.begin() as conn:  # and once the log is back, the same read is answered and recorded
        (f,) = d.vault.reveal(
            conn, TENANT, order["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "fulfilment", principal=OPERATOR
        )
    assert f.value == order["BuyerInfo"]["BuyerEmail"]
    reveal = next(d.audit.search(name=EventName.VAULT_FIELD_REVEAL.value, newest_first=True))
    assert (
        reveal["actor"] == OPERATOR.id and reveal["record_ids"] == [f.record_id] and reveal["counts"] == {"fields": 1}
    )


def test_refusals_are_recorded_with_reason_codes(vault_tenant: Deployment) -> None:
    d = vault_tenant
    order = next(generate_orders(1, seed=5))
    with d.engine.begin() as conn:
        d.vault.ingest(conn, TENANT, [get_orders_response([order])], principal=OPERATOR)
    with d.engine.begin() as conn, pytest.raises(PurposeNotAllowed):
        d.vault.reveal(
            conn, TENANT, order["AmazonOrderId"], ["BuyerInfo.BuyerEmail"], "tax_invoicing", principal=OPERATOR
        )
    denial = next(d.audit.search(name=EventName.ACCESS_PERMISSION_DENY.value))
    assert (denial["outcome"], denial["reason"], denial["operation"]) == ("denied", "purpose_not_allowed", "reveal")


def test_on_postgresql_the_event_table_is_append_only(pg_engine: Engine) -> None:
    log = AuditLog(pg_engine, signer=None, digests=None)
    log.record(_event())
    try:
        _refused_on_postgresql(pg_engine)
    finally:
        with pg_engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events, audit_anchors"))
            conn.execute(text("UPDATE audit_head SET seq = 0, hash = :z"), {"z": b"\0" * 32})


def _refused_on_postgresql(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn, pytest.raises(Exception, match="append-only: UPDATE refused"):
        conn.execute(text("UPDATE audit_events SET actor = 'svc:mallory'"))
    with pg_engine.begin() as conn, pytest.raises(Exception, match="append-only: DELETE refused"):
        conn.execute(text("DELETE FROM audit_events"))
    with pg_engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE sagevault_app"))
        with pytest.raises(Exception, match="permission denied"):
            conn.execute(text("DELETE FROM audit_events"))
    with pg_engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE sagevault_app"))
        conn.execute(text("SELECT count(*) FROM audit_events"))  # reading is allowed


def test_syslog_lines_follow_rfc_5424(log: AuditLog) -> None:
    log.record(_event(operation="reveal"))
    line = to_syslog(next(log.search())).decode()
    assert line.startswith("<37>1 ") and ' sagevault - vault:record:read [sagevault@32473 seq="1"' in line


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made here (no network, no fixtures on disk)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test collector CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_events_reach_a_syslog_collector_over_tls_only(log: AuditLog, tmp_path: Path) -> None:
    from sagevault.audit import SyslogTlsSink

    for i in range(5):
        log.record(_event(i))
    ca, cert, key = _tls_files(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        while data:  # RFC 5425 octet counting: "LEN SP MSG"
            size, _, rest = data.partition(b" ")
            received.append(rest[: int(size)])
            data = rest[int(size) :]

    server = threading.Thread(target=serve)
    server.start()
    sent = SyslogTlsSink("127.0.0.1", port, cafile=str(ca)).send(log.search())
    server.join(10)
    listener.close()
    assert sent == 5 and len(received) == 5
    assert all(m.startswith(b"<37>1 ") and b"vault:record:read" in m for m in received)
    # a collector whose certificate the CA did not sign is refused
    other = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: _accept_tls(other, server_ctx)).start()
    untrusted = SyslogTlsSink("127.0.0.1", other.getsockname()[1], cafile=None)
    with pytest.raises(ssl.SSLError):
        untrusted.send(log.search())


def _accept_tls(listener: socket.socket, ctx: ssl.SSLContext) -> None:
    listener.settimeout(10)
    conn, _ = listener.accept()
    try:
        ctx.wrap_socket(conn, server_side=True).close()
    except (ssl.SSLError, OSError):
        conn.close()
    listener.close()


def test_retention_purges_the_run_of_old_events_from_the_start_and_keeps_a_back_dated_one(
    log: AuditLog, tmp_path: Path
) -> None:
    """The purge goes by sequence number: it stops at the first event of the kept months, so an
    event back-dated into the past later in the chain (and every event after it) stays."""
    now = datetime.now(UTC)
    old = now - timedelta(days=500)
    for i in range(5):
        log.record(_event(i, at=old + timedelta(minutes=i)))
    for i in range(3):
        log.record(_event(i))
    log.record(_event(9, at=old))  # back-dated: written now, dated 500 days ago
    for i in range(2):
        log.record(_event(i))
    log.write_digest()
    purged = log.purge_before(now - timedelta(days=365), Asker(Principal("operator:test", "operator")))
    assert purged == 5
    kept = [e["seq"] for e in log.search()]
    assert kept[:6] == [6, 7, 8, 9, 10, 11]  # the back-dated event (9) and the newer ones stayed
    report = _verify(log, tmp_path)
    assert report.ok, report.problems  # type: ignore[attr-defined]


def test_retention_refuses_to_purge_a_run_that_does_not_verify(log: AuditLog, tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(days=500)
    for i in range(4):
        log.record(_event(i, at=old + timedelta(minutes=i)))
    log.record(_event(5))
    with log.engine.begin() as conn:  # someone rewrites an old event (on PostgreSQL, past the trigger)
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        conn.execute(text("UPDATE audit_events SET actor = 'svc:mallory' WHERE seq = 2"))
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
    with pytest.raises(IntegrityError, match="event 2 was changed after it was written"):
        log.purge_before(datetime.now(UTC) - timedelta(days=365), Asker(Principal("operator:test", "operator")))
    assert [e["seq"] for e in log.search()] == [1, 2, 3, 4, 5]  # the evidence is still there


def test_reads_of_the_log_are_recorded_with_how_many_events_were_read(log: AuditLog) -> None:
    for i in range(5):
        log.record(_event(i))
    officer = Asker(Principal("usr_bcdfghjkmnpq", "person", Channel.API, "127.0.0.1"), request_id="abc123")
    assert len(log.read(officer, limit=3, newest_first=True)) == 3
    assert len(log.read(officer, limit=100, tenant_id=TENANT)) == 5
    reads = list(log.search(name=EventName.AUDIT_LOG_READ.value))
    assert [(e["actor"], e["counts"]["events"], e["tenant_id"]) for e in reads] == [
        ("usr_bcdfghjkmnpq", 3, None),
        ("usr_bcdfghjkmnpq", 5, TENANT),
    ]


def test_a_verification_that_cannot_be_recorded_still_gives_its_verdict(log: AuditLog) -> None:
    for i in range(3):
        log.record(_event(i))
    log.write_digest()
    with log.engine.begin() as conn:  # the log can be read but no longer written
        if conn.dialect.name == "sqlite":
            conn.execute(
                text("CREATE TRIGGER full BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'full'); END")
            )
        else:
            conn.execute(
                text("CREATE FUNCTION full_() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'full'; END $$")
            )
            conn.execute(
                text("CREATE TRIGGER full_ BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION full_()")
            )
    report = log.verify(Asker(Principal("operator:test", "operator")))
    assert report.ok and report.events == 3 and report.undigested == 0
    assert report.unrecorded is not None and "could not be written" in str(report.unrecorded)
