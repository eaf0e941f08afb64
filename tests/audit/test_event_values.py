"""An event's stored values are what the chain hashes: the record ids and counts as canonical JSON,
the same text whatever builds it (a log written before the fast path verifies after it)."""

from __future__ import annotations

import json
import random
import string

import pytest

from conftest import OPERATOR
from sagevault.audit import AuditEvent, EventName
from sagevault.errors import AuditEventError
from sagevault.identity import Channel


def _canonical(value: object) -> str:  # what every event stored before: json.dumps, compact, keys sorted
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def test_record_ids_and_counts_are_stored_as_canonical_json() -> None:
    rng = random.Random(20)
    first = string.ascii_lowercase
    rest = string.ascii_lowercase + string.digits + "_.:-"
    for _ in range(500):
        ids = [
            rng.choice([0, 1, -1, rng.randrange(-(2**63), 2**63), rng.randrange(10**30)])
            for _ in range(rng.randrange(5))
        ]
        counts = {
            rng.choice(first) + "".join(rng.choices(rest, k=rng.randrange(64))): rng.randrange(-(10**12), 10**12)
            for _ in range(rng.randrange(4))
        }
        values = AuditEvent(
            name=EventName.VAULT_FIELD_REVEAL, channel=Channel.API, actor=OPERATOR.id, record_ids=ids, counts=counts
        ).values(1)
        assert values[8:10] == [_canonical(ids), _canonical(counts)]


@pytest.mark.parametrize("ids", [[True], [1.0], ["7"], [1, None]])
def test_record_ids_that_are_not_integers_are_refused(ids: list[object]) -> None:
    with pytest.raises(AuditEventError, match="record_ids must be a list of integer record ids"):
        AuditEvent(name=EventName.VAULT_FIELD_REVEAL, channel=Channel.API, actor=OPERATOR.id, record_ids=ids)  # type: ignore[arg-type]
