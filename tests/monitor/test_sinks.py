"""The alarm sinks against real servers on 127.0.0.1: an HTTPS webhook receiver (http.server behind
SageVault's own TLS server context) and SMTP servers (aiosmtpd) with STARTTLS and implicit TLS.
Certificates come from `create_local_tls`; a second CA stands for a server nobody should trust."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from monitor_support import ANSWER, Receiver

from sagevault.crypto import TlsFiles, create_local_tls, server_context
from sagevault.errors import ConfigError, SinkError
from sagevault.logs import configure_logging, release_logging
from sagevault.monitor._sinks import (
    LogSink,
    MemorySink,
    Sink,
    SmtpSink,
    WebhookSink,
    canonical_body,
    sign_webhook,
    verify_webhook,
)
from webapi import free_port

SECRET = b"k" * 24 + b"-webhook-secret-0123456789"
ALARM: dict[str, Any] = {
    "id": "alm_0001f3",
    "rule": "bulk_read_spike",
    "rule_version": 3,
    "severity": "high",
    "state": "open",
    "count": 42,
    "tenant": "A1TESTSELLER01",
    "seq": [17, 58],
}
SMTP_PASSWORD = "smtp-pass-Zt3kQ9vLmX2pR8w"


# --- the webhook receiver ---------------------------------------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return create_local_tls(tmp_path / "tls")


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> TlsFiles:
    """Valid for 127.0.0.1, but signed by a CA the sinks are not told to trust."""
    return create_local_tls(tmp_path / "other-ca")


@pytest.fixture
def start_receiver() -> Iterator[Callable[[TlsFiles], Receiver]]:
    started: list[Receiver] = []

    def start(files: TlsFiles) -> Receiver:
        started.append(Receiver(files))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def webhook_sink() -> Iterator[Callable[..., WebhookSink]]:
    made: list[WebhookSink] = []

    def make(url: str, secret: bytes = SECRET, **kwargs: Any) -> WebhookSink:
        made.append(WebhookSink(url, secret, **kwargs))
        return made[-1]

    yield make
    for sink in made:
        sink.close()


def assert_tells_nothing(error: BaseException) -> None:
    message = str(error)
    for leak in (SECRET.decode(), ANSWER.decode(), SMTP_PASSWORD, ALARM["id"], ALARM["rule"], ALARM["tenant"]):
        assert leak not in message


# --- webhook ----------------------------------------------------------------------------------


def test_canonical_body_is_sorted_compact_utf8_json() -> None:
    assert (
        canonical_body({"b": 1, "a": "é", "c": {"z": 1, "y": [1, 2]}})
        == '{"a":"é","b":1,"c":{"y":[1,2],"z":1}}'.encode()
    )
    assert json.loads(canonical_body(ALARM)) == ALARM


def test_webhook_posts_the_canonical_body_signed_and_the_receiver_verifies_it(
    tls: TlsFiles, start_receiver: Callable[[TlsFiles], Receiver], webhook_sink: Callable[..., WebhookSink]
) -> None:
    receiver = start_receiver(tls)
    sink: Sink = webhook_sink(receiver.url, ca_file=tls.ca_cert)
    sink.deliver(ALARM)
    [(headers, body, received_at)] = receiver.requests
    assert body == canonical_body(ALARM)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-SageVault-Alarm"] == ALARM["id"]
    stamp, signature = headers["X-SageVault-Timestamp"], headers["X-SageVault-Signature"]
    assert abs(int(stamp) - received_at) <= 1
    assert signature == sign_webhook(SECRET, int(stamp), body)
    assert signature.startswith("v1=")
    assert verify_webhook(SECRET, stamp, signature, body, now=received_at)
    assert not verify_webhook(SECRET, stamp, signature, body.replace(b"42", b"43"), now=received_at)
    assert not verify_webhook(b"x" * 32, stamp, signature, body, now=received_at)
    assert not verify_webhook(SECRET, stamp, signature, body, now=received_at + 301)


def test_a_delivery_signed_301_seconds_ago_is_refused_by_the_receiver(
    tls: TlsFiles, start_receiver: Callable[[TlsFiles], Receiver], webhook_sink: Callable[..., WebhookSink]
) -> None:
    receiver = start_receiver(tls)
    sink = webhook_sink(receiver.url, ca_file=tls.ca_cert, clock=lambda: time.time() - 301)
    sink.deliver({"rule": "r"})  # no id: no X-SageVault-Alarm header
    [(headers, body, received_at)] = receiver.requests
    assert "X-SageVault-Alarm" not in headers
    assert not verify_webhook(
        SECRET, headers["X-SageVault-Timestamp"], headers["X-SageVault-Signature"], body, now=received_at
    )


@pytest.mark.parametrize(
    ("timestamp", "signature", "now", "ok"),
    [
        ("1700000000", None, 1_700_000_300.0, True),
        ("1700000000", None, 1_699_999_700.0, True),
        ("1700000000", None, 1_700_000_301.0, False),
        ("1700000000", None, 1_699_999_699.0, False),  # from the future: as much a replay
        ("1700000000.0", None, 1_700_000_000.0, False),
        ("-1700000000", None, 1_700_000_000.0, False),
        ("", None, 1_700_000_000.0, False),
        ("1700000000", "v1=" + "0" * 64, 1_700_000_000.0, False),
        ("1700000000", "v1=é", 1_700_000_000.0, False),
        ("1700000000", "", 1_700_000_000.0, False),
    ],
)
def test_verify_webhook_refuses_odd_timestamps_replays_and_wrong_signatures(
    timestamp: str, signature: str | None, now: float, ok: bool
) -> None:
    body = canonical_body(ALARM)
    good = sign_webhook(SECRET, 1_700_000_000, body)
    assert verify_webhook(SECRET, timestamp, good if signature is None else signature, body, now=now) is ok


@pytest.mark.parametrize("status", [500, 302, 404])
def test_a_non_2xx_answer_is_a_sink_error_naming_the_status_not_the_answer(
    status: int,
    tls: TlsFiles,
    start_receiver: Callable[[TlsFiles], Receiver],
    webhook_sink: Callable[..., WebhookSink],
) -> None:
    receiver = start_receiver(tls)
    receiver.status = status
    with pytest.raises(SinkError, match=rf"webhook.*HTTP {status}") as caught:
        webhook_sink(receiver.url, ca_file=tls.ca_cert).deliver(ALARM)
    assert len(receiver.requests) == 1  # a redirect is not followed
    assert_tells_nothing(caught.value)


def test_a_stopped_receiver_is_a_sink_error(
    tls: TlsFiles, start_receiver: Callable[[TlsFiles], Receiver], webhook_sink: Callable[..., WebhookSink]
) -> None:
    receiver = start_receiver(tls)
    sink = webhook_sink(receiver.url, ca_file=tls.ca_cert)
    sink.deliver(ALARM)
    receiver.stop()
    with pytest.raises(SinkError, match=r"webhook.*ConnectError") as caught:
        sink.deliver(ALARM)
    assert_tells_nothing(caught.value)


def test_a_receiver_that_never_answers_times_out(webhook_sink: Callable[..., WebhookSink], tls: TlsFiles) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP, never speaks TLS
        sink = webhook_sink(f"https://127.0.0.1:{silent.getsockname()[1]}/", ca_file=tls.ca_cert, timeout=0.2)
        with pytest.raises(SinkError, match="Timeout"):
            sink.deliver(ALARM)


@pytest.mark.parametrize("trust", ["our CA", "system CAs"])
def test_a_receiver_with_an_untrusted_certificate_gets_nothing(
    trust: str,
    tls: TlsFiles,
    untrusted_tls: TlsFiles,
    start_receiver: Callable[[TlsFiles], Receiver],
    webhook_sink: Callable[..., WebhookSink],
) -> None:
    receiver = start_receiver(untrusted_tls)
    sink = webhook_sink(receiver.url, ca_file=tls.ca_cert if trust == "our CA" else None)
    with pytest.raises(SinkError, match="certificate verify failed") as caught:
        sink.deliver(ALARM)
    assert receiver.requests == []
    assert_tells_nothing(caught.value)


@pytest.mark.parametrize(
    ("url", "secret", "match"),
    [
        ("http://127.0.0.1/alarms", SECRET, "must be https://"),
        ("127.0.0.1/alarms", SECRET, "must be https://"),
        ("https://user:pw@127.0.0.1/alarms", SECRET, "user name or password"),
        ("https:///alarms", SECRET, "no host"),
        ("https://127.0.0.1:port/alarms", SECRET, "cannot be parsed"),
        ("https://127.0.0.1/alarms", b"s" * 31, "at least 32 bytes"),
        ("https://127.0.0.1/alarms", b"", "at least 32 bytes"),
    ],
)
def test_webhook_configuration_is_refused_at_construction(url: str, secret: bytes, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        WebhookSink(url, secret)
    assert "pw" not in str(caught.value)


def test_webhook_refuses_a_ca_file_it_cannot_load(tmp_path: Path) -> None:
    (tmp_path / "not-a-cert.pem").write_text("hello")
    for ca_file in (tmp_path / "missing.pem", tmp_path / "not-a-cert.pem"):
        with pytest.raises(ConfigError, match="PEM certificate"):
            WebhookSink("https://127.0.0.1/alarms", SECRET, ca_file=ca_file)
    with pytest.raises(ConfigError, match="positive"):
        WebhookSink("https://127.0.0.1/alarms", SECRET, timeout=0)


# --- SMTP -------------------------------------------------------------------------------------


class Collector:
    """An aiosmtpd handler keeping each message with the TLS version it came over."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, str | None]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd hook)
        assert server.transport is not None
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.messages.append((envelope, None if ssl_object is None else ssl_object.version()))
        return "250 OK"


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data == (b"alarms", SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # False: the server answers 535 itself


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., tuple[int, Collector]]]:
    """Starts an SMTP server on 127.0.0.1: `mode` "starttls" (STARTTLS required), "tls" (implicit)
    or "plain" (no STARTTLS offered); with `auth`, a login is required."""
    started: list[Controller] = []

    def start(mode: str, tls: TlsFiles | None = None, *, auth: bool = False) -> tuple[int, Collector]:
        collector, port = Collector(), free_port()
        kwargs: dict[str, Any] = {}
        if mode == "starttls":
            assert tls is not None
            kwargs = {"tls_context": server_context(tls.cert, tls.key), "require_starttls": True}
        elif mode == "tls":
            assert tls is not None
            kwargs = {"ssl_context": server_context(tls.cert, tls.key)}
        if auth:
            kwargs |= {"authenticator": _authenticate, "auth_required": True}
        controller = Controller(collector, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return port, collector

    yield start
    for controller in started:
        controller.stop()


def smtp_sink(port: int, security: str, tls: TlsFiles | None, **kwargs: Any) -> SmtpSink:
    return SmtpSink(
        "127.0.0.1",
        port,
        security=security,
        sender="sagevault@alarms.test",
        recipients=["oncall@alarms.test", "security@alarms.test"],
        ca_file=None if tls is None else tls.ca_cert,
        **kwargs,
    )


def only_message(collector: Collector) -> tuple[EmailMessage, Envelope, str | None]:
    [(envelope, tls_version)] = collector.messages
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message, envelope, tls_version


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_is_delivered_over_tls_with_the_alarm_attached(
    security: str, tls: TlsFiles, start_smtp: Callable[..., tuple[int, Collector]]
) -> None:
    port, collector = start_smtp(security, tls)
    sink: Sink = smtp_sink(port, security, tls)
    sink.deliver(ALARM)
    message, envelope, tls_version = only_message(collector)
    assert tls_version in ("TLSv1.2", "TLSv1.3")
    assert envelope.mail_from == "sagevault@alarms.test"
    assert envelope.rcpt_tos == ["oncall@alarms.test", "security@alarms.test"]
    assert message["Subject"] == "[SageVault] high alarm bulk_read_spike v3: 42 events"
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    lines = text.get_content().splitlines()
    assert "rule: bulk_read_spike" in lines
    assert "count: 42" in lines
    assert "seq: [17, 58]" in lines
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/json"
    assert attachment.get_filename() == "alarm.json"
    assert attachment.get_content() == canonical_body(ALARM)
    assert json.loads(attachment.get_content()) == ALARM


def test_email_logs_in_when_given_a_username_and_a_wrong_password_is_a_sink_error(
    tls: TlsFiles, start_smtp: Callable[..., tuple[int, Collector]]
) -> None:
    port, collector = start_smtp("starttls", tls, auth=True)
    smtp_sink(port, "starttls", tls, username="alarms", password=SMTP_PASSWORD).deliver(ALARM)
    assert len(collector.messages) == 1
    with pytest.raises(SinkError, match="SMTPAuthenticationError") as caught:
        smtp_sink(port, "starttls", tls, username="alarms", password=SMTP_PASSWORD + "x").deliver(ALARM)
    assert_tells_nothing(caught.value)
    with pytest.raises(SinkError, match="refused"):  # the server requires a login
        smtp_sink(port, "starttls", tls).deliver(ALARM)
    assert len(collector.messages) == 1


def test_starttls_mode_refuses_a_server_without_starttls(
    tls: TlsFiles, start_smtp: Callable[..., tuple[int, Collector]]
) -> None:
    port, collector = start_smtp("plain")
    with pytest.raises(SinkError, match="does not offer STARTTLS") as caught:
        smtp_sink(port, "starttls", tls).deliver(ALARM)
    assert collector.messages == []
    assert_tells_nothing(caught.value)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_to_a_server_with_an_untrusted_certificate_is_a_sink_error(
    security: str, tls: TlsFiles, untrusted_tls: TlsFiles, start_smtp: Callable[..., tuple[int, Collector]]
) -> None:
    port, collector = start_smtp(security, untrusted_tls)
    with pytest.raises(SinkError, match="certificate verify failed") as caught:
        smtp_sink(port, security, tls).deliver(ALARM)
    assert collector.messages == []
    assert_tells_nothing(caught.value)


def test_email_checks_the_host_name_on_the_certificate(
    tmp_path: Path, start_smtp: Callable[..., tuple[int, Collector]]
) -> None:
    elsewhere = create_local_tls(tmp_path / "named", names=("mail.alarms.test",))  # trusted CA, wrong name
    port, collector = start_smtp("tls", elsewhere)
    with pytest.raises(SinkError, match="certificate verify failed"):
        smtp_sink(port, "tls", elsewhere).deliver(ALARM)
    assert collector.messages == []


def test_email_to_a_closed_port_is_a_sink_error(tls: TlsFiles) -> None:
    with pytest.raises(SinkError, match=r"alarm e-mail 127\.0\.0\.1"):
        smtp_sink(free_port(), "tls", tls, timeout=2).deliver(ALARM)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"security": "none"}, "no plaintext mode"),
        ({"security": "plain"}, "no plaintext mode"),
        ({"security": "STARTTLS"}, "no plaintext mode"),
        ({"recipients": []}, "at least one recipient"),
        ({"recipients": "oncall@alarms.test"}, "list"),
        ({"recipients": ["a@alarms.test\r\nBcc: b@x.test"]}, "one line"),
        ({"username": "alarms"}, "both a username and a password"),
        ({"port": 0}, "port"),
        ({"timeout": -1}, "positive"),
    ],
)
def test_email_configuration_is_refused_at_construction(change: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 465,
        "security": "tls",
        "sender": "sagevault@alarms.test",
        "recipients": ["oncall@alarms.test"],
    } | change
    with pytest.raises(ConfigError, match=match):
        SmtpSink(settings.pop("host"), settings.pop("port"), **settings)


def test_the_subject_names_what_the_payload_has() -> None:
    sink = smtp_sink(465, "tls", None)
    assert sink.message({"rule": "r1", "count": 2})["Subject"] == "[SageVault] alarm r1: 2 events"
    assert sink.message({"rule": "r1\r\nBcc: x@y.test"})["Subject"] == "[SageVault] alarm r1 Bcc: x@y.test"
    assert sink.message({})["Subject"] == "[SageVault] alarm"


# --- log and memory ---------------------------------------------------------------------------


def test_log_sink_writes_one_warning_line_with_the_alarm_ids(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "app.log"
    configure_logging(path)
    try:
        LogSink().deliver({**ALARM, "note": "not a log field", "rule_version": object()})
    finally:
        release_logging()
    [line] = [json.loads(raw) for raw in path.read_text().splitlines() if '"alarm"' in raw]
    assert line["event"] == "alarm"
    assert line["level"] == "warning"
    assert line["rule"] == ALARM["rule"]
    assert line["id"] == ALARM["id"]
    assert line["count"] == ALARM["count"]
    assert line["tenant"] == ALARM["tenant"]
    assert "note" not in line
    assert "seq" not in line
    assert LogSink.name == "log"


def test_memory_sink_keeps_copies_and_fails_while_down() -> None:
    sink: Sink
    sink = memory = MemorySink("pager")
    assert sink.name == "pager"
    assert MemorySink().name == "memory"
    memory.down = True
    with pytest.raises(SinkError, match="pager is down"):
        sink.deliver(ALARM)
    assert memory.delivered == []
    memory.down = False
    alarm = {**ALARM, "seq": [1, 2]}
    sink.deliver(alarm)
    alarm["seq"].append(3)
    assert memory.delivered == [{**ALARM, "seq": [1, 2]}]
