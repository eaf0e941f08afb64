"""The monitor on a deployment (SQLite and PostgreSQL): events in the real security log, the
detector following it by sequence number, alarms, baselines and canaries in the real database."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from monitor_support import denied
from sqlalchemy import select

from conftest import OPERATOR, TENANT
from sagevault.audit import AuditEvent, EventName, Outcome, Reason
from sagevault.config import make_private_dir
from sagevault.deployment import Deployment
from sagevault.errors import AccessDenied, ConfigError, Conflict, RuleError
from sagevault.identity import Channel
from sagevault.jobs import Watch
from sagevault.monitor import Alarm, fake_orders, load_rules, monitor_baselines
from sagevault.vault import Operation


def _event(name: EventName, actor: str, at: datetime, **kw: object) -> AuditEvent:
    return AuditEvent(name=name, channel=Channel.API, actor=actor, tenant_id=TENANT, at=at, **kw)  # type: ignore[arg-type]


def _private(path: Path, text: str) -> None:
    """A rule file as the data dir wants its files: readable by this account only."""
    path.write_text(text)
    path.chmod(0o600)


def _alarms(d: Deployment, rule: str | None = None) -> list[Alarm]:
    with d.unit_of_work(read_only=True) as conn:
        found = d.monitor.list_alarms(conn, principal=OPERATOR)
    return [a for a in found if rule is None or a.rule == rule]


def test_one_attack_raises_one_alarm_that_counts_its_events_with_rule_version_and_evidence(
    deployment: Deployment,
) -> None:
    d = deployment
    d.audit.record_many([denied("svc-scraper") for _ in range(100)])
    Watch(d).catch_up()
    [alarm] = _alarms(d)
    assert (alarm.rule, alarm.rule_version, alarm.clause, alarm.severity) == ("denied-calls-principal", 1, "4", "high")
    assert (alarm.count, alarm.principal, alarm.tenant, alarm.state) == (100, "svc-scraper", TENANT, "open")
    denies = [e["seq"] for e in d.audit.search(name=EventName.ACCESS_PERMISSION_DENY.value)]
    assert alarm.evidence["seqs"] == denies[:20] and alarm.evidence["threshold"] == 20
    assert alarm.evidence["window_seconds"] == 60 and alarm.evidence["last_seq"] == denies[-1]
    raised = list(d.audit.search(name=EventName.MONITOR_ALARM_RAISE.value))
    assert [(e["operation"], e["counts"]["alarm"]) for e in raised] == [("denied-calls-principal", alarm.id)]

    with d.unit_of_work() as conn:
        done = d.monitor.change(conn, alarm.id, "resolved", principal=OPERATOR, note="scraper blocked at the WAF")
    assert (done.state, done.changed_by, done.note) == ("resolved", OPERATOR.id, "scraper blocked at the WAF")
    with d.unit_of_work() as conn, pytest.raises(Conflict, match="resolved"):
        d.monitor.change(conn, alarm.id, "acknowledged", principal=OPERATOR)
    d.audit.record_many([denied("svc-scraper") for _ in range(5)])  # the attack goes on: a new alarm
    Watch(d).catch_up()
    newest = _alarms(d, "denied-calls-principal")[0]
    assert newest.id != alarm.id and newest.state == "open"
    assert [e["name"] for e in d.audit.search(name=EventName.MONITOR_ALARM_RESOLVE.value)] == ["monitor:alarm:resolve"]


def test_a_restart_neither_repeats_nor_skips_and_an_attack_across_it_is_seen_whole(deployment: Deployment) -> None:
    d = deployment
    first = Watch(d)
    first.catch_up()  # what opening the deployment recorded
    d.audit.record_many([denied("svc-scraper") for _ in range(12)])
    assert first.catch_up() == 12 and _alarms(d) == []
    d.monitor.cursor = -1  # what a new process finds: the cursor and baselines in the database, nothing in memory
    d.audit.record_many([denied("svc-scraper") for _ in range(12)])
    second = Watch(d)
    assert second.catch_up() == 12  # the 12 after the cursor; the 12 before it only refill the window
    [alarm] = _alarms(d)
    assert alarm.count == 24 - 20 + 20 and alarm.rule == "denied-calls-principal"
    assert second.catch_up() == 1  # only the alarm's own monitor:alarm:raise: nothing is evaluated twice
    assert [a.count for a in _alarms(d)] == [24]


def test_baselines_persist_and_a_rate_twenty_times_the_learned_one_raises_the_rate_alarm(
    deployment: Deployment,
) -> None:
    d = deployment
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    history = [
        _event(EventName.VAULT_RECORD_SEARCH, "svc-sync", start + timedelta(minutes=m, seconds=10 * i))
        for m in range(30)
        for i in range(5)
    ]
    d.audit.record_many(history)
    Watch(d).catch_up()
    d.monitor.cursor = -1  # a restart: the baseline must come back from the database
    with d.unit_of_work(read_only=True) as conn:
        saved = {r.group_key: json.loads(r.state) for r in conn.execute(select(monitor_baselines))}
    learned = saved["actor=svc-sync|name=vault:record:search"]
    assert learned["minutes"] >= 29 and learned["mean"] == pytest.approx(5, abs=0.01)
    assert _alarms(d) == []

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    d.audit.record_many(
        [_event(EventName.VAULT_RECORD_SEARCH, "svc-sync", now + timedelta(milliseconds=10 * i)) for i in range(100)]
    )
    Watch(d).catch_up()
    [alarm] = _alarms(d, "request-rate")
    assert alarm.count == 100 and alarm.principal == "svc-sync"
    assert alarm.evidence["baseline"]["mean_per_minute"] == pytest.approx(5, abs=0.01)
    assert alarm.evidence["baseline"]["minutes"] >= 29 and alarm.evidence["limit"] == 60
    assert alarm.evidence["observed_per_minute"] == 100


def _normal_day(end: datetime, seed: int = 5) -> list[AuditEvent]:
    """24 hours of an ordinary seller tool: two packers searching and revealing, a sync service
    ingesting, a viewer listing, the odd mistyped password and refused call."""
    rnd = random.Random(seed)
    events: list[AuditEvent] = []
    start = end - timedelta(days=1)
    for minute in range(24 * 60):
        at = start + timedelta(minutes=minute)
        busy = 8 <= at.hour < 20
        for packer in ("p_packer_one", "p_packer_two"):
            for _ in range(rnd.randint(2, 12) if busy else rnd.randint(0, 2)):
                events.append(_event(EventName.VAULT_RECORD_SEARCH, packer, at, record_ids=[rnd.randrange(1, 999)]))
            if busy and rnd.random() < 0.5:
                fields = rnd.randint(3, 12)
                events.append(_event(EventName.VAULT_FIELD_REVEAL, packer, at, counts={"fields": fields}))
        events.append(_event(EventName.VAULT_RECORD_INGEST, "svc-sync", at, counts={"records": rnd.randint(0, 30)}))
        if minute % 5 == 0:
            events.append(_event(EventName.VAULT_RECORD_READ, "p_viewer", at, counts={"orders": 50}))
        if rnd.random() < 0.01:
            events.append(denied("p_packer_one", at))
        if rnd.random() < 0.005:
            events.append(
                AuditEvent(
                    name=EventName.ACCESS_LOGIN_FAILURE,
                    channel=Channel.API,
                    outcome=Outcome.DENIED,
                    reason=Reason.BAD_CREDENTIALS,
                    actor="p_packer_two",
                    at=at,
                )
            )
    return events


def test_a_normal_day_of_traffic_raises_no_alarm(deployment: Deployment) -> None:
    d = deployment
    day = _normal_day(datetime.now(UTC) - timedelta(minutes=5))
    watch = Watch(d)
    watch.catch_up()  # what opening the deployment recorded
    for i in range(0, len(day), 5000):
        d.audit.record_many(day[i : i + 5000])
    assert watch.catch_up() == len(day) > 10_000
    assert _alarms(d) == []


def test_canaries_are_left_out_of_listings_and_counts_and_a_search_hit_raises_a_critical_alarm(
    vault_tenant: Deployment,
) -> None:
    d = vault_tenant
    with d.unit_of_work() as conn:
        d.vault.ingest(
            conn, TENANT, [{"payload": {"Orders": list(fake_orders(4))}}], Operation.GET_ORDERS, principal=OPERATOR
        )
        canaries = list(fake_orders(3))
        assert d.monitor.plant(conn, d.vault, TENANT, canaries, principal=OPERATOR) == 3
    with d.unit_of_work(read_only=True) as conn:
        listed = [o.order_id for o in d.vault.list_orders(conn, TENANT, principal=OPERATOR, limit=2)]
        listed += [o.order_id for o in d.vault.list_orders(conn, TENANT, principal=OPERATOR, after=listed[-1])]
        assert len(listed) == 4 and not {c["AmazonOrderId"] for c in canaries} & set(listed)
        assert d.vault.record_count(conn, TENANT, principal=OPERATOR) == 4
    Watch(d).catch_up()
    assert _alarms(d) == []  # planting is not touching

    email = canaries[1]["BuyerInfo"]["BuyerEmail"]
    with d.unit_of_work(read_only=True) as conn:
        hits = d.vault.search(conn, TENANT, "email", email, purpose="fulfilment", principal=OPERATOR)
    Watch(d).catch_up()
    [alarm] = _alarms(d)
    assert (alarm.rule, alarm.severity, alarm.principal, alarm.tenant) == (
        "canary-touched",
        "critical",
        OPERATOR.id,
        TENANT,
    )
    assert alarm.evidence["canary_records"] == [h.record_id for h in hits]
    assert alarm.evidence["event_name"] == "vault:record:search"
    with d.engine.connect() as conn:  # the registry holds keyed tokens, not record or order ids
        tokens = [tuple(r) for r in conn.exec_driver_sql("SELECT token, tenant_id FROM canary_tokens")]
    assert len(tokens) == 3 and all(len(t) == 64 and t != str(h.record_id) for t, _ in tokens for h in hits)


def test_a_rule_with_responses_disables_the_principal_and_engages_the_kill_switch(
    deployment_at: Callable[..., Deployment], settings: object
) -> None:
    rules_dir: Path = settings.rules_dir  # type: ignore[attr-defined]
    make_private_dir(rules_dir)
    shipped = (Path(__file__).parents[2] / "src/sagevault/monitor/rules/denied-calls-principal.toml").read_text()
    _private(
        rules_dir / "denied.toml",
        shipped.replace("version = 1", "version = 2") + 'responses = ["lock-principal", "kill-switch"]\n',
    )
    d = deployment_at()
    with d.unit_of_work() as conn:
        d.vault.add_tenant(conn, TENANT, ["ATVPDKIKX0DER"], principal=OPERATOR)
        d.access.accounts.add_person(conn, "alice.ng", "alice.ng@seller-tools.example", manager=None, actor=OPERATOR)
        svc = d.access.accounts.add_service(conn, "order-sync", owner="alice.ng", purpose="sync", actor=OPERATOR)
        key = d.access.api_keys.issue(conn, "order-sync", scopes=["records:read"], actor=OPERATOR)
    d.audit.record_many([denied(svc) for _ in range(20)])
    Watch(d).catch_up()
    [alarm] = _alarms(d, "denied-calls-principal")
    assert alarm.rule_version == 2
    assert alarm.responses[0].startswith("lock-principal: ") and "disabled" in alarm.responses[0]
    assert alarm.responses[1] == f"kill-switch: pii-access engaged for {TENANT}"
    with d.unit_of_work(read_only=True) as conn:
        account = next(a for a in d.access.accounts.list(conn, actor=OPERATOR) if a.login == "order-sync")
        switches = d.access.switches.list(conn, actor=OPERATOR)
        with pytest.raises(AccessDenied):  # the key died with the account
            d.access.api_keys.verify(conn, key.token, source="127.0.0.1")
    assert account.status == "disabled" and ("pii-access", TENANT, True) in [s[:3] for s in switches]
    by_monitor = {e["name"] for e in d.audit.search(actor="job:monitor")}
    assert {"access:account:disable", "access:killswitch:engage", "monitor:alarm:raise"} <= by_monitor


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('id = "x-y"\nversion = 1\nkind = "threshold"\nthreshold = [', 4, "not valid TOML"),
        ('id = "bad-key"\nkind = "event"\nversion = 1\nwindow = 3\n', 4, "window is not a setting of a event rule"),
        (
            'id = "typo"\nkind = "event"\nversion = 1\ntitle = "t"\nclause = "4"\nseverity = "high"\n'
            'events = ["access:login:failur"]\n',
            7,
            "did you mean access:login:failure",
        ),
        (
            'id = "never"\nkind = "threshold"\nversion = 1\ntitle = "t"\nclause = "4"\nseverity = "high"\n'
            'events = ["access:login:failure"]\ngroup_by = ["source"]\ndistinct = "source"\nwindow_seconds = 60\n'
            "threshold = 5\n",
            9,
            "can never fire",
        ),
        (
            'id = "capped"\nkind = "rate"\nversion = 1\ntitle = "t"\nclause = "4"\nseverity = "high"\n'
            'events = ["vault:record:read"]\nfloor = 100\ncap = 50\n',
            8,
            "floor must be below cap",
        ),
        (
            'id = "loop"\nkind = "event"\nversion = 1\ntitle = "t"\nclause = "4"\nseverity = "high"\n'
            'events = ["monitor:alarm:raise"]\n',
            7,
            "feed itself",
        ),
        (
            'id = "typo-where"\nkind = "event"\nversion = 1\ntitle = "t"\nclause = "4"\nseverity = "high"\n'
            'events = ["audit:log:verify"]\nwhere = { outcome = ["denid"] }\n',
            8,
            "where.outcome = 'denid' is not one of",
        ),
        (
            'id = "long"\nkind = "event"\nversion = 1\ntitle = "' + "t" * 201 + '"\nclause = "4"\nseverity = "high"\n'
            'events = ["audit:log:verify"]\n',
            4,
            "title must be one line of at most 200",
        ),
        (
            'id = "resp"\nkind = "event"\nversion = 1\ntitle = "t"\nclause = "4"\nseverity = "high"\n'
            'events = ["admin:config:change"]\nresponses = ["reboot"]\n',
            8,
            "responses may be",
        ),
    ],
)
def test_a_rule_file_that_cannot_be_used_is_refused_with_its_file_line_and_what_is_wrong(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.toml").write_text(text)
    with pytest.raises(RuleError) as refused:
        load_rules(tmp_path / "rules")
    message = str(refused.value)
    assert str(tmp_path / "rules" / "mine.toml") in message and words in message
    assert f"line {line}" in message or "at line" in message, message


def test_the_deployment_does_not_open_on_a_bad_rule_file(
    deployment_at: Callable[..., Deployment], settings: object
) -> None:
    rules_dir: Path = settings.rules_dir  # type: ignore[attr-defined]
    make_private_dir(rules_dir)
    _private(rules_dir / "broken.toml", 'id = "broken"\nkind = "nonsense"\n')
    with pytest.raises(ConfigError, match=r"broken.toml line 2: kind must be one of"):
        deployment_at()


def test_an_ipv6_source_is_one_source_across_its_64_as_the_throttle_counts_it(deployment: Deployment) -> None:
    with deployment.unit_of_work(read_only=True) as conn:
        core = deployment.access.core
        one, same, other = (
            core.client_ip_hash(conn, a) for a in ("2001:db8::1", "2001:db8::ffff:1", "2001:db8:0:1::1")
        )
        assert one == same != other and core.client_ip_hash(conn, "203.0.113.7") != core.client_ip_hash(
            conn, "203.0.113.8"
        )


def test_nobody_closes_an_alarm_about_themselves(deployment: Deployment) -> None:
    d = deployment
    d.audit.record_many([denied(OPERATOR.id) for _ in range(20)])
    Watch(d).catch_up()
    [alarm] = _alarms(d)
    with d.unit_of_work() as conn, pytest.raises(AccessDenied, match="somebody else"):
        d.monitor.change(conn, alarm.id, "false_positive", principal=OPERATOR)
    with d.unit_of_work() as conn:
        assert d.monitor.change(conn, alarm.id, "acknowledged", principal=OPERATOR).state == "acknowledged"


def test_a_rule_file_added_is_a_configuration_change_naming_the_rule(settings: object) -> None:
    from sagevault.config import Settings
    from sagevault.crypto import InMemoryKeyProvider
    from sagevault.deployment import init_deployment, open_deployment
    from sagevault.testing import fast_password_hashing

    assert isinstance(settings, Settings)
    keys = InMemoryKeyProvider()
    init_deployment(settings, keys=keys, hasher=fast_password_hashing()).close()
    make_private_dir(settings.rules_dir)
    shipped = (Path(__file__).parents[2] / "src/sagevault/monitor/rules/request-rate.toml").read_text()
    _private(
        settings.rules_dir / "rate.toml",
        shipped.replace("version = 1", "version = 2").replace("cap = 1200", "cap = 600"),
    )
    d = open_deployment(settings, keys=keys, hasher=fast_password_hashing())
    try:
        [change] = [e for e in d.audit.search(name="admin:config:change") if e["operation"] == "config change"]
        assert change["counts"] == {"setting:rule.request-rate": 1}
        Watch(d).catch_up()
        [alarm] = _alarms(d, "config-changed")
        assert alarm.evidence["seqs"] == [change["seq"]]
    finally:
        d.close()


def test_a_detector_that_keeps_failing_is_recorded_and_raises_an_alarm_once_it_works_again(settings: object) -> None:
    from sagevault.config import Settings
    from sagevault.crypto import InMemoryKeyProvider
    from sagevault.deployment import init_deployment
    from sagevault.testing import fast_password_hashing

    assert isinstance(settings, Settings)
    d = init_deployment(settings, keys=InMemoryKeyProvider(), hasher=fast_password_hashing())
    try:
        watch = Watch(d)
        assert watch.run_pass()
        with d.engine.begin() as conn:  # the monitor's tables go away (a bad restore, a wrong migration)
            conn.exec_driver_sql("ALTER TABLE monitor_cursor RENAME TO monitor_cursor_away")
        d.monitor.cursor = -1
        assert [watch.run_pass() for _ in range(3)] == [False, False, False]
        [failed] = list(d.audit.search(name="scheduler:job:fail"))
        assert (failed["operation"], failed["actor"], failed["counts"]) == (
            "monitor",
            "job:monitor",
            {"failed_passes": 3},
        )
        with d.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE monitor_cursor_away RENAME TO monitor_cursor")
        assert watch.run_pass() and watch.failed_passes == 0
        [alarm] = _alarms(d, "job-failed")
        assert alarm.severity == "high" and alarm.evidence["seqs"] == [failed["seq"]]
    finally:
        d.close()
