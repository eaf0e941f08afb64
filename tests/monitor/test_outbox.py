"""Alarm delivery: the outbox keeps every alarm for every sink until it is taken, so a webhook that
is down for the length of an attack gets each alarm once when it is back, signed; a sink that
stays down raises its own alarm. Real parts: an HTTPS receiver on 127.0.0.1 and SageVault's TLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from monitor_support import Receiver, denied

from conftest import OPERATOR
from sagevault.audit import EventName
from sagevault.config import Settings
from sagevault.crypto import InMemoryKeyProvider, TlsFiles, create_local_tls
from sagevault.deployment import Deployment, init_deployment, open_deployment
from sagevault.errors import ConfigError, Conflict
from sagevault.jobs import Watch
from sagevault.monitor import MemorySink, verify_webhook
from sagevault.testing import ManualClock, fast_password_hashing
from webapi import free_port


@pytest.fixture
def hooked(settings: Settings, tmp_path: Path) -> Iterator[tuple[Deployment, int, ManualClock, TlsFiles]]:
    """A deployment whose alarms also go to a webhook on a port where nothing listens yet."""
    tls = create_local_tls(tmp_path / "hook-tls")
    port = free_port()
    configured = settings.model_copy(
        update={"alarm_webhook_url": f"https://127.0.0.1:{port}/alarms", "alarm_webhook_ca_file": tls.ca_cert}
    )
    clock = ManualClock()
    d = init_deployment(configured, keys=InMemoryKeyProvider(), hasher=fast_password_hashing(), clock=clock)
    yield d, port, clock, tls
    d.close()


def _attack(d: Deployment, actor: str, n: int = 20) -> None:
    d.audit.record_many([denied(actor) for _ in range(n)])


def test_a_webhook_down_for_an_attack_gets_every_alarm_once_when_back_and_each_signature_verifies(
    hooked: tuple[Deployment, int, ManualClock, TlsFiles],
) -> None:
    d, port, clock, tls = hooked
    watch = Watch(d)
    for actor in ("svc-one", "svc-two", "svc-three"):  # three principals probing: three alarms
        _attack(d, actor)
    watch.catch_up()
    assert watch.deliver() == 3  # the log sink took them; the webhook refused (nothing listens)
    for _ in range(2):  # the attack goes on, the webhook stays down, retries fail
        clock.advance(seconds=301)
        _attack(d, "svc-one", 5)
        watch.catch_up()
        watch.deliver()
    watch.catch_up()
    with d.unit_of_work(read_only=True) as conn:
        alarms = d.monitor.list_alarms(conn, principal=OPERATOR)
        assert d.monitor.pending(conn) >= 4
    assert sorted(a.rule for a in alarms) == ["alarm-sink-down", *["denied-calls-principal"] * 3]
    sink_down = next(a for a in alarms if a.rule == "alarm-sink-down")
    assert sink_down.evidence["observed"] >= 3 and sink_down.severity == "high"
    failures = list(d.audit.search(name=EventName.MONITOR_SINK_FAIL.value))
    assert {e["operation"] for e in failures} == {"sink webhook"} and len(failures) >= 3

    receiver = Receiver(tls, port)  # back, with a certificate from the CA the sink trusts
    try:
        clock.advance(seconds=301)
        watch.deliver()
        clock.advance(seconds=301)
        watch.deliver()  # nothing is sent twice
    finally:
        receiver.stop()
    ids = [int(headers["X-SageVault-Alarm"]) for headers, _, _ in receiver.requests]
    assert sorted(ids) == sorted(a.id for a in alarms)  # every alarm, once
    secret = d.settings.resolved_alarm_webhook_secret_file.read_bytes().strip()
    for headers, body, received in receiver.requests:
        assert verify_webhook(
            secret, headers["X-SageVault-Timestamp"], headers["X-SageVault-Signature"], body, now=received
        )
        assert json.loads(body)["id"] in ids
        assert not verify_webhook(
            b"x" * 64, headers["X-SageVault-Timestamp"], headers["X-SageVault-Signature"], body, now=received
        )
    with d.unit_of_work(read_only=True) as conn:
        assert d.monitor.pending(conn) == 0


def test_a_webhook_that_is_not_https_is_refused_and_the_secret_file_must_be_private(
    settings: Settings, tmp_path: Path
) -> None:
    from sagevault.config import load_settings

    with pytest.raises(ConfigError, match="alarm_webhook_url must be an https:// URL"):
        load_settings(data_dir=tmp_path / "var", alarm_webhook_url="http://127.0.0.1:9/alarms")
    configured = settings.model_copy(update={"alarm_webhook_url": "https://127.0.0.1:9/alarms"})
    d = init_deployment(configured, keys=InMemoryKeyProvider(), hasher=fast_password_hashing())
    keys = d.keys
    d.close()
    secret = configured.resolved_alarm_webhook_secret_file
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes().strip()) == 64
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"alarm-webhook\.secret is open to other accounts"):
        open_deployment(configured, keys=keys)


def test_a_sink_that_fails_in_an_unexpected_way_holds_up_no_other_delivery(deployment: Deployment) -> None:
    d = deployment
    broken, fine = MemorySink("broken"), MemorySink("fine")
    broken.broken = UnicodeError  # what a setting that only fails when used raises (an IDNA host, a password)
    d.sinks.update(broken=broken, fine=fine)
    d.monitor.sinks = ("broken", "fine")
    for actor in ("svc-one", "svc-two"):
        _attack(d, actor)
    watch = Watch(d)
    watch.catch_up()
    assert watch.deliver() == 2 and [a["principal"] for a in fine.delivered] == ["svc-one", "svc-two"]
    failed = list(d.audit.search(name=EventName.MONITOR_SINK_FAIL.value))
    assert [e["operation"] for e in failed] == ["sink broken", "sink broken"]
    with d.unit_of_work(read_only=True) as conn:
        assert d.monitor.pending(conn) == 2  # kept for the broken sink, retried


def test_a_second_detector_cannot_evaluate_what_the_first_did(deployment: Deployment) -> None:
    """Two detectors on one deployment (a `monitor run --once` beside `serve`'s): the cursor moves
    only from where each read it, so an attack is raised once."""
    d = deployment
    first, second = Watch(d), Watch(d)
    first.catch_up()
    _attack(d, "svc-one")
    other = type(d.monitor)(
        list(d.monitor.rules.values()), audit=d.audit, gate=d.access.control, canaries=d.monitor.canaries
    )
    with d.unit_of_work() as conn:
        other.resume(conn)
    second.monitor = other
    assert first.catch_up() == 20
    with pytest.raises(Conflict, match="another detector"):
        second.catch_up()
    with d.unit_of_work(read_only=True) as conn:
        assert [a.principal for a in d.monitor.list_alarms(conn, principal=OPERATOR)] == ["svc-one"]
