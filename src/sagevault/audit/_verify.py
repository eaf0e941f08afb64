"""`sagevault audit verify`: the whole chain, the head, purge anchors, every signed digest and the
newest group seal."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, create_engine, select, text

from sagevault.errors import AuditUnavailable

from ._commit import ZERO_HASH, canonical_json
from ._schema import COLUMNS, audit_anchors, audit_head
from ._signing import Digest, anchor_message, digest_message, seal_message, verify_signature

_BATCH = 5000


@dataclass
class VerifyReport:
    events: int = 0
    digests: int = 0
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    unreadable: bool = False  # the verification key or the digest file could not be read
    undigested: int = 0  # events after the newest signed digest: what a truncation could remove unseen
    sealed_through: int = 0  # the newest event whose group seal verified (it vouches for all before it)
    unsealed: int = 0  # events neither a seal nor a signed digest vouches for (appended without the key)
    unrecorded: AuditUnavailable | None = None  # the check itself could not be recorded

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, seq: int | None, problem: str) -> None:
        if seq is not None and (self.first_bad_seq is None or seq < self.first_bad_seq):
            self.first_bad_seq = seq
        self.problems.append(problem)


@dataclass
class _Walk:
    last_seq: int = 0
    last_hash: bytes = ZERO_HASH
    hashes_at: dict[int, bytes] = field(default_factory=dict)
    last_seal: tuple[int, bytes, bytes] | None = None  # seq, hash and seal of the newest sealed event


def verify(
    engine: Engine,
    public_key: Ed25519PublicKey,
    digests: list[Digest],
    *,
    workers: int | None = None,
    parallel_from: int = 20_000,
) -> VerifyReport:
    """Check every event against the one before it, the head row, the anchors of purged
    segments and the signed digests. The report names the first bad sequence number.

    Each event's hash depends only on the stored hash before it, so logs of `parallel_from`
    events or more are checked in `workers` processes (default: one per core), one range each."""
    report = VerifyReport()
    wanted = {d.seq for d in digests}
    with engine.connect() as conn:
        anchors = {int(a.last_seq): bytes(a.hash) for a in conn.execute(select(audit_anchors))}
        for a in conn.execute(select(audit_anchors)):
            if not verify_signature(public_key, bytes(a.signature), anchor_message(int(a.last_seq), bytes(a.hash))):
                report.fail(int(a.last_seq) + 1, f"the purge anchor at seq {a.last_seq} has a bad signature")
        head_seq, head_hash = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()
        low, high = conn.execute(text("SELECT min(seq), max(seq) FROM audit_events")).one()
    workers = workers or os.cpu_count() or 1
    # Forking is only safe while this process runs a single thread; otherwise walk in-process.
    if low is None or workers < 2 or high - low + 1 < parallel_from or threading.active_count() > 1:
        walk = _walk_range(engine, None, None, anchors, wanted, report)
    else:
        walk = _walk_parallel(engine, int(low), int(high), workers, anchors, wanted, report)
    if report.ok:
        _check_head(int(head_seq), bytes(head_hash), walk, report)
    _check_digests(public_key, digests, max(anchors, default=0), walk, report)
    signed_through = max([d.seq for d in digests] + list(anchors), default=0)
    report.undigested = max(0, walk.last_seq - signed_through)
    _check_seals(public_key, walk, signed_through, report)
    return report


def _check_seals(key: Ed25519PublicKey, walk: _Walk, signed_through: int, report: VerifyReport) -> None:
    """The newest group seal vouches for every event up to it (its chain hash covers them); each
    event after it and after the newest signed digest was appended by something that does not
    hold the signing key, since every group SageVault commits carries a seal."""
    if walk.last_seal is not None:
        seq, chain, seal = walk.last_seal
        if verify_signature(key, seal, seal_message(seq, chain)):
            report.sealed_through = seq
        elif report.ok:
            report.fail(seq, f"the seal of event {seq} is not the audit signing key's: the log was rewritten")
            return
    vouched = max(report.sealed_through, signed_through)
    report.unsealed = max(0, walk.last_seq - vouched)
    if report.unsealed and report.ok:
        report.fail(
            vouched + 1,
            f"events {vouched + 1}..{walk.last_seq} carry no seal and no signed digest covers them: they were "
            "appended without the audit signing key",
        )


def _walk_range(
    engine: Engine,
    first: int | None,
    last: int | None,
    anchors: dict[int, bytes],
    wanted: set[int],
    report: VerifyReport,
) -> _Walk:
    """Walk events first..last (all when None), starting from the stored hash before `first`."""
    with engine.connect() as conn:
        start: tuple[int, bytes] | None = None
        if first is not None:
            before = conn.execute(text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": first - 1}).scalar()
            if before is None:
                report.fail(first - 1, f"event {first - 1} is missing (deleted)")
                return _Walk()
            start = (first, bytes(before))
        # The driver's own cursor (server-side on PostgreSQL): plain tuples, streamed in batches.
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        postgres = conn.dialect.name == "postgresql"
        cursor = dbapi.cursor("sagevault_verify") if postgres else dbapi.cursor()
        where = ""
        if first is not None or last is not None:
            where = f" WHERE seq BETWEEN {int(first or 0)} AND {int(last if last is not None else 2**62)}"
        try:
            cursor.execute(f"SELECT {', '.join(COLUMNS)}, prev_hash, hash, seal FROM audit_events{where} ORDER BY seq")  # noqa: S608
            walk = walk_chain(_stream(cursor), anchors, wanted, report, start)
        finally:
            cursor.close()
    if last is not None and report.ok and walk.last_seq != last:
        report.fail(walk.last_seq + 1, f"event {walk.last_seq + 1} is missing (deleted)")
    return walk


def _range_worker(
    url: str, first: int | None, last: int, anchors: dict[int, bytes], wanted: set[int]
) -> tuple[_Walk, VerifyReport]:
    engine = create_engine(url)
    try:
        report = VerifyReport()
        return _walk_range(engine, first, last, anchors, wanted, report), report
    finally:
        engine.dispose()


def _walk_parallel(
    engine: Engine, low: int, high: int, workers: int, anchors: dict[int, bytes], wanted: set[int], report: VerifyReport
) -> _Walk:
    size = (high - low + 1 + workers - 1) // workers
    bounds = [(a, min(a + size - 1, high)) for a in range(low, high + 1, size)]
    url = engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(max_workers=len(bounds), mp_context=multiprocessing.get_context("fork")) as pool:
        # the first range starts from the log's beginning (or a purge anchor), the others from
        # the stored hash just before them
        futures = [
            pool.submit(_range_worker, url, a if i else None, b, anchors, wanted) for i, (a, b) in enumerate(bounds)
        ]
        parts = [f.result() for f in futures]
    merged = _Walk()
    for walk, part in parts:
        report.events += part.events
        for problem, seq in zip(part.problems, [part.first_bad_seq] * len(part.problems), strict=True):
            report.fail(seq, problem)
        merged.hashes_at.update(walk.hashes_at)
        if walk.last_seal is not None:
            merged.last_seal = walk.last_seal
        if walk.last_seq:
            merged.last_seq, merged.last_hash = walk.last_seq, walk.last_hash
        if part.problems:
            break  # later ranges do not matter once one is broken
    return merged


def _stream(cursor: Any) -> Iterable[Any]:
    while batch := cursor.fetchmany(_BATCH):
        yield from batch


def walk_chain(
    rows: Iterable[Any],
    anchors: dict[int, bytes],
    wanted: set[int],
    report: VerifyReport,
    start: tuple[int, bytes] | None = None,
) -> _Walk:
    """The hot loop of verify: locals only, one SHA-256 and one JSON encoding per event. Rows
    are the stored columns, prev_hash, hash and seal, in that order."""
    walk = _Walk()
    last_seal: tuple[int, bytes, bytes] | None = None
    expected, prev = start or (1, ZERO_HASH)
    count = 0
    resumed = start is not None
    sha256, dumps = hashlib.sha256, canonical_json
    problem: tuple[int, str] | None = None
    for row in rows:
        seq = row[0]
        if count == 0 and seq > 1 and not resumed:  # the oldest segments were purged
            if seq - 1 not in anchors:
                problem = (1, f"events 1..{seq - 1} are missing and no signed purge anchor covers them")
                break
            expected, prev = seq, anchors[seq - 1]
        if seq != expected:
            problem = (expected, f"event {expected} is missing (deleted); the next stored event is {seq}")
            break
        stored = bytes(row[15])
        if bytes(row[14]) != prev:
            problem = (seq, f"event {seq} does not follow event {seq - 1}: an event was inserted or replaced")
            break
        if sha256(prev + dumps(row[:14]).encode()).digest() != stored:
            problem = (seq, f"event {seq} was changed after it was written")
            break
        if seq in wanted:
            walk.hashes_at[seq] = stored
        if row[16] is not None:
            last_seal = (seq, stored, bytes(row[16]))
        prev, expected = stored, seq + 1
        count += 1
    report.events += count
    walk.last_seq, walk.last_hash = (expected - 1, prev) if count else (0, ZERO_HASH)
    walk.last_seal = last_seal
    if problem is not None:
        report.fail(*problem)
    return walk


def _check_head(head_seq: int, head_hash: bytes, walk: _Walk, report: VerifyReport) -> None:
    if head_seq > walk.last_seq:
        report.fail(walk.last_seq + 1, f"events {walk.last_seq + 1}..{head_seq} are missing: the log was truncated")
    elif head_seq < walk.last_seq or (walk.last_seq and head_hash != walk.last_hash):
        report.fail(head_seq + 1, "the chain head does not match the last event: events were appended or rewritten")


def _check_digests(
    key: Ed25519PublicKey, digests: list[Digest], purged_through: int, walk: _Walk, report: VerifyReport
) -> None:
    good_until = purged_through
    for d in sorted(digests, key=lambda d: d.seq):
        report.digests += 1
        if not verify_signature(key, d.signature, digest_message(d.seq, d.hash)):
            report.fail(None, f"the digest for seq {d.seq} has a bad signature: the digest file was altered")
        elif d.seq <= purged_through:
            continue  # purged; the signed anchor vouches for what came before
        elif d.seq in walk.hashes_at and walk.hashes_at[d.seq] != d.hash:
            report.fail(
                good_until + 1, f"events up to seq {d.seq} differ from the signed digest: the log was rewritten"
            )
            return
        elif d.seq in walk.hashes_at:
            good_until = d.seq
        elif d.seq > walk.last_seq and report.ok:
            report.fail(
                walk.last_seq + 1,
                f"a signed digest covers seq {d.seq} but the log ends at {walk.last_seq}: the log was truncated",
            )
            return
