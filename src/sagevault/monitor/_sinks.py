"""Alarm sinks: where an alarm goes once a rule fires (a signed HTTPS webhook, e-mail over TLS,
the application log, or memory for tests).

An alarm payload holds ids, counts, rule names and sequence numbers, never PII. A sink delivers
one payload or raises `SinkError` (the outbox retries it); the message names the sink and the
cause, never the payload, a secret, a password or what the far end answered. Bad configuration
raises `ConfigError` when the sink is made. There is no plaintext transport: webhooks are
https:// only and e-mail goes over STARTTLS or implicit TLS, the server's certificate checked.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from sagevault.errors import ConfigError, SinkError
from sagevault.logs import get_logger

MIN_SECRET_BYTES = 32
SECURITY_MODES = ("starttls", "tls")
LOG_FIELDS = ("id", "rule", "rule_version", "severity", "state", "count", "tenant")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces: an id, never a header injection
_TIMESTAMP = re.compile(r"\d{1,12}")


class Sink(Protocol):
    name: str

    def deliver(self, alarm: Mapping[str, Any]) -> None: ...


def canonical_body(alarm: Mapping[str, Any]) -> bytes:
    """The bytes a webhook posts and signs, and an e-mail attaches: sorted keys, no spaces, UTF-8."""
    return json.dumps(alarm, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-SageVault-Signature` value: `v1=` + hex HMAC-SHA256 over `<timestamp>.` + body."""
    return "v1=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_webhook(
    secret: bytes, timestamp_header: str, signature_header: str, body: bytes, *, now: float, tolerance: float = 300.0
) -> bool:
    """For receivers: whether `body` was signed with `secret` at a time within `tolerance` seconds
    of `now` (an older or future timestamp is a replay and is refused like a bad signature)."""
    if not _TIMESTAMP.fullmatch(timestamp_header):
        return False
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign_webhook(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature_header.encode("utf-8", "replace"))


def _tls_client_context(ca_file: Path | None, what: str) -> ssl.SSLContext:
    """Certificate and host name checked, TLS 1.2 or later; `ca_file` or the system's CAs."""
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the CA file {ca_file} for the {what} ({type(exc).__name__}); it must be a readable PEM "
            "certificate, or leave it unset to trust the system's CAs"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _cause(exc: BaseException) -> str:
    """What went wrong, in words that cannot carry data: exception type names, a certificate
    verification verdict, a TLS alert, an OS error text."""
    parts = [type(exc).__name__]
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 6:
        if isinstance(seen, ssl.SSLCertVerificationError):
            parts.append(f"certificate verify failed: {seen.verify_message}")
            break
        if isinstance(seen, ssl.SSLError):
            parts.append(f"TLS error: {seen.reason or type(seen).__name__}")
            break
        if isinstance(seen, OSError) and seen.strerror:
            parts.append(seen.strerror)
            break
        seen = seen.__cause__ or seen.__context__
    return ": ".join(parts)


def _check_timeout(timeout: float, what: str) -> None:
    if not timeout > 0:
        raise ConfigError(f"the {what} timeout must be a positive number of seconds")


class WebhookSink:
    """POSTs the canonical JSON to an https:// URL, signed with HMAC-SHA256 over timestamp and body
    (receivers check it with `verify_webhook`). Redirects are not followed: a 3xx is a failure."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        ca_file: Path | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            raise ConfigError("the alarm webhook URL cannot be parsed; give it as https://host[:port]/path") from None
        if parts.scheme.lower() != "https":
            raise ConfigError("alarm webhook URL must be https://host[:port]/path: alarms are not sent in plaintext")
        if "@" in parts.netloc:
            raise ConfigError(
                "the alarm webhook URL must not hold a user name or password; the receiver checks the HMAC signature"
            )
        if not parts.hostname:
            raise ConfigError("the alarm webhook URL has no host; give it as https://host[:port]/path")
        if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the alarm webhook secret must be at least {MIN_SECRET_BYTES} bytes; make one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'` and give it to the receiver too"
            )
        _check_timeout(timeout, "alarm webhook")
        self._url = url
        self._host = parts.hostname
        self._secret = secret
        self._clock = clock
        self._client = httpx.Client(
            verify=_tls_client_context(ca_file, "alarm webhook"),
            follow_redirects=False,
            timeout=timeout,
            trust_env=False,
        )

    def deliver(self, alarm: Mapping[str, Any]) -> None:
        body = canonical_body(alarm)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "X-SageVault-Timestamp": str(timestamp),
            "X-SageVault-Signature": sign_webhook(self._secret, timestamp, body),
        }
        if "id" in alarm and _HEADER_SAFE.fullmatch(alarm_id := str(alarm["id"])):
            headers["X-SageVault-Alarm"] = alarm_id
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SinkError(f"alarm webhook {self._host}: delivery failed ({_cause(exc)})") from None
        if not 200 <= response.status_code < 300:
            raise SinkError(f"alarm webhook {self._host}: the receiver answered HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()


class SmtpSink:
    """E-mails the alarm: a subject naming severity, rule and count, the fields one per line, and
    the canonical JSON attached. STARTTLS (refused if the server does not offer it) or implicit TLS."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str,
        sender: str,
        recipients: Sequence[str],
        ca_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ConfigError(
                "alarm e-mail security must be 'starttls' (port 587) or 'tls' (implicit TLS, port 465); "
                "there is no plaintext mode"
            )
        if not host or not 0 < port < 65536:
            raise ConfigError("the alarm e-mail server needs a host name and a port between 1 and 65535")
        if isinstance(recipients, str) or not recipients:
            raise ConfigError("alarm e-mail needs a list of at least one recipient address")
        if any(not a or "\r" in a or "\n" in a for a in [sender, *recipients]):
            raise ConfigError("alarm e-mail sender and recipient addresses must be non-empty and on one line")
        if (username is None) != (password is None):
            raise ConfigError("give the alarm e-mail server both a username and a password, or neither")
        _check_timeout(timeout, "alarm e-mail")
        self._host, self._port, self._security = host, port, security
        self._sender, self._recipients = sender, list(recipients)
        self._username, self._password = username, password
        self._timeout = timeout
        self._context = _tls_client_context(ca_file, "alarm e-mail server")

    def message(self, alarm: Mapping[str, Any]) -> EmailMessage:
        """The e-mail `deliver` sends for `alarm`."""
        msg = EmailMessage()
        msg["Subject"] = _subject(alarm)
        msg["From"] = self._sender
        msg["To"] = ", ".join(self._recipients)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or "sagevault.invalid")
        msg.set_content("".join(f"{_one_line(key)}: {_one_line(value)}\n" for key, value in alarm.items()))
        msg.add_attachment(canonical_body(alarm), maintype="application", subtype="json", filename="alarm.json")
        return msg

    def deliver(self, alarm: Mapping[str, Any]) -> None:
        msg = self.message(alarm)
        where = f"alarm e-mail {self._host}:{self._port}"
        try:
            with self._connect(where) as smtp:
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password)
                refused = smtp.send_message(msg, from_addr=self._sender, to_addrs=self._recipients)
        except SinkError:
            raise
        except smtplib.SMTPResponseException as exc:
            raise SinkError(f"{where}: the server refused ({type(exc).__name__}, code {exc.smtp_code})") from None
        except smtplib.SMTPException as exc:
            raise SinkError(f"{where}: {type(exc).__name__}") from None
        except OSError as exc:  # ssl.SSLError and timeouts too
            raise SinkError(f"{where}: delivery failed ({_cause(exc)})") from None
        if refused:  # some recipients took it: the alarm was delivered, so no retry to the others
            get_logger("sagevault.monitor").warning("alarm e-mail recipients refused", count=len(refused))

    def _connect(self, where: str) -> smtplib.SMTP:
        if self._security == "tls":
            return smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=self._context)
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise SinkError(f"{where}: the server does not offer STARTTLS; nothing was sent in plaintext")
            smtp.starttls(context=self._context)
            smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp


def _one_line(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return " ".join(text.split())


def _subject(alarm: Mapping[str, Any]) -> str:
    """`[SageVault] <severity> alarm <rule> v<rule_version>: <count> events`, from the keys present."""
    get = {k: _one_line(alarm[k]) for k in ("severity", "rule", "rule_version", "count") if k in alarm}
    version = f"v{get['rule_version']}" if "rule_version" in get else ""
    subject = " ".join(w for w in ("[SageVault]", get.get("severity"), "alarm", get.get("rule"), version) if w)
    return (subject + (f": {get['count']} events" if "count" in get else ""))[:200]


class LogSink:
    """One warning line `alarm` in the application log with the alarm's ids and counts. Never raises."""

    name = "log"

    def deliver(self, alarm: Mapping[str, Any]) -> None:
        with contextlib.suppress(Exception):
            fields = {k: v if isinstance(v, int | float | str) else str(v) for k, v in alarm.items() if k in LOG_FIELDS}
            get_logger("sagevault.monitor").warning("alarm", **fields)


class MemorySink:
    """Keeps what it is given, for tests of the code that feeds sinks; `down = True` makes it fail
    as a sink does (SinkError), `broken` with another error, as a sink with a bug or a setting that
    only fails when used would."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.delivered: list[dict[str, Any]] = []
        self.down = False
        self.broken: type[Exception] | None = None

    def deliver(self, alarm: Mapping[str, Any]) -> None:
        if self.broken is not None:
            raise self.broken(f"alarm sink {self.name} failed")
        if self.down:
            raise SinkError(f"alarm sink {self.name} is down")
        self.delivered.append(copy.deepcopy(dict(alarm)))
