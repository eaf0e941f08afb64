"""Getting events out: JSON lines for a SIEM, and RFC 5424 syslog over TLS (RFC 5425 framing)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Iterable
from typing import IO, Any

_SD_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})


def to_jsonl(events: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for event in events:
        out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
        n += 1
    return n


def to_syslog(event: dict[str, Any], hostname: str = "-") -> bytes:
    """One RFC 5424 message: facility auth (4), severity notice (5) or warning (4) for refusals."""
    severity = 5 if event["outcome"] == "success" else 4
    params = " ".join(
        f'{k}="{str(v).translate(_SD_ESCAPE)}"'
        for k, v in (
            ("seq", event["seq"]),
            ("channel", event["channel"]),
            ("outcome", event["outcome"]),
            ("reason", event["reason"]),
            ("actor", event["actor"]),
            ("tenant", event["tenant_id"]),
            ("operation", event["operation"]),
            ("request", event["request_id"]),
        )
        if v not in (None, "")
    )
    msg = f"<{4 * 8 + severity}>1 {event['at']} {hostname} sagevault - {event['name']} [sagevault@32473 {params}]"
    return msg.encode()


class SyslogTlsSink:
    """Sends events to a syslog collector over TLS (certificate verified), octet-counted."""

    def __init__(self, host: str, port: int, *, cafile: str | None = None) -> None:
        self._context = ssl.create_default_context(cafile=cafile)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._host, self._port = host, port

    def send(self, events: Iterable[dict[str, Any]]) -> int:
        n = 0
        with (
            socket.create_connection((self._host, self._port), timeout=10) as raw,
            self._context.wrap_socket(raw, server_hostname=self._host) as tls,
        ):
            for event in events:
                msg = to_syslog(event)
                tls.sendall(str(len(msg)).encode() + b" " + msg)
                n += 1
            # An orderly TLS close: a bare close could reset the connection and lose the tail.
            with contextlib.suppress(OSError):
                tls.unwrap()
        return n
